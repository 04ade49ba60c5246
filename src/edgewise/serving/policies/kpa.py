"""Knative Pod Autoscaler (concurrency target, stable and panic windows), as a pure policy.

Follows Knative's KPA and its defaults: a 2 s tick; desired pods from the mean
concurrency over a 60 s stable window and a 6 s panic window divided by the per-pod
target; panic mode starts when the panic-window desire reaches 200 % of the ready pods
and lasts until a stable window passes without that condition; in panic the count never
goes down; outside panic it goes down at most by half per tick; scale to zero once the
stable window saw no request and the grace period passed. ``decide`` only computes; the
caller applies the decision and keeps the state (panic start, last panic desire).
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


@dataclass(frozen=True)
class KPAPolicy(SingleFlavorPolicy):
    """Knative KPA.

    Parameters
    ----------
    target_concurrency : float
        Concurrency target per pod (``container-concurrency-target`` × target utilisation).
    stable_window_s, panic_window_s : float
        Averaging windows.
    panic_threshold : float
        Panic when panic-window desire / ready pods >= this (2.0 = 200 %).
    max_scale_down_rate : float
        Per tick, the count falls at most to ready / rate.
    max_scale_up_rate : float
        Per tick, the count rises at most to ready × rate.
    scale_to_zero_grace_s : float
        Time without requests (beyond the stable window) before going to zero.
    min_replicas : int
        ``min-scale`` (0 allows scale to zero).
    """

    target_concurrency: float = 0.7
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_down_rate: float = 2.0
    max_scale_up_rate: float = 1000.0
    scale_to_zero_grace_s: float = 30.0
    min_replicas: int = 0
    period_s: float = 2.0
    flavor: str | None = None
    name: str = "kpa"

    def __post_init__(self) -> None:
        if self.target_concurrency <= 0:
            raise ValueError(f"target_concurrency must be positive, got {self.target_concurrency}")

    def recommend(self, ctx: ScalingContext, dep: Deployment) -> tuple[int, str, PolicyState]:
        """The KPA's count: stable or panic window, rate limits, scale to zero."""
        st = ctx.policy_state
        current, ready = dep.current, dep.ready
        conc = ctx.metrics.ongoing_requests
        stable = mean_last(conc, self.stable_window_s)
        panic = mean_last(conc, self.panic_window_s)
        want_stable = math.ceil(stable / self.target_concurrency - 1e-9)
        want_panic = math.ceil(panic / self.target_concurrency - 1e-9)

        base = max(ready, 1)
        panic_since = st.get("panic_since")
        panic_peak = int(st.get("panic_peak", 0))
        if want_panic / base >= self.panic_threshold and ready > 0:
            if panic_since is None:
                panic_since = ctx.now
            panic_last_trigger: float | None = ctx.now
        else:
            panic_last_trigger = st.get("panic_last_trigger")
        if panic_since is not None and (
            panic_last_trigger is None
            or ctx.now - float(panic_last_trigger) >= self.stable_window_s
        ):
            panic_since, panic_last_trigger, panic_peak = None, None, 0

        if panic_since is not None:
            desired = max(want_panic, panic_peak, current)
            panic_peak = desired
            mode = "panic"
        else:
            desired = want_stable
            mode = "stable"
            if ready > 0:
                desired = max(desired, math.floor(ready / self.max_scale_down_rate))
        if ready > 0:
            desired = min(desired, math.ceil(ready * self.max_scale_up_rate))

        # Scale to zero: only after a whole stable window (and the grace) without requests.
        idle_since = st.get("idle_since")
        arrivals = mean_last(ctx.metrics.arrival_rps, self.stable_window_s)
        if stable <= 0 and arrivals <= 0:
            idle_since = ctx.now if idle_since is None else idle_since
        else:
            idle_since = None
        grace_over = (
            idle_since is not None and ctx.now - float(idle_since) >= self.scale_to_zero_grace_s
        )
        if desired == 0 and current > 0 and not grace_over:
            desired = 1
        if desired == 0 and panic > 0:
            desired = 1  # requests wait at the activator: cold start
        reason = (
            f"kpa {mode} stable={stable:.2f} panic={panic:.2f} target={self.target_concurrency:g}"
        )
        state: PolicyState = {
            "panic_since": panic_since,
            "panic_last_trigger": panic_last_trigger,
            "panic_peak": panic_peak,
            "idle_since": idle_since,
        }
        return desired, reason, state
