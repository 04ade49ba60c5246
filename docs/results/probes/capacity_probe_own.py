"""Ad hoc: CPUS N UTIL OUT.npz -- a 400-sample profile at 50% load, then N open-loop
requests at UTIL utilisation; prints the model fed the test's own service times and the
profile, with blocks of 1-300, and the service time by queue length at arrival."""
import sys, json
import numpy as np
from edgewise.isolation import CGroup
from edgewise.serving.profiles import ReplicaSpec, start_replica, poisson_arrivals_s, replica_threads, collect_service_times
from edgewise.serving.capacity import percentiles_at_arrivals, sojourn_ms, capacity_rps, PROFILE_BLOCK
cpus = float(sys.argv[1]); n = int(sys.argv[2]); util = float(sys.argv[3]); dest = sys.argv[4]
th = replica_threads(cpus)
with CGroup(f"ownprobe{int(cpus*10)}", cpus=cpus, memory_mb=4096, cpu_weight=1000) as cg:
    with start_replica(ReplicaSpec("mobilenet_v2", 1, th, 0), cg) as r:
        prof = collect_service_times(r, 400, 20, 120, load=0.5, seed=1)
        rate = util * 1000 / prof.mean()
        ex = r.run_arrivals(poisson_arrivals_s(rate, n, 3))
np.savez(dest, prof=prof, sched=ex.scheduled, done=ex.done, start=ex.start, sent=ex.sent, cpu=ex.cpu)
s = ex.service_ms(); lat = ex.latency_ms(); skip = int(n * 0.1)
arr = (ex.scheduled - ex.scheduled[0]) / 1e9
meas = np.percentile(lat[skip:], 99)
exact = np.percentile(sojourn_ms(arr, s)[skip:], 99)
print("rate %.2f util_test %.2f prof_mean %.1f test_mean %.1f meas_p99 %.1f exact %.1f" % (rate, rate * s.mean() / 1000, prof.mean(), s.mean(), meas, exact))
for b in (1, 10, 30, 100, 300):
    own = np.mean(percentiles_at_arrivals(s, arr, 99.0, seed=0, block=b))
    pr = np.mean(percentiles_at_arrivals(prof, arr, 99.0, seed=0, block=b))
    print("block %d own %+.1f%% profile %+.1f%%" % (b, 100 * (own - meas) / meas, 100 * (pr - meas) / meas))
x = s - s.mean(); print("acf", [round(float(np.dot(x[:-k], x[k:]) / np.dot(x, x)), 2) for k in (1, 2, 5, 10, 20, 50, 100)])
# service vs queue state
order = np.argsort(ex.done); due = ex.scheduled[order]; done = ex.done[order]
q = np.array([np.sum((due[:i] <= due[i]) & (done[:i] > due[i])) for i in range(len(due))])
ss = s[order]
for k in range(0, 4):
    m = q == k if k < 3 else q >= 3
    if m.sum(): print("queue", k, "n", int(m.sum()), "mean %.1f p95 %.1f" % (ss[m].mean(), np.percentile(ss[m], 95)))
