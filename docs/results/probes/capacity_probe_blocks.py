"""Ad hoc: re-simulate the stored session-7 profiles (seeds 5 and 6) against their load
tests' own arrivals with moving blocks of 1-100 samples. Reads capacity-s7-profiles.json
(the samples and validation figures of docs/results/capacity-s7-seed{5,6}.json's KB rows)."""

import json
import sys
from pathlib import Path

import numpy as np

from edgewise.serving.capacity import percentiles_at_arrivals
from edgewise.serving.profiles import poisson_arrivals_s

here = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("capacity-s7-profiles.json"))
for key, row in json.loads(here.read_text()).items():
    seed = int(key[4])
    x = np.asarray(row["samples"], float)
    # validate_capacity's arrivals: seed + attempt (0-based) + 1
    arr = poisson_arrivals_s(row["rate_rps"], row["requests"], seed + row["attempts"] - 1 + 1)
    meas = row["measured_ms"]
    errs = []
    for b in (1, 10, 25, 50, 100):
        runs = percentiles_at_arrivals(x, arr, 99.0, seed=seed + row["attempts"] - 1, block=b)
        errs.append(f"b{b}:{100 * (float(np.mean(runs)) - meas) / meas:+.1f}%")
    print(key, f"measured {meas:.1f} stored prediction {row['predicted_ms']:.1f}", *errs)
