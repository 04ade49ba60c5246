"""Pure optimisers: serving configuration (cost-minimising replica mix) and retraining plans."""

from edgewise.planning.serving import (
    ReplicaOption,
    ServingPlan,
    plan_bruteforce,
    plan_exact,
    plan_heuristic,
)

__all__ = ["ReplicaOption", "ServingPlan", "plan_bruteforce", "plan_exact", "plan_heuristic"]
