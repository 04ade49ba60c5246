import sys, numpy as np
from edgewise.serving.profiles import Exchange
from edgewise.serving.capacity import percentiles_at_arrivals
d = np.load(sys.argv[1]); rng = np.random.default_rng(0)
def ex(prefix):
    return Exchange(*(d[f"{prefix}_{k}"] for k in ("scheduled", "sent", "start", "done", "cpu")))
def welch(pool_i, pool_b, arr_ms, skip, reps=200):
    n = arr_ms.size; out = []
    for _ in range(reps):
        prev = -1e18; lat = np.empty(n)
        si = rng.choice(pool_i, n); sb = rng.choice(pool_b, n)
        for k in range(n):
            t = arr_ms[k]
            if t >= prev: prev = t + si[k]
            else: prev = prev + sb[k]
            lat[k] = prev - t
        out.append(np.percentile(lat[skip:], 99))
    return float(np.mean(out))
for name in ("small", "large"):
    p = ex(f"{name}_profile"); chunk = d[f"{name}_profile_chunk"]
    # service and idle flags per chunk (each chunk is its own open-loop exchange)
    ps, pi = [], []
    for c in np.unique(chunk):
        m = chunk == c
        e = Exchange(p.scheduled[m], p.sent[m], p.start[m], p.done[m], p.cpu[m])
        ps.append(e.service_ms()); pi.append(e.idle_start())
    ps = np.concatenate(ps); pi = np.concatenate(pi)
    t = ex(f"{name}_test"); ts = t.service_ms(); ti = t.idle_start(); lat = t.latency_ms()
    n = lat.size; skip = n // 10
    arr_s = (t.scheduled - t.scheduled[0]) / 1e9
    meas = np.percentile(lat[skip:], 99)
    cur = float(np.mean(percentiles_at_arrivals(ps, arr_s, 99.0, seed=0, block=10)))
    own = float(np.mean(percentiles_at_arrivals(ts, arr_s, 99.0, seed=0, block=10)))
    wp = welch(ps[pi], ps[~pi], arr_s * 1000, skip)
    wo = welch(ts[ti], ts[~ti], arr_s * 1000, skip)
    e = lambda x: "%+.1f%%" % (100 * (x - meas) / meas)
    print(f"{name}: meas p99 {meas:.1f}; profile idle {ps[pi].mean():.1f} busy {ps[~pi].mean():.1f} (idle share {pi.mean():.2f}); test idle {ts[ti].mean():.1f} busy {ts[~ti].mean():.1f} (idle share {ti.mean():.2f})")
    print(f"  current model: profile {e(cur)}, own {e(own)};  exceptional-first-service: profile {e(wp)}, own {e(wo)}")
