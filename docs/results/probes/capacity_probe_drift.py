"""How much of the capacity model's error is the host drifting between profile and test.

Reads every stored `edgewise capacity --validate --json` output (docs/results/capacity*.json)
and relates each check's service drift (the load test's mean service time over the
profile's, minus one) to the gap between the model fed the profile and the same model fed
the test's own service times. Usage: .venv/bin/python docs/results/probes/capacity_probe_drift.py
"""

import glob
import json
import sys

import numpy as np

files = sys.argv[1:] or sorted(glob.glob("docs/results/capacity*.json"))
rows = []
for f in files:
    for fl in json.load(open(f)).get("flavors", []):
        v = fl.get("validation") or {}
        if v:
            m = v["measured_ms"]
            own = (v["predicted_from_test_service_ms"] - m) / m
            rows.append((fl["flavor"], v["service_drift"], v["rel_error"], own, v["requests"]))
drift = np.array([r[1] for r in rows])
rel = np.array([r[2] for r in rows])
own = np.array([r[3] for r in rows])
print(f"{len(rows)} checks; corr(drift, profile error - own-times error) = "
      f"{np.corrcoef(drift, rel - own)[0, 1]:+.2f}")
for lim in (0.03, 0.05, 0.10):
    m = np.abs(drift) <= lim
    inside = f"{int(np.sum(np.abs(rel[m]) <= 0.15))}/{int(m.sum())}"
    outside = f"{int(np.sum(np.abs(rel[~m]) <= 0.15))}/{int((~m).sum())}"
    print(f"|drift| <= {lim:.0%}: within 15% {inside}; above: {outside}")
big = np.array([r[4] >= 2000 for r in rows])
print(f"tests of >= 2,000 requests: {int(big.sum())}; within 15% from the profile "
      f"{int(np.sum(np.abs(rel[big]) <= 0.15))}, from the test's own service times "
      f"{int(np.sum(np.abs(own[big]) <= 0.15))} (own-times errors "
      f"{', '.join(f'{100 * x:+.1f}' for x in own[big])}%)")
