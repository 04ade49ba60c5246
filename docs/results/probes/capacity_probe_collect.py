"""Ad hoc: a profile (open loop at 50% load) and a load test per flavor, every request's
timestamps kept, for developing the capacity model offline."""
import sys
import numpy as np
from edgewise.isolation import CGroup
from edgewise.serving.profiles import ReplicaSpec, start_replica, poisson_arrivals_s, replica_threads
out = {}
for name, cpus, util, n_test in [("small", 0.5, 0.1, 700), ("large", 2.0, 0.3, 2000)]:
    with CGroup(f"dataset-{name}", cpus=cpus, memory_mb=4096, cpu_weight=1000) as cg:
        with start_replica(ReplicaSpec("mobilenet_v2", 1, replica_threads(cpus), 0), cg) as r:
            first = r.burst(20)
            mean = float(np.median(first))
            rng = np.random.default_rng(1)
            parts = []
            for _ in range(40):  # 40 chunks of 25 at 50% load, as collect_service_times does
                gaps = rng.standard_exponential(25) * mean / 0.5 / 1000.0
                ex = r.run_arrivals(np.cumsum(gaps))
                parts.append(ex)
                mean = float(np.mean(np.concatenate([p.service_ms() for p in parts])))
            for key in ("scheduled", "sent", "start", "done", "cpu"):
                out[f"{name}_profile_{key}"] = np.concatenate([getattr(p, key) for p in parts])
            out[f"{name}_profile_chunk"] = np.repeat(np.arange(len(parts)), 25)
            rate = util * 1000 / mean
            ex = r.run_arrivals(poisson_arrivals_s(rate, n_test, 3))
            for key in ("scheduled", "sent", "start", "done", "cpu"):
                out[f"{name}_test_{key}"] = getattr(ex, key)
            s = ex.service_ms(); idle = ex.idle_start()
            print(name, "rate %.2f profile mean %.1f test mean %.1f idle %.1f busy %.1f p99 %.1f" % (
                rate, mean, s.mean(), s[idle].mean(), s[~idle].mean(), np.percentile(ex.latency_ms()[n_test // 10:], 99)), flush=True)
np.savez_compressed(sys.argv[1], **out)
