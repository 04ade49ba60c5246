"""The per-second series of the fast simulator, filled lazily segment by segment.

Between two changes of the ready pool each flavor is an M/G/c queue
(:mod:`edgewise.sim.queueing`) fed its share of the rate, plus a fluid backlog that
carries overload and cold starts across seconds. :class:`SimState` holds the series
(backlog, rejections, ongoing requests, utilisation, p99 estimate, ready replicas and
CPUs per flavor) and how far they are computed; :func:`advance` fills them up to a
second under the pool's current state, and :meth:`SimState.rewind` forgets what a pool
change made stale. Pure numpy over the arrays it is given; no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgewise.sim.model import SimConfig, SimFlavor, route_weight
from edgewise.sim.pool import ReplicaPool
from edgewise.sim.queueing import p99_estimate_ms, speed_factor, wait_parameters

__all__ = ["AHEAD_S", "SimState", "advance"]

#: Seconds a lazily computed segment runs ahead of the clock.
AHEAD_S = 300


@dataclass
class SimState:
    """Per-second series of one simulated run and how far they are computed.

    Attributes
    ----------
    lam : numpy.ndarray
        True arrival rate of every second.
    arrivals : numpy.ndarray
        Requests arriving in every second (a Poisson draw of ``lam``).
    backlog : numpy.ndarray
        Fluid backlog at the start of every second, and after the last (``n + 1``).
    rejected, ongoing, util, p99 : numpy.ndarray
        Requests rejected, requests in the system, CPU utilisation and the p99
        estimate (ms; NaN without a request) of every second.
    ready_n, cpus_s : dict of numpy.ndarray
        Ready replicas and CPUs per replica of each flavor in every second.
    computed : int
        Seconds ``[0, computed)`` are filled.
    """

    lam: np.ndarray
    arrivals: np.ndarray
    backlog: np.ndarray
    rejected: np.ndarray
    ongoing: np.ndarray
    util: np.ndarray
    p99: np.ndarray
    ready_n: dict[str, np.ndarray]
    cpus_s: dict[str, np.ndarray]
    computed: int = 0

    @classmethod
    def empty(cls, lam: np.ndarray, arrivals: np.ndarray, names: Sequence[str]) -> SimState:
        """Series for ``lam.size`` seconds with nothing computed yet."""
        n_sec = lam.size
        return cls(
            lam=lam,
            arrivals=arrivals,
            backlog=np.zeros(n_sec + 1),
            rejected=np.zeros(n_sec),
            ongoing=np.zeros(n_sec),
            util=np.zeros(n_sec),
            p99=np.full(n_sec, np.nan),
            ready_n={n: np.zeros(n_sec, dtype=np.int32) for n in names},
            cpus_s={n: np.zeros(n_sec) for n in names},
        )

    @property
    def n_sec(self) -> int:
        """Seconds simulated."""
        return int(self.lam.size)

    def rewind(self, t: float) -> None:
        """Forget the seconds from ``t`` on (the pool changes there)."""
        if self.computed > t:
            self.computed = int(t)


@dataclass(frozen=True)
class _Segment:
    """The constant ready pool of one segment, as the queueing model needs it."""

    ready: dict[str, int]
    factor: dict[str, float]
    capacity: float
    weight: dict[str, float]
    weight_sum: float
    total_ready: int
    bound: int


def _segment(pool: ReplicaPool, flavors: Sequence[SimFlavor], config: SimConfig) -> _Segment:
    r = {n: pool.ready[n] for n in pool.names}
    fac = {
        f.name: float(speed_factor(f.option.cpus, pool.cpus[f.name], config.max_speedup))
        for f in flavors
    }
    cap_f = {f.name: r[f.name] / (f.mean_service_s * fac[f.name]) for f in flavors}
    weight = {f.name: r[f.name] * route_weight(f, fac[f.name]) for f in flavors}
    total_ready = sum(r.values())
    bound = config.queue_per_replica * max(
        1, total_ready + sum(pool.starting(n) for n in pool.names)
    )
    return _Segment(
        ready=r,
        factor=fac,
        capacity=sum(cap_f.values()),
        weight=weight,
        weight_sum=sum(weight.values()),
        total_ready=total_ready,
        bound=bound,
    )


def _fill_backlog(state: SimState, seg: _Segment, i0: int, i1: int) -> None:
    """Fluid backlog and rejections of seconds ``[i0, i1)``."""
    seg_lam = state.lam[i0:i1]
    cap = seg.capacity
    b0 = state.backlog[i0]
    if b0 <= 0 and (seg_lam.size == 0 or seg_lam.max() <= cap):
        state.backlog[i0 + 1 : i1 + 1] = 0.0
        state.rejected[i0:i1] = 0.0
        return
    b = b0
    for k in range(i1 - i0):
        b = b + seg_lam[k] - cap
        over = 0.0
        if b > seg.bound:
            over = b - seg.bound
            b = seg.bound
        b = max(0.0, b)
        state.rejected[i0 + k] = over
        state.backlog[i0 + k + 1] = b


def _fill_queue_metrics(
    state: SimState, seg: _Segment, flavors: Sequence[SimFlavor], i0: int, i1: int
) -> None:
    """Ongoing requests, utilisation and p99 of seconds ``[i0, i1)`` (backlog filled)."""
    a = state.arrivals[i0:i1]
    bq = state.backlog[i0:i1]
    cap = seg.capacity
    if seg.total_ready == 0 or cap <= 0:
        state.ongoing[i0:i1] = bq + a
        state.util[i0:i1] = 0.0
        state.p99[i0:i1] = np.where(a > 0, np.inf, np.nan)
        return
    delay = bq / cap
    occ = bq.copy()
    worst = np.zeros(i1 - i0)
    for f in flavors:
        c = seg.ready[f.name]
        if c == 0:
            continue
        fac = seg.factor[f.name]
        share = a * (seg.weight[f.name] / seg.weight_sum)
        s_mean = f.mean_service_s * fac
        pw, th = wait_parameters(
            share, np.full(share.shape, c), np.full(share.shape, s_mean), f.profile.cv2
        )
        rho = np.minimum(share * s_mean / c, 0.999)
        lq = pw * rho / (1.0 - rho) * (1.0 + f.profile.cv2) / 2.0
        occ += share * s_mean + lq
        worst = np.maximum(
            worst, p99_estimate_ms(pw, th, np.full(share.shape, fac), f.profile, delay)
        )
    state.ongoing[i0:i1] = occ
    state.util[i0:i1] = np.where(bq > 0, 1.0, np.minimum(1.0, a / cap))
    state.p99[i0:i1] = np.where(a > 0, worst, np.nan)


def _fill(
    state: SimState,
    pool: ReplicaPool,
    flavors: Sequence[SimFlavor],
    config: SimConfig,
    i0: int,
    i1: int,
) -> None:
    """Every series of seconds ``[i0, i1)`` under the current (constant) ready pool."""
    seg = _segment(pool, flavors, config)
    for n in pool.names:
        state.ready_n[n][i0:i1] = seg.ready[n]
        state.cpus_s[n][i0:i1] = pool.cpus[n]
    _fill_backlog(state, seg, i0, i1)
    _fill_queue_metrics(state, seg, flavors, i0, i1)


def advance(
    state: SimState,
    pool: ReplicaPool,
    flavors: Sequence[SimFlavor],
    config: SimConfig,
    s: int,
) -> None:
    """Compute the series up to second ``s``, making start-ups ready as they fall due.

    Segments end at the next start-up and run at most :data:`AHEAD_S` past ``s``; a
    later pool change rewinds what they computed ahead.
    """
    s = min(s, state.n_sec)
    while state.computed < s:
        computed = state.computed
        pool.pop_due(computed)
        end = int(min(state.n_sec, max(s, computed + AHEAD_S), np.ceil(pool.next_event())))
        if end <= computed:
            end = computed + 1
        _fill(state, pool, flavors, config, computed, end)
        state.computed = end
