"""Ad hoc: CPUS N -- one replica, two rounds of N open-loop requests at 50, 25 and 12%
load; mean service time overall and for idle and busy starts."""
import sys, time, json
import numpy as np
from edgewise.isolation import CGroup
from edgewise.serving.profiles import ReplicaSpec, start_replica, poisson_arrivals_s, replica_threads
cpus = float(sys.argv[1]); n = int(sys.argv[2])
th = replica_threads(cpus)
spec = ReplicaSpec("mobilenet_v2", 1, th, 0)
res = []
with CGroup(f"idleprobe{int(cpus*10)}", cpus=cpus, memory_mb=4096, cpu_weight=1000) as cg:
    with start_replica(spec, cg) as r:
        b = r.burst(20); mean = float(np.median(b)); print("burst median", mean, flush=True)
        for rnd in range(2):
            for load in (0.5, 0.25, 0.12):
                rate = load * 1000 / mean
                ex = r.run_arrivals(poisson_arrivals_s(rate, n, 100 * rnd + int(load * 100)))
                s = ex.service_ms(); idle = ex.idle_start(); lat = ex.latency_ms()
                row = dict(rnd=rnd, load=load, rate=rate, mean=s.mean(), idle_share=idle.mean(),
                           idle_mean=s[idle].mean(), busy_mean=s[~idle].mean() if (~idle).any() else float('nan'),
                           idle_p95=np.percentile(s[idle], 95), busy_p95=np.percentile(s[~idle], 95) if (~idle).sum() > 5 else float('nan'),
                           p99_lat=np.percentile(lat, 99), cpu_mean=ex.cpu_ms().mean())
                print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
