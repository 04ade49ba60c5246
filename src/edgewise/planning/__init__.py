"""Pure optimisers: serving configuration (cost-minimising replica mix) and retraining plans.

The serving planner's names load on first use (PEP 562): ``edgewise.planning.retrain``
is imported by every training rank, and pulling scipy.optimize in with it cost a
throttled rank a second of its first step.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ForecastRate",
    "ReplicaOption",
    "ServingPlan",
    "forecast_rate",
    "plan_bruteforce",
    "plan_exact",
    "plan_heuristic",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("edgewise.planning.serving"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
