"""Pool-aware plans: the cheapest flavor mix whose *pool* keeps the SLO percentile. Pure.

A per-replica capacity (one M/G/1 replica at the SLO) is conservative for a pool: the
replicas behind one router share a queue (M/G/c), so ``c`` replicas carry more than ``c``
times what one carries alone. Given each flavor's service-time quantiles
(:attr:`FlavorOption.service_ms_quantiles`, from its capacity profile) this module

1. tabulates, for every pool size ``c = 0..N``, the largest Poisson rate ``c`` replicas of a
   flavor serve with the SLO percentile met (:func:`pool_capacity_table`, Erlang C plus the
   Allen-Cunneen wait, the same queueing model as :mod:`edgewise.sim.queueing`);
2. enumerates mixes (one bulk flavor plus a few replicas of each other flavor to fill the
   granularity gap), traffic split in proportion to per-replica capacity (the router's
   weights), a mix being feasible for a rate when every flavor group keeps the percentile;
3. keeps the cost/rate Pareto frontier, so that planning a rate is one binary search.

Everything is cached per (flavors, SLO): a policy calls :func:`plan_pool` every period.
Flavors without quantiles fall back to the linear planner in :mod:`._plan`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edgewise.serving.policies.base import FlavorOption

#: Extra replicas of each non-bulk flavor tried in a mix.
_TOPUP = {1: 0, 2: 4, 3: 3, 4: 2}


def has_profiles(flavors: Sequence[FlavorOption]) -> bool:
    """Whether every usable flavor carries service-time quantiles (pool planning possible)."""
    return all(len(f.service_ms_quantiles) >= 2 for f in flavors if f.max_replicas > 0)


def _prob_within(
    rate: np.ndarray, servers: np.ndarray, samples_s: np.ndarray, slo_s: float
) -> np.ndarray:
    """P(latency <= slo) in M/G/c per row (same approximation as the simulator)."""
    from edgewise.sim.queueing import ServiceProfile, prob_within, wait_parameters

    profile = ServiceProfile(samples_s * 1000.0)
    mean_s = float(samples_s.mean())
    pw, theta = wait_parameters(rate, servers, np.full(rate.shape, mean_s), profile.cv2)
    return prob_within(np.full(rate.shape, slo_s), pw, theta, np.ones(rate.shape), profile)


@lru_cache(maxsize=64)
def pool_capacity_table(
    quantiles_ms: tuple[float, ...], slo_ms: float, percentile: float, n_max: int
) -> np.ndarray:
    """``cap[c]``: largest Poisson rate ``c`` replicas keep at ``percentile`` within ``slo_ms``.

    Parameters
    ----------
    quantiles_ms : tuple of float
        Service-time quantiles of one replica (ms).
    slo_ms, percentile : float
        The SLO.
    n_max : int
        Largest pool size tabulated.

    Returns
    -------
    numpy.ndarray
        ``n_max + 1`` rates (rps), ``cap[0] = 0``, non-decreasing; all zero when even an
        idle replica misses the SLO.
    """
    samples = np.sort(np.asarray(quantiles_ms, dtype=float)) / 1000.0
    target = percentile / 100.0
    c = np.arange(1, n_max + 1, dtype=float)
    out = np.zeros(n_max + 1)
    if _prob_within(np.array([1e-9]), np.ones(1), samples, slo_ms / 1000.0)[0] < target:
        return out
    mu = 1.0 / float(samples.mean())
    lo = np.zeros(n_max)
    hi = c * mu
    for _ in range(40):  # bisection on every pool size at once
        mid = 0.5 * (lo + hi)
        ok = _prob_within(mid, c, samples, slo_ms / 1000.0) >= target
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    out[1:] = np.maximum.accumulate(lo)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class PoolFrontier:
    """Cheapest mixes, sorted by cost, each carrying more than every cheaper one."""

    names: tuple[str, ...]
    counts: np.ndarray  # (k, F) replicas per flavor
    cost: np.ndarray  # (k,) price per hour
    max_rate: np.ndarray  # (k,) largest rate the mix serves within the SLO

    def plan(self, rate_rps: float) -> dict[str, int]:
        """Cheapest counts whose pool serves ``rate_rps`` (the largest mix when none does)."""
        if rate_rps <= 0:
            return {n: 0 for n in self.names}
        i = int(np.searchsorted(self.max_rate, rate_rps * (1 - 1e-12), side="left"))
        i = min(i, len(self.cost) - 1)
        return {n: int(v) for n, v in zip(self.names, self.counts[i], strict=True)}

    def serves(self, counts: dict[str, int]) -> float:
        """Largest rate the mix ``counts`` serves within the SLO (pool model)."""
        return mix_max_rate(self._tables, self._weights, counts, self.names)

    _tables: tuple[np.ndarray, ...] = ()
    _weights: tuple[float, ...] = ()


def mix_max_rate(
    tables: Sequence[np.ndarray],
    weights: Sequence[float],
    counts: dict[str, int],
    names: Sequence[str],
) -> float:
    """Largest rate a mix serves: every flavor group's routed share within its pool capacity."""
    c = [int(counts.get(n, 0)) for n in names]
    wsum = sum(ci * wi for ci, wi in zip(c, weights, strict=True))
    if wsum <= 0:
        return 0.0
    rate = float("inf")
    for ci, wi, table in zip(c, weights, tables, strict=True):
        if ci > 0:
            cap = float(table[min(ci, table.size - 1)])
            rate = min(rate, cap * wsum / (ci * wi))
    return rate


