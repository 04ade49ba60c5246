"""What a finished simulation scores: SLO attainment per second and per-minute series.

Both are vectorised over every second of a :class:`edgewise.sim.fluid.SimState`:
the attainment (fraction of each second's requests served within the SLO; rejected
requests and cold-start waits count as violations) and the per-minute series for plots.
Pure numpy functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgewise.sim.fluid import SimState
from edgewise.sim.model import SimConfig, SimFlavor, route_weight
from edgewise.sim.queueing import prob_within, speed_factor, wait_parameters

__all__ = ["MinuteSeries", "attainment_per_second", "minute_series"]


def attainment_per_second(
    state: SimState, flavors: Sequence[SimFlavor], config: SimConfig
) -> np.ndarray:
    """Fraction of each second's requests served within the SLO (0 for rejected ones).

    Parameters
    ----------
    state : SimState
        Series computed to the end.
    flavors : sequence of SimFlavor
        The simulated flavors.
    config : SimConfig
        Settings (the SLO and the speed-up limit).

    Returns
    -------
    numpy.ndarray
        One fraction per second.
    """
    lam, backlog, rejected = state.lam, state.backlog[:-1], state.rejected
    ready_n, cpus_s = state.ready_n, state.cpus_s
    n = lam.size
    fac = {f.name: speed_factor(f.option.cpus, cpus_s[f.name], config.max_speedup) for f in flavors}
    cap_f = {f.name: ready_n[f.name] / (f.mean_service_s * fac[f.name]) for f in flavors}
    cap = sum(cap_f.values(), np.zeros(n))
    weight = {f.name: ready_n[f.name] * route_weight(f, fac[f.name]) for f in flavors}
    wsum = np.maximum(sum(weight.values(), np.zeros(n)), 1e-12)
    delay = np.where(cap > 0, backlog / np.maximum(cap, 1e-12), np.inf)
    x = config.slo_ms / 1000.0 - delay
    ok = np.zeros(n)
    for f in flavors:
        c = ready_n[f.name].astype(float)
        rows = np.nonzero((c > 0) & (x > 0))[0]
        if rows.size == 0:
            continue
        share = lam[rows] * weight[f.name][rows] / wsum[rows]
        s_mean = f.mean_service_s * fac[f.name][rows]
        pw, th = wait_parameters(share, c[rows], s_mean, f.profile.cv2)
        p = prob_within(x[rows], pw, th, fac[f.name][rows], f.profile)
        ok[rows] += p * (weight[f.name][rows] / wsum[rows])
    kept = 1.0 - np.minimum(1.0, rejected / np.maximum(lam, 1e-12))
    return ok * kept


@dataclass(frozen=True)
class MinuteSeries:
    """Per-minute series of a run for plots (after the warm-up).

    Attributes
    ----------
    minute : tuple of float
        Minute index from the end of the warm-up.
    rate_rps, arrivals_rps : tuple of float
        Mean true rate and mean arrivals per second.
    replicas : tuple of float
        Mean ready replicas (all flavors).
    cpus_per_replica : tuple of float
        Mean CPUs per ready replica.
    p99_ms : tuple of float or None
        Median over the minute of the per-second p99 estimates; ``None`` when no
        request arrived or no replica could serve it.
    """

    minute: tuple[float, ...]
    rate_rps: tuple[float, ...]
    arrivals_rps: tuple[float, ...]
    replicas: tuple[float, ...]
    cpus_per_replica: tuple[float, ...]
    p99_ms: tuple[float | None, ...]

    def as_dict(self) -> dict[str, list[Any]]:
        """JSON-able, one list per series (the ``series_per_minute`` of the outputs)."""
        return {
            "minute": list(self.minute),
            "rate_rps": list(self.rate_rps),
            "arrivals_rps": list(self.arrivals_rps),
            "replicas": list(self.replicas),
            "cpus_per_replica": list(self.cpus_per_replica),
            "p99_ms": list(self.p99_ms),
        }


def minute_series(state: SimState, start: int) -> MinuteSeries | None:
    """Per-minute series of the whole minutes from second ``start``; ``None`` if none.

    ``p99_ms`` is the median over the minute of the per-second p99 estimates.
    """
    lam, ready_n, cpus_s = state.lam, state.ready_n, state.cpus_s
    m = (lam.size - start) // 60
    if m <= 0:
        return None
    sl = slice(start, start + 60 * m)

    def per_min(x: np.ndarray) -> np.ndarray:
        return np.asarray(x[sl], dtype=float).reshape(m, 60)

    replicas = sum((per_min(v) for v in ready_n.values()), np.zeros((m, 60)))
    cpu_total = sum((per_min(ready_n[k]) * per_min(cpus_s[k]) for k in ready_n), np.zeros((m, 60)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cpus = np.where(replicas > 0, cpu_total / np.maximum(replicas, 1), 0.0).mean(axis=1)
    p = per_min(state.p99)
    has = ~np.isnan(p).all(axis=1)
    p99_min = np.full(m, -1.0)
    if has.any():
        p99_min[has] = np.nanmedian(p[has], axis=1)
    return MinuteSeries(
        minute=tuple(float(i) for i in range(m)),
        rate_rps=tuple(per_min(lam).mean(axis=1).round(4).tolist()),
        arrivals_rps=tuple(per_min(state.arrivals).mean(axis=1).round(4).tolist()),
        replicas=tuple(replicas.mean(axis=1).round(3).tolist()),
        cpus_per_replica=tuple(np.round(cpus, 3).tolist()),
        p99_ms=tuple(round(float(v), 2) if 0 <= v < np.inf else None for v in p99_min),
    )
