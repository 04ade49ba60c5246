"""Load-aware re-planning policy: react to background apps' rate and latency reports.

Pure: ``decide(ctx) -> (decision, state)``. The context holds, per device of the
running group, what its latency-critical app reported over the last window (request
rate, latency percentile, number of requests), the intensity it trains at now, and the
profiles the plan was made from; the time is a value in the context. The caller (the
controller in :mod:`edgewise.retrain.controller`) stores the state, re-plans with
:func:`adjusted_profiles` when the decision says so, and applies the new plan at the
next step boundary.

Rules (per device with a deadline):

* **overload**: the observed percentile exceeds the deadline minus the margin while
  training at intensity ``k`` → ``k`` and every intensity at least as heavy (measured
  background latency ≥ ``k``'s) are banned at the current rate; re-plan.
* **relief**: the app's rate fell below ``(1 - hysteresis)`` of the rate at which a
  ban was made → the ban is lifted (the profile holds again); re-plan.

A minimum gap between re-plans (``cooldown_s``) and a minimum number of requests in the
window keep one noisy window from flapping the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from edgewise.errors import EdgewiseError
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    RetrainPlan,
)


@dataclass(frozen=True)
class BackgroundObservation:
    """What a background app reported over the last window."""

    rate_rps: float
    latency_ms: float
    n: int


@dataclass(frozen=True)
class LoadContext:
    """Input of :func:`decide` (all values, no clock)."""

    now: float
    observations: Mapping[str, BackgroundObservation]
    deadlines_ms: Mapping[str, float]
    current: Mapping[str, Intensity | None]
    profiles: Mapping[str, DeviceProfile]
    margin: float = 0.1
    hysteresis: float = 0.25
    cooldown_s: float = 2.0
    min_requests: int = 5


@dataclass(frozen=True)
class LoadState:
    """Bans per device: intensity labels and the app rate when banned; last re-plan time."""

    bans: Mapping[str, tuple[frozenset[str], float]] = field(default_factory=dict)
    last_replan: float = float("-inf")


@dataclass(frozen=True)
class LoadDecision:
    replan: bool
    reasons: tuple[str, ...] = ()


def decide(ctx: LoadContext, state: LoadState) -> tuple[LoadDecision, LoadState]:
    """One monitoring tick: whether to re-plan, and the new bans."""
    if ctx.now - state.last_replan < ctx.cooldown_s:
        return LoadDecision(False), state
    bans = dict(state.bans)
    reasons: list[str] = []
    for name, obs in ctx.observations.items():
        deadline = ctx.deadlines_ms.get(name)
        if deadline is None or obs.n < ctx.min_requests:
            continue
        limit = deadline * (1.0 - ctx.margin)
        cur = ctx.current.get(name)
        banned, rate_at = bans.get(name, (frozenset(), 0.0))
        if cur is not None and obs.latency_ms > limit:
            heavier = frozenset(
                k.label
                for k in ctx.profiles[name].intensities
                if k.bg_latency_ms >= cur.bg_latency_ms or k.label == cur.label
            )
            bans[name] = (banned | heavier, max(rate_at, obs.rate_rps))
            reasons.append(
                f"{name}: background {obs.latency_ms:.1f} ms > {limit:.1f} ms at "
                f"{obs.rate_rps:.0f} req/s while training at {cur.label}: lighter or out"
            )
        elif banned and obs.rate_rps < (1.0 - ctx.hysteresis) * rate_at:
            del bans[name]
            reasons.append(
                f"{name}: request rate fell to {obs.rate_rps:.0f} req/s "
                f"(from {rate_at:.0f}): its profile holds again"
            )
    if not reasons:
        return LoadDecision(False), state
    return LoadDecision(True, tuple(reasons)), LoadState(bans, ctx.now)


def adjusted_profiles(
    profiles: Mapping[str, DeviceProfile], state: LoadState
) -> dict[str, DeviceProfile]:
    """Profiles with banned intensities marked as missing every deadline."""
    out = dict(profiles)
    for name, (banned, _) in state.bans.items():
        if name in out:
            p = out[name]
            out[name] = replace(
                p,
                intensities=tuple(
                    replace(k, bg_latency_ms=float("inf")) if k.label in banned else k
                    for k in p.intensities
                ),
            )
    return out


def plan_with_bans(
    planner: Callable[
        [Sequence[DeviceState], Mapping[str, DeviceProfile], RetrainConstraints], RetrainPlan
    ],
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    state: LoadState,
    constraints: RetrainConstraints,
) -> tuple[RetrainPlan, LoadState, str | None]:
    """The plan a new group starts with: ``(plan, state, why the bans were dropped)``.

    The bans are what an earlier group observed. Where they leave no device usable, the
    plan is made from the profiles alone and the bans are dropped (the new group's
    monitor observes afresh), as a running group keeps its plan when a re-plan finds
    none. A plan the profiles alone cannot make raises as the planner does.
    """
    if state.bans:
        try:
            return planner(devices, adjusted_profiles(profiles, state), constraints), state, None
        except EdgewiseError as err:
            why = f"load bans dropped for a new generation: {err}"
            return planner(devices, profiles, constraints), LoadState(), why
    return planner(devices, profiles, constraints), state, None
