"""Static peak provisioning: the plan for the trace's peak rate, always. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from edgewise.serving.policies._plan import make_sizer
from edgewise.serving.policies.base import (
    PolicyState,
    ScalingContext,
    ScalingDecision,
    nominal_cpus,
)


@dataclass(frozen=True)
class StaticPolicy:
    """Provision once for ``peak_rps`` (the largest rate of the trace) and never change.

    Parameters
    ----------
    peak_rps : float
        Rate to provision for.
    planner : {'heuristic', 'exact'}
        Which planner picks the flavors.
    """

    peak_rps: float = 0.0
    planner: str = "heuristic"
    period_s: float = 60.0
    name: str = "static"

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        sizer = make_sizer(ctx.flavors, ctx.slo_ms, ctx.slo_percentile, self.planner)
        counts = sizer.plan(self.peak_rps)
        if sum(counts.values()) == 0:
            counts[ctx.flavors[0].name] = 1
        reason = f"static peak {self.peak_rps:g} rps"
        return ScalingDecision(counts, nominal_cpus(ctx), reason), {}
