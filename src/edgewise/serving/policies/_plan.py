"""Flavor counts for a rate: the adapter from policies to ``edgewise.planning.serving``.

Pure. One flavor needs no solver (``ceil(rate / capacity)``); several go to the
planner. A rate beyond every limit gets the largest plan the limits allow (best effort:
the simulator and the live system then reject what they cannot serve).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from edgewise.errors import InfeasibleError
from edgewise.serving.policies.base import FlavorOption, replicas_for_rate

#: ``planner(flavors, rate_rps) -> replicas per flavor name``.
FlavorPlanner = Callable[[Sequence[FlavorOption], float], dict[str, int]]


def plan_flavors(
    flavors: Sequence[FlavorOption],
    rate_rps: float,
    method: str = "heuristic",
) -> dict[str, int]:
    """Cheapest replica counts per flavor whose SLO capacity covers ``rate_rps``.

    Parameters
    ----------
    flavors : sequence of FlavorOption
        Usable flavors.
    rate_rps : float
        Rate to cover.
    method : {'heuristic', 'exact'}
        :func:`edgewise.planning.serving.plan_heuristic` or ``plan_exact`` (anything
        else: heuristic).

    """
    counts = {f.name: 0 for f in flavors}
    if rate_rps <= 0:
        return counts
    usable = [f for f in flavors if f.capacity_rps > 0 and f.max_replicas > 0]
    if not usable:
        return counts
    if len(usable) == 1:
        f = usable[0]
        counts[f.name] = replicas_for_rate(rate_rps, f.capacity_rps, f.max_replicas)
        return counts
    from edgewise.planning.serving import ReplicaOption, plan_exact, plan_heuristic

    options = [
        ReplicaOption(
            model="service",
            flavor=f.name,
            accuracy=1.0,
            capacity_rps=f.capacity_rps,
            price_per_hour=f.price_per_hour,
            max_replicas=f.max_replicas,
            cpus=f.cpus,
        )
        for f in usable
    ]
    solve = plan_exact if method == "exact" else plan_heuristic
    try:
        plan = solve(options, rate_rps)
    except InfeasibleError:
        for f in usable:
            counts[f.name] = f.max_replicas
        return counts
    for (_, flavor), n in plan.counts.items():
        counts[flavor] = counts.get(flavor, 0) + int(n)
    return counts


def capacity_of(flavors: Sequence[FlavorOption], counts: dict[str, int]) -> float:
    """SLO capacity (rps) of ``counts`` replicas at nominal size."""
    return sum(f.capacity_rps * counts.get(f.name, 0) for f in flavors)


def price_of(flavors: Sequence[FlavorOption], counts: dict[str, int]) -> float:
    """Price per hour of ``counts`` replicas at nominal size."""
    return sum(f.price_per_hour * counts.get(f.name, 0) for f in flavors)


class Sizer:
    """Plans and capacities for a policy: pool-aware (M/G/c) or per-replica (linear).

    ``method='pool'`` sizes the replica pool with :mod:`._pool` when every flavor has
    service-time quantiles, else falls back to the part-1 planner's heuristic;
    ``'heuristic'`` and ``'exact'`` always use the part-1 planner on per-replica
    capacities. Build it with :func:`make_sizer` (cached: policies ask every period).
    """

    def __init__(
        self,
        flavors: tuple[FlavorOption, ...],
        slo_ms: float,
        percentile: float,
        method: str = "pool",
    ) -> None:
        from edgewise.serving.policies._pool import has_profiles, pool_frontier

        self.flavors = tuple(flavors)
        self.slo_ms = float(slo_ms)
        self.percentile = float(percentile)
        self.method = method
        self.pooled = method == "pool" and has_profiles(self.flavors)
        self._frontier = (
            pool_frontier(self.flavors, self.slo_ms, self.percentile) if self.pooled else None
        )

    def plan(self, rate_rps: float) -> dict[str, int]:
        """Cheapest counts serving ``rate_rps``."""
        if self._frontier is not None:
            out = {f.name: 0 for f in self.flavors}
            out.update(self._frontier.plan(rate_rps))
            return out
        return plan_flavors(self.flavors, rate_rps, self.method)

    def serves(self, counts: dict[str, int]) -> float:
        """Largest rate ``counts`` replicas serve within the SLO."""
        if self._frontier is not None:
            return self._frontier.serves(counts)
        return capacity_of(self.flavors, counts)


@lru_cache(maxsize=64)
def make_sizer(
    flavors: tuple[FlavorOption, ...],
    slo_ms: float,
    percentile: float,
    method: str = "pool",
) -> Sizer:
    """The (cached) :class:`Sizer` for these flavors, SLO and method."""
    return Sizer(flavors, slo_ms, percentile, method)


def top_up(sizer: Sizer, current: dict[str, int], rate_rps: float) -> dict[str, int] | None:
    """Cheapest way to serve ``rate_rps`` by adding replicas of one flavor (None: none does)."""
    best: dict[str, int] | None = None
    for f in sizer.flavors:
        have = current.get(f.name, 0)
        lo, hi = 0, max(0, f.max_replicas - have)
        trial = dict(current)
        trial[f.name] = have + hi
        if hi == 0 or sizer.serves(trial) < rate_rps:
            continue
        while lo < hi:  # fewest extra replicas of f that serve the rate
            mid = (lo + hi) // 2
            trial[f.name] = have + mid
            if sizer.serves(trial) >= rate_rps:
                hi = mid
            else:
                lo = mid + 1
        trial[f.name] = have + lo
        if best is None or price_of(sizer.flavors, trial) < price_of(sizer.flavors, best):
            best = dict(trial)
    return best


def trim(sizer: Sizer, current: dict[str, int], rate_rps: float) -> dict[str, int]:
    """Remove replicas (dearest flavor first) while the rest still serves ``rate_rps``."""
    out = dict(current)
    for f in sorted(sizer.flavors, key=lambda f: -f.price_per_hour):
        lo, hi = 0, out.get(f.name, 0)  # fewest replicas of f keeping the rate served
        while lo < hi:
            mid = (lo + hi) // 2
            out[f.name] = mid
            if sizer.serves(out) >= rate_rps:
                hi = mid
            else:
                lo = mid + 1
        out[f.name] = lo
    return out


def resize(
    sizer: Sizer,
    current: dict[str, int],
    rate_rps: float,
    mix_band: float,
) -> dict[str, int]:
    """Counts for ``rate_rps`` that keep the running mix unless re-mixing saves ``mix_band``.

    Adding or trimming replicas of the current mix keeps every running replica; a new
    mix replaces replicas (the new ones start first, the old go once the new serve),
    which costs start-ups and shows as a reversal, so it is taken only when its price is
    below ``(1 - mix_band)`` times the adjusted mix's.
    """
    fresh = sizer.plan(rate_rps)
    if rate_rps <= 0:
        return fresh
    if sizer.serves(current) < rate_rps:
        adjusted = top_up(sizer, current, rate_rps)
        if adjusted is None:
            return {n: max(current.get(n, 0), fresh.get(n, 0)) for n in fresh}
    else:
        adjusted = trim(sizer, current, rate_rps)
    if price_of(sizer.flavors, fresh) < price_of(sizer.flavors, adjusted) * (1 - mix_band):
        return fresh
    return adjusted


def make_before_break(
    flavors: Sequence[FlavorOption],
    target: dict[str, int],
    ready: dict[str, int],
    need_rps: float,
    serves: Callable[[dict[str, int]], float] | None = None,
) -> dict[str, int]:
    """Keep ready replicas a cut would remove until the survivors cover ``need_rps``.

    A change of flavor mix must not drop capacity while the new replicas start: the
    caller removes starting replicas before ready ones, so after the cut ``min(ready,
    target)`` replicas of each flavor still serve. Ready replicas of shrinking flavors
    are kept back (most cost-effective first) until those cover the current need.
    """
    measure = serves or (lambda c: capacity_of(flavors, c))
    out = dict(target)
    serving = {f.name: min(ready.get(f.name, 0), out.get(f.name, 0)) for f in flavors}
    cap = measure(serving)
    order = sorted(
        (f for f in flavors if f.capacity_rps > 0),
        key=lambda f: f.price_per_hour / f.capacity_rps,
    )
    for f in order:
        while cap < need_rps and serving[f.name] < ready.get(f.name, 0):
            serving[f.name] += 1
            out[f.name] = max(out.get(f.name, 0), serving[f.name])
            cap = measure(serving)
    return out
