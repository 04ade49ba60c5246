"""Autoscaling policies: pure ``decide(ctx) -> (decision, state)`` functions of a context.

``edgewise`` is ours (predictive, horizontal and vertical); ``hpa``, ``kpa``,
``rayserve``, ``static`` and ``oracle`` are the baselines; :class:`VariantPolicy` runs
any of them on the cheapest model variant accurate enough. The simulator
(``edgewise.sim.serving``) and the live controller drive the same objects.
"""

from __future__ import annotations

from typing import Any

from edgewise.errors import UnknownNameError
from edgewise.serving.policies.base import (
    FlavorOption,
    Policy,
    PolicyState,
    ScalingContext,
    ScalingDecision,
    WindowMetrics,
)
from edgewise.serving.policies.edgewise import EdgewisePolicy
from edgewise.serving.policies.hpa import HPAPolicy
from edgewise.serving.policies.kpa import KPAPolicy
from edgewise.serving.policies.oracle import OraclePolicy
from edgewise.serving.policies.rayserve import RayServePolicy
from edgewise.serving.policies.static import StaticPolicy
from edgewise.serving.policies.variants import ModelVariant, VariantPolicy

POLICIES: dict[str, type[Any]] = {
    "edgewise": EdgewisePolicy,
    "hpa": HPAPolicy,
    "kpa": KPAPolicy,
    "rayserve": RayServePolicy,
    "static": StaticPolicy,
    "oracle": OraclePolicy,
}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)


def make_policy(name: str, **params: Any) -> Policy:
    """Build the policy called ``name`` with ``params`` (its dataclass fields)."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}"
        ) from None
    policy: Policy = cls(**params)
    return policy


__all__ = [
    "POLICIES",
    "POLICY_NAMES",
    "EdgewisePolicy",
    "FlavorOption",
    "HPAPolicy",
    "KPAPolicy",
    "ModelVariant",
    "OraclePolicy",
    "Policy",
    "PolicyState",
    "RayServePolicy",
    "ScalingContext",
    "ScalingDecision",
    "StaticPolicy",
    "VariantPolicy",
    "WindowMetrics",
    "make_policy",
]
