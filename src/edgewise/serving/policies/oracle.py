"""Clairvoyant oracle: knows the true future rate and provisions exactly ahead. Pure.

At time t a replica asked for now is ready at t + start-up and the next decision comes at
t + period, so the oracle keeps the cheapest plan covering the largest true rate over
``[t, t + start-up + period]``: it starts replicas exactly one start-up time before they
are needed and removes them as soon as no need within that horizon remains. It never
scales vertically. The caller passes the truth as ``ctx.future_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgewise.serving.policies._plan import make_before_break, make_sizer, resize
from edgewise.serving.policies.base import (
    PolicyState,
    ScalingContext,
    ScalingDecision,
    nominal_cpus,
)


@dataclass(frozen=True)
class OraclePolicy:
    """Clairvoyant provisioning (a lower bound on cost at full attainment).

    Parameters
    ----------
    planner : {'pool', 'heuristic', 'exact'}
        Which planner picks the flavors (``'pool'``: the replica pool as a shared
        queue, as for edgewise; see :class:`edgewise.serving.policies._plan.Sizer`).
    mix_band : float
        Keeps the running flavor mix (adding or trimming replicas) unless a new mix is
        this much cheaper: as for edgewise, re-mixing costs start-ups.
    design_percentile : float or None
        Size the pool so that this percentile (not the SLO's) stays within the bound:
        a higher one buys attainment with replicas. ``edgewise bench serving
        --oracle-sweep`` traces the clairvoyant's cost against attainment this way.
    """

    planner: str = "pool"
    mix_band: float = 0.1
    design_percentile: float | None = None
    period_s: float = 15.0
    name: str = "oracle"

    def __post_init__(self) -> None:
        p = self.design_percentile
        if p is not None and not 0.0 < p < 100.0:
            raise ValueError(f"design_percentile must be in (0, 100), got {p}")

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        if ctx.future_rate is None:
            raise ValueError("the oracle needs ctx.future_rate (the true rate) to decide")
        horizon = ctx.now + ctx.startup_s + ctx.period_s
        peak = max(0.0, float(ctx.future_rate(ctx.now, horizon)))
        pct = ctx.slo_percentile if self.design_percentile is None else self.design_percentile
        sizer = make_sizer(ctx.flavors, ctx.slo_ms, pct, self.planner)
        current = {f.name: int(ctx.replicas.get(f.name, 0)) for f in ctx.flavors}
        counts = resize(sizer, current, peak, self.mix_band)
        # A change of flavor mix keeps old replicas until the new ones are ready.
        need_now = max(0.0, float(ctx.future_rate(ctx.now, ctx.now + ctx.startup_s)))
        ready = {f.name: ctx.ready(f.name) for f in ctx.flavors}
        counts = make_before_break(ctx.flavors, counts, ready, need_now, sizer.serves)
        reason = f"oracle peak {peak:.2f} rps over the next {horizon - ctx.now:g} s"
        return ScalingDecision(counts, nominal_cpus(ctx), reason), {}
