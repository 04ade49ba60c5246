"""Ad hoc: FILE.npz from capacity_probe_own.py -- the test's own service times fed to
an i.i.d. M/G/1 and to one with exceptional first service (idle vs busy starts)."""
import sys, numpy as np
from edgewise.serving.profiles import Exchange
d = np.load(sys.argv[1])
ex = Exchange(d["sched"], d["sent"], d["start"], d["done"], d["cpu"])
s = ex.service_ms(); idle = ex.idle_start(); lat = ex.latency_ms()
n = s.size; skip = int(0.1 * n)
arr_ms = (ex.scheduled - ex.scheduled[0]) / 1e6
meas = np.percentile(lat[skip:], 99)
order = np.argsort(ex.done); s_o = s[order]; idle_o = idle[order]
pool_i = s_o[idle_o]; pool_b = s_o[~idle_o]
print("idle mean %.1f (n %d) busy mean %.1f (n %d)" % (pool_i.mean(), pool_i.size, pool_b.mean(), pool_b.size))
rng = np.random.default_rng(0)
def sim(reps=200, cond=True):
    out = []
    for _ in range(reps):
        done_prev = -1e18; lats = np.empty(n)
        for k in range(n):
            t = arr_ms[k]
            if t >= done_prev:
                sv = rng.choice(pool_i) if cond else rng.choice(s)
                start = t
            else:
                sv = rng.choice(pool_b) if cond else rng.choice(s)
                start = done_prev
            done_prev = start + sv; lats[k] = done_prev - t
        out.append(np.percentile(lats[skip:], 99))
    return np.mean(out)
iid = sim(cond=False); w = sim(cond=True)
print("meas %.1f iid %+.1f%% welch %+.1f%%" % (meas, 100*(iid-meas)/meas, 100*(w-meas)/meas))
