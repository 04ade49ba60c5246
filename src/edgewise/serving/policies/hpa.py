"""Kubernetes Horizontal Pod Autoscaler (CPU utilisation target), as a pure policy.

Follows the HPA's published algorithm and defaults: every 15 s,
``desired = ceil(ready × utilisation / target)``, no change while the ratio is within
the 0.1 tolerance, scale-down stabilised over 300 s (the largest recommendation of the
window wins), scale-up at most ``max(+4 pods, +100 %)`` per 15 s period, pods that are
still starting count as 0 % used when scaling up. ``decide`` only computes; the caller
acts on the decision and keeps the state (the recent recommendations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgewise.serving.policies.base import (
    Deployment,
    PolicyState,
    ScalingContext,
    SingleFlavorPolicy,
    clamp_replicas,
    mean_last,
)


@dataclass(frozen=True)
class HPAPolicy(SingleFlavorPolicy):
    """Kubernetes HPA on CPU utilisation.

    Parameters
    ----------
    target_utilisation : float
        CPU utilisation target in (0, 1] (Kubernetes ``averageUtilization`` / 100).
    tolerance : float
        No scaling while ``|utilisation / target - 1| <= tolerance``.
    period_s : float
        Sync period.
    stabilisation_s : float
        Scale-down stabilisation window.
    metric_window_s : float
        Window over which CPU use is averaged (metrics-server resolution).
    min_replicas : int
        Lower bound (Kubernetes has no scale to zero without extras).
    flavor : str or None
        Flavor of the deployment (default: the first one in the context).
    """

    target_utilisation: float = 0.6
    tolerance: float = 0.1
    period_s: float = 15.0
    stabilisation_s: float = 300.0
    metric_window_s: float = 15.0
    min_replicas: int = 1
    flavor: str | None = None
    name: str = "hpa"

    def __post_init__(self) -> None:
        if not 0 < self.target_utilisation <= 1:
            raise ValueError(f"target_utilisation must be in (0, 1], got {self.target_utilisation}")

    def recommend(self, ctx: ScalingContext, dep: Deployment) -> tuple[int, str, PolicyState]:
        """The HPA's count: the ratio rule, then stabilisation and the scale-up limit."""
        hi = dep.flavor.max_replicas
        current, ready = dep.current, dep.ready
        util = mean_last(ctx.metrics.cpu_utilisation, self.metric_window_s)
        if ready == 0:
            # No pod reports metrics: Kubernetes keeps the count (the minimum applies).
            raw = max(current, self.min_replicas)
        else:
            ratio = util / self.target_utilisation
            if abs(ratio - 1.0) <= self.tolerance:
                raw = current
            else:
                raw = math.ceil(ready * ratio - 1e-9)
                if raw > current:
                    # Starting pods are assumed to use 0 %: recompute over all pods.
                    spread = ready * util / (self.target_utilisation * max(current, 1))
                    if spread <= 1.0 + self.tolerance:
                        raw = current
                elif ready < current and raw < current:
                    # Missing metrics of starting pods count as 100 % on scale-down.
                    raw = max(
                        raw,
                        math.ceil(
                            (ready * util + (current - ready)) / self.target_utilisation - 1e-9
                        ),
                    )
                    raw = min(raw, current)
        raw = clamp_replicas(raw, self.min_replicas, hi)

        window = [
            (float(t), int(n))
            for t, n in ctx.policy_state.get("recommendations", [])
            if ctx.now - float(t) < self.stabilisation_s
        ]
        window.append((ctx.now, raw))
        desired = raw
        if raw < current:
            desired = min(current, max(n for _, n in window))
        elif raw > current:
            limit = max(current + 4, 2 * current)
            desired = min(raw, limit)
        reason = f"hpa util={util:.3f} target={self.target_utilisation:.2f} raw={raw}"
        state: PolicyState = {"recommendations": [[t, n] for t, n in window]}
        return desired, reason, state
