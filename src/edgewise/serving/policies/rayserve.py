"""Ray Serve's default autoscaling policy (ongoing requests per replica), as a pure policy.

The algorithm of Ray 2.60's ``replica_queue_length_autoscaling_policy`` with its default
configuration, written afresh: desired = mean ongoing requests over the 30 s look-back
divided by the target of 2 per replica (upscaling and downscaling factors 1); a change
takes effect only after the same direction has been wanted for 30 s (up) or 600 s (down),
measured from the first consecutive decision; a scale-down never goes below one replica
except 1 -> 0 when ``min_replicas`` is 0; from zero replicas with queued requests it
scales up at once (the cold-start fast path). Ray evaluates every 0.1 s on metrics pushed
every 10 s; ticking every 5 s moves a decision by at most 5 s. ``decide`` only computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgewise.serving.policies.base import (
    Deployment,
    PolicyState,
    ScalingContext,
    SingleFlavorPolicy,
    mean_last,
)

_EPS_S = 1e-6


@dataclass(frozen=True)
class RayServePolicy(SingleFlavorPolicy):
    """Ray Serve default request-based autoscaling.

    Parameters
    ----------
    target_ongoing_requests : float
        Target ongoing (queued + running) requests per replica.
    upscale_delay_s, downscale_delay_s : float
        How long a direction must be wanted before it is applied.
    look_back_s : float
        Window over which ongoing requests are averaged.
    min_replicas : int
        Lower bound (Ray's default 1).
    """

    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_s: float = 30.0
    min_replicas: int = 1
    period_s: float = 5.0
    flavor: str | None = None
    name: str = "rayserve"

    def __post_init__(self) -> None:
        if self.target_ongoing_requests <= 0:
            raise ValueError("target_ongoing_requests must be positive")

    def recommend(self, ctx: ScalingContext, dep: Deployment) -> tuple[int, str, PolicyState]:
        """Ray's count: the ongoing-requests ratio, applied after its delay."""
        target_now = dep.current  # Ray's target_num_replicas
        running = dep.ready  # Ray's current_num_replicas
        total = mean_last(ctx.metrics.ongoing_requests, self.look_back_s)
        counter = int(ctx.policy_state.get("decision_counter", 0))
        stamp = ctx.policy_state.get("decision_timestamp")

        if running == 0 and total > 0:
            # Cold-start fast path: bypasses the delays.
            decided = max(1, target_now)
            reason = "rayserve cold start"
            counter, stamp = 0, None
        else:
            if running == 0:
                desired = target_now
            else:
                desired = math.ceil(total / self.target_ongoing_requests - 1e-9)
            decided = target_now
            if desired > target_now:
                if counter < 0:
                    counter, stamp = 0, None
                counter += 1
                stamp = ctx.now if stamp is None else float(stamp)
                if ctx.now - stamp + _EPS_S >= self.upscale_delay_s:
                    counter, stamp, decided = 0, None, desired
            elif desired < target_now:
                if counter > 0:
                    counter, stamp = 0, None
                counter -= 1
                if target_now != 1:
                    desired = max(1, desired)
                stamp = ctx.now if stamp is None else float(stamp)
                if ctx.now - stamp + _EPS_S >= self.downscale_delay_s:
                    counter, stamp, decided = 0, None, desired
            else:
                counter, stamp = 0, None
            reason = f"rayserve ongoing={total:.2f} desired={desired}"
        state: PolicyState = {"decision_counter": counter, "decision_timestamp": stamp}
        return decided, reason, state