def _mix_rates(tables: Sequence[np.ndarray], w: np.ndarray, counts: np.ndarray) -> np.ndarray:
    wsum = counts @ w
    rate = np.full(counts.shape[0], np.inf)
    for j, table in enumerate(tables):
        cj = np.minimum(counts[:, j], table.size - 1)
        share = np.where(wsum > 0, counts[:, j] * w[j] / np.maximum(wsum, 1e-300), 0.0)
        lim = np.where(share > 0, table[cj] / np.maximum(share, 1e-300), np.inf)
        rate = np.minimum(rate, lim)
    return np.where(wsum > 0, rate, 0.0)


@lru_cache(maxsize=32)
def pool_frontier(
    flavors: tuple[FlavorOption, ...], slo_ms: float, percentile: float
) -> PoolFrontier:
    """Cost/rate frontier of flavor mixes for ``flavors`` under the SLO (cached)."""
    usable = [f for f in flavors if f.max_replicas > 0]
    names = tuple(f.name for f in usable)
    tables = tuple(
        pool_capacity_table(f.service_ms_quantiles, slo_ms, percentile, f.max_replicas)
        for f in usable
    )
    w = np.array([max(f.capacity_rps, 1e-9) for f in usable])
    price = np.array([f.price_per_hour for f in usable])
    k = _TOPUP.get(len(usable), 1)
    rows: list[np.ndarray] = []
    for b, f in enumerate(usable):
        others = [j for j in range(len(usable)) if j != b]
        tops = list(itertools.product(*[range(min(k, usable[j].max_replicas) + 1) for j in others]))
        bulk = np.arange(f.max_replicas + 1)
        block = np.zeros((len(bulk) * len(tops), len(usable)), dtype=int)
        block[:, b] = np.repeat(bulk, len(tops))
        for col, j in enumerate(others):
            block[:, j] = np.tile([t[col] for t in tops], len(bulk))
        rows.append(block)
    counts = np.unique(np.vstack(rows), axis=0)
    rate = _mix_rates(tables, w, counts)
    cost = counts @ price
    order = np.lexsort((-rate, cost))
    counts, rate, cost = counts[order], rate[order], cost[order]
    best = np.maximum.accumulate(rate)
    keep = np.ones(len(rate), dtype=bool)
    keep[1:] = rate[1:] > best[:-1]
    keep &= rate > 0
    if not keep.any():
        keep[-1] = True
    fr = PoolFrontier(
        names=names,
        counts=counts[keep],
        cost=cost[keep],
        max_rate=rate[keep],
        _tables=tables,
        _weights=tuple(float(x) for x in w),
    )
    return fr


def plan_pool(
    flavors: Sequence[FlavorOption], rate_rps: float, slo_ms: float, percentile: float
) -> dict[str, int]:
    """Cheapest replicas per flavor whose pool serves ``rate_rps`` within the SLO.

    Flavors with no replicas allowed get 0. Beyond every mix's reach, the mix serving the
    most (best effort; the system rejects the excess).
    """
    fr = pool_frontier(tuple(flavors), float(slo_ms), float(percentile))
    out = {f.name: 0 for f in flavors}
    out.update(fr.plan(rate_rps))
    return out


def pool_serves(
    flavors: Sequence[FlavorOption], counts: dict[str, int], slo_ms: float, percentile: float
) -> float:
    """Largest rate the replicas ``counts`` serve within the SLO, pool model."""
    fr = pool_frontier(tuple(flavors), float(slo_ms), float(percentile))
    return fr.serves(counts)
