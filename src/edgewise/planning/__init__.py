"""Pure optimisers: serving configuration (cost-minimising replica mix) and retraining plans."""

from edgewise.planning.serving import (
    ForecastRate,
    ReplicaOption,
    ServingPlan,
    forecast_rate,
    plan_bruteforce,
    plan_exact,
    plan_heuristic,
)

__all__ = [
    "ForecastRate",
    "ReplicaOption",
    "ServingPlan",
    "forecast_rate",
    "plan_bruteforce",
    "plan_exact",
    "plan_heuristic",
]
