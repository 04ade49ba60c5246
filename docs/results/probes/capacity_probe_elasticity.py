"""How far a capacity check's predicted p99 moves when the host's speed moves by 5%.

For every capacity profile in a knowledge base (EDGEWISE_HOME/kb.sqlite of a
`edgewise capacity ... --validate` run), scales the stored service-time sample by 0.95 and
1.05 and re-simulates the p99 at 80% of the profile's capacity, as the check does.
Usage: .venv/bin/python docs/results/probes/capacity_probe_elasticity.py KB.sqlite
"""

import json
import sqlite3
import sys

import numpy as np

from edgewise.serving.capacity import PROFILE_BLOCK, latency_percentile

con = sqlite3.connect(sys.argv[1])
for flavor, service, cap in con.execute(
    "select flavor, service_ms, capacity_rps from capacity_profiles order by id"
):
    s = np.array(json.loads(service)["samples"])
    rate = 0.8 * cap
    p99 = [
        latency_percentile(s * f, rate, 99, block=PROFILE_BLOCK, n_requests=100_000)
        for f in (1.0, 0.95, 1.05)
    ]
    print(
        f"{flavor}: utilisation {rate * s.mean() / 1000:.2f}, p99 {p99[0]:.1f} ms; "
        f"service -5% -> p99 {100 * (p99[1] / p99[0] - 1):+.1f}%, "
        f"+5% -> {100 * (p99[2] / p99[0] - 1):+.1f}%"
    )
