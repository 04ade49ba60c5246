"""The rollout driver: move a running service to a new version behind the gate.

The driver is the imperative shell around :func:`edgewise.serving.rollout.judge`. Through
a :class:`RolloutPort` (the service's coordinator actor, or a fake in tests) it starts a
canary (every replica loads the new version beside the serving one and answers the
canary share of its requests with it), feeds the canary's observations to the gate with
the clock's ``now`` until it decides, then either promotes replica by replica (waiting
for each to answer with the new version before the next) or rolls back, and says why.
Promotion and rollback happen inside the running replicas: no request fails and no
process restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from edgewise.clock import Clock
from edgewise.serving.rollout import (
    CanaryContext,
    CanaryStats,
    RolloutPolicy,
    Verdict,
    judge,
    promotion_steps,
)


class RolloutPort(Protocol):
    """What the driver needs of a running service (see the coordinator's rollout part)."""

    def start_rollout(self, ref: str, share: float) -> dict[str, Any]: ...

    def rollout_view(self) -> dict[str, Any]: ...

    def promote(self, replicas: list[str]) -> None: ...

    def finish_rollout(self, promoted: bool) -> None: ...


class CoordinatorPort:
    """:class:`RolloutPort` over a service's coordinator actor (a Ray actor handle)."""

    def __init__(self, coordinator: Any) -> None:
        self._c = coordinator

    def start_rollout(self, ref: str, share: float) -> dict[str, Any]:
        import ray

        out: dict[str, Any] = ray.get(self._c.start_rollout.remote(ref, share))
        return out

    def rollout_view(self) -> dict[str, Any]:
        import ray

        out: dict[str, Any] = ray.get(self._c.rollout_view.remote())
        return out

    def promote(self, replicas: list[str]) -> None:
        import ray

        ray.get(self._c.promote.remote(replicas))

    def finish_rollout(self, promoted: bool) -> None:
        import ray

        ray.get(self._c.finish_rollout.remote(promoted))


@dataclass(frozen=True)
class RolloutTimeouts:
    """How long the driver waits for each phase before it rolls back.

    Attributes
    ----------
    load_s : float
        Every replica has loaded the new version beside the serving one.
    replica_s : float
        One replica answers with the new version after it was promoted.
    poll_s : float
        Pause between two looks at the service.
    """

    load_s: float = 180.0
    replica_s: float = 30.0
    poll_s: float = 0.2


@dataclass(frozen=True)
class RolloutOutcome:
    """How a rollout ended.

    Attributes
    ----------
    ref : str
        The version rolled out.
    promoted : bool
        Every replica answers with it now.
    reason : str
        The gate's reason (or what went wrong), in words.
    canary : CanaryStats
        The canary's observations the verdict rested on.
    load_s, canary_s, promote_s : float
        Seconds to load the new version on every replica, to judge the canary, and to
        promote it replica by replica (0 when rolled back).
    replicas : int
        Replicas the rollout covered.
    steps : list of str
        What happened, one line per step.
    """

    ref: str
    promoted: bool
    reason: str
    canary: CanaryStats
    load_s: float
    canary_s: float
    promote_s: float
    replicas: int
    steps: list[str] = field(default_factory=list)

    @property
    def rolled_back(self) -> bool:
        return not self.promoted


def run_rollout(
    port: RolloutPort,
    ref: str,
    policy: RolloutPolicy,
    *,
    slo_ms: float,
    percentile: float,
    clock: Clock,
    timeouts: RolloutTimeouts | None = None,
) -> RolloutOutcome:
    """Canary, judge, then promote replica by replica or roll back.

    Parameters
    ----------
    port : RolloutPort
        The running service.
    ref : str
        The new version (a model reference every replica can load).
    policy : RolloutPolicy
        The gate's thresholds, with the canary's traffic share.
    slo_ms, percentile : float
        The service's SLO that the canary must keep.
    clock : Clock
        Time source and sleeper (a virtual one in tests).
    timeouts : RolloutTimeouts, optional
        Phase limits and poll period.

    Returns
    -------
    RolloutOutcome
        Promoted, or rolled back with the reason; the service keeps serving either way.
    """
    limits = timeouts or RolloutTimeouts()
    steps: list[str] = []
    t0 = clock.now()
    rollout = port.start_rollout(ref, policy.canary_share)
    steps.append(f"canary {ref}: {policy.canary_share:.0%} of requests")
    loaded = _wait_loaded(port, str(rollout["id"]), clock, limits)
    load_s = clock.now() - t0
    if isinstance(loaded, str):
        port.finish_rollout(False)
        return _outcome(ref, False, loaded, CanaryStats(), load_s, 0.0, 0.0, 0, steps)
    steps.append(f"loaded on {len(loaded)} replica(s) in {load_s:.1f} s")
    started = clock.now()
    verdict, stats = _judge_until_decided(port, policy, slo_ms, percentile, clock, limits)
    canary_s = clock.now() - started
    steps.append(f"gate: {verdict.action} ({verdict.reason})")
    if verdict.action != "promote":
        port.finish_rollout(False)
        steps.append("rolled back: every replica answers with the serving version")
        return _outcome(ref, False, verdict.reason, stats, load_s, canary_s, 0.0, 0, steps)
    t_promote = clock.now()
    failure = _promote(port, str(rollout["id"]), clock, limits, steps)
    promote_s = clock.now() - t_promote
    if failure is not None:
        port.finish_rollout(False)
        steps.append("rolled back: every replica answers with the serving version")
        return _outcome(ref, False, failure, stats, load_s, canary_s, promote_s, 0, steps)
    replicas = len(_lanes(port, str(rollout["id"])))
    port.finish_rollout(True)
    steps.append(f"promoted: {ref} answers every request")
    return _outcome(ref, True, verdict.reason, stats, load_s, canary_s, promote_s, replicas, steps)


def _outcome(
    ref: str,
    promoted: bool,
    reason: str,
    stats: CanaryStats,
    load_s: float,
    canary_s: float,
    promote_s: float,
    replicas: int,
    steps: list[str],
) -> RolloutOutcome:
    return RolloutOutcome(
        ref, promoted, reason, stats, load_s, canary_s, promote_s, replicas, list(steps)
    )


def _lanes(port: RolloutPort, rollout: str) -> dict[str, dict[str, Any]]:
    """Each live replica's lane state for this rollout."""
    lanes: dict[str, dict[str, Any]] = port.rollout_view().get("lanes", {})
    return {k: v for k, v in lanes.items() if v.get("rollout") in (rollout, None)}


def _wait_loaded(
    port: RolloutPort, rollout: str, clock: Clock, limits: RolloutTimeouts
) -> list[str] | str:
    """The replicas once all have loaded the canary, or why not (one line)."""
    deadline = clock.now() + limits.load_s
    while True:
        lanes = _lanes(port, rollout)
        for rid, lane in sorted(lanes.items()):
            if lane.get("canary_error"):
                return f"replica {rid} could not load the new version: {lane['canary_error']}"
        ready = [rid for rid, lane in lanes.items() if lane.get("canary_ready")]
        if lanes and len(ready) == len(lanes):
            return sorted(ready)
        if clock.now() >= deadline:
            return (
                f"{len(ready)} of {len(lanes)} replicas loaded the new version "
                f"within {limits.load_s:.0f} s"
            )
        clock.sleep(limits.poll_s)


def _judge_until_decided(
    port: RolloutPort,
    policy: RolloutPolicy,
    slo_ms: float,
    percentile: float,
    clock: Clock,
    limits: RolloutTimeouts,
) -> tuple[Verdict, CanaryStats]:
    started = clock.now()
    while True:
        stats = CanaryStats.from_dict(port.rollout_view().get("canary", {}))
        ctx = CanaryContext(clock.now(), started, slo_ms, percentile, stats)
        verdict = judge(ctx, policy)
        if verdict.action != "wait":
            return verdict, stats
        clock.sleep(limits.poll_s)


def _promote(
    port: RolloutPort, rollout: str, clock: Clock, limits: RolloutTimeouts, steps: list[str]
) -> str | None:
    """Promote one replica at a time, each answering with the new version before the next;
    a replica that joined meanwhile is promoted last. ``None``, or why it stopped."""
    done: list[str] = []
    while True:
        pending = [r for r in sorted(_lanes(port, rollout)) if r not in done]
        if not pending:
            return None
        for step in promotion_steps(done + pending)[len(done) :]:
            port.promote(step)
            replica = step[-1]
            deadline = clock.now() + limits.replica_s
            while not _lanes(port, rollout).get(replica, {}).get("promoted"):
                if replica not in _lanes(port, rollout):
                    break  # scaled in meanwhile: nothing to promote
                if clock.now() >= deadline:
                    return f"replica {replica} did not switch within {limits.replica_s:.0f} s"
                clock.sleep(limits.poll_s)
            done = list(step)
            steps.append(f"promoted replica {replica} ({len(done)} done)")
