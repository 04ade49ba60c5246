"""The live controller: drives a pure policy against a running deployment on a clock.

Imperative shell around :mod:`edgewise.serving.policies`. Every second it samples the
deployment (through a :class:`RuntimePort`: the Ray Serve runtime live, a fake in unit
tests), turns the samples into the per-second windows a policy sees, and every policy
period asks ``policy.decide(ctx)``, applies the decision (replica count, CPUs per
replica) and hands the policy state, the last plan and the action to a
:class:`StateWriter`, which stores them in the knowledge base off the control loop.

It executes the planner's whole pool, as the simulator does: with several flavors the
decision's count and CPUs of every flavor go to the runtime at once
(:meth:`PoolRuntimePort.set_pool`: one deployment whose replicas differ in CPU quota),
and a decision naming a model variant other than the one served switches every replica
to it in place (:meth:`PoolRuntimePort.set_variant`). With one flavor and no variant it
drives the runtime as before (``scale_to``, ``set_cpus``). Every decision it executed is
kept in :attr:`ControllerResult.executed`, in the simulator's form, so the two can be
compared decision by decision.

Two faults are handled here rather than by the caller:

* **The controller dies.** Everything a policy needs to go on (its state, the rate
  history it forecasts from, the per-second windows, the replica target and CPUs, the
  policy's clock) is stored at every decision. A controller started with the same
  ``run_key`` (``serve-SERVICE`` for ``edgewise serve``) that finds a state saved less
  than ``resume_within_s`` ago resumes from it instead of starting cold; the deployment
  keeps serving at the last target meanwhile, since replicas do not depend on the loop.
* **The knowledge base is locked or unreachable.** The loop never waits on it: writes
  that fail stay pending (the newest state, every event in order) and are written in
  one transaction once the database answers again.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol, cast

import numpy as np

from edgewise.clock import Clock, WallClock
from edgewise.serving.cost import CostMeter, FlavorPrice
from edgewise.serving.live import StateWriter
from edgewise.serving.policies.base import (
    FlavorOption,
    Policy,
    ScalingContext,
    ScalingDecision,
    WindowMetrics,
)

WINDOW_S = 60

#: A stored state older than this (seconds) is not resumed: the controller starts cold.
RESUME_WITHIN_S = 600.0

#: Rate-history bins kept in the stored state (six weeks of hourly bins).
_HISTORY_KEPT = 24 * 7 * 6
_TICK_S = 1.0  # the loop observes once a second

log = logging.getLogger(__name__)


class RuntimePort(Protocol):
    """What the controller needs from a deployment."""

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]: ...

    def running_replicas(self) -> int: ...

    def scale_to(self, replicas: int) -> None: ...

    def set_cpus(self, cpus: float) -> None: ...

    def set_info(self, **info: Any) -> None: ...


class PoolRuntimePort(RuntimePort, Protocol):
    """A deployment that runs several flavors at once and switches model variant."""

    def set_pool(self, replicas: Mapping[str, int], cpus: Mapping[str, float]) -> None: ...

    def set_variant(self, ref: str) -> None: ...

    def running_by_flavor(self) -> dict[str, int]: ...


@dataclass
class _Series:
    """Per-second observations, oldest first, bounded to the window."""

    arrivals: list[float] = field(default_factory=list)
    ongoing: list[float] = field(default_factory=list)
    util: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)

    def push(self, arrivals: float, ongoing: float, util: float, p99: float) -> None:
        for lst, v in (
            (self.arrivals, arrivals),
            (self.ongoing, ongoing),
            (self.util, util),
            (self.p99, p99),
        ):
            lst.append(v)
            if len(lst) > WINDOW_S:
                del lst[0]

    def metrics(self) -> WindowMetrics:
        return WindowMetrics(
            arrival_rps=np.asarray(self.arrivals, dtype=float),
            ongoing_requests=np.asarray(self.ongoing, dtype=float),
            cpu_utilisation=np.asarray(self.util, dtype=float),
            latency_p99_ms=np.asarray(self.p99, dtype=float),
        )

    def to_json(self) -> dict[str, list[float | None]]:
        """The windows as JSON (a NaN p99, a second without requests, as ``None``)."""
        return {
            name: [v if math.isfinite(v) else None for v in getattr(self, name)]
            for name in ("arrivals", "ongoing", "util", "p99")
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> _Series:
        """The windows :meth:`to_json` wrote."""

        def values(name: str) -> list[float]:
            return [math.nan if v is None else float(v) for v in doc.get(name, [])][-WINDOW_S:]

        return cls(values("arrivals"), values("ongoing"), values("util"), values("p99"))


def observe_second(
    prev: dict[str, Any],
    cur: dict[str, Any],
    cpus: float,
) -> tuple[float, float, float, float]:
    """Turn two coordinator snapshots into (arrivals/s, ongoing, utilisation, p99 ms).

    Arrivals are completions + rejections + growth of the in-system count over the
    interval; utilisation is replica CPU time over the quota of the replicas seen (each
    replica's own quota in a pool of several flavors, else ``cpus`` each).
    """
    dt = max(1e-3, float(cur["time"]) - float(prev["time"]))
    done = (cur["completed"] - prev["completed"]) + (cur["rejected"] - prev["rejected"])
    in_sys_prev = max(float(prev.get("queued_total", 0.0)), float(prev.get("ongoing", 0)))
    in_sys_cur = max(float(cur.get("queued_total", 0.0)), float(cur.get("ongoing", 0)))
    arrivals = max(0.0, (done + in_sys_cur - in_sys_prev) / dt)
    cpu_prev, cpu_cur = prev.get("cpu_s", {}), cur.get("cpu_s", {})
    used = sum(max(0.0, v - cpu_prev.get(k, v)) for k, v in cpu_cur.items())
    reps = cur.get("replicas", {})
    if cur.get("pool"):
        quota = sum(float(r.get("cpus", cpus)) for r in reps.values())
    else:
        quota = max(1, len(reps)) * cpus
    util = min(1.0, used / (dt * max(quota, 1e-6))) if reps else 0.0
    lat = [v for t, v in cur.get("recent", []) if t > float(prev["time"])]
    p99 = float(np.percentile(lat, 99)) if lat else math.nan
    return arrivals, in_sys_cur, util, p99


class ReplicaStep(NamedTuple):
    """From ``t`` (seconds since the start) on, ``replicas`` targeted at ``cpus`` each.

    In a pool of several flavors ``cpus`` is the mean quota (``replicas * cpus`` is the
    pool's CPUs) and ``by_flavor`` has each flavor's count.
    """

    t: float
    replicas: int
    cpus: float
    by_flavor: Mapping[str, int] | None = None


@dataclass
class ControllerResult:
    """What a controller run did: decisions, actions, cost and the replica steps.

    ``kb_write_failures`` counts write attempts the knowledge base refused (locked,
    unreachable); ``unsaved_writes`` what was still not written when the run ended.
    """

    decisions: int
    scale_actions: int
    vertical_actions: int
    cost: float
    replicas_series: list[ReplicaStep]
    resumed: bool
    kb_write_failures: int = 0
    unsaved_writes: int = 0
    executed: list[dict[str, Any]] = field(default_factory=list)
    """Every decision as executed: ``t`` (policy clock), ``replicas`` per flavor, ``variant``."""
    variant_switches: int = 0


class LiveController:
    """Run ``policy`` against ``runtime`` for a pool of flavors, persisting state per ``run_key``.

    Parameters
    ----------
    runtime : RuntimePort
        The deployment (``ServingRuntime`` or a fake); a :class:`PoolRuntimePort` when
        there are several flavors or a variant to switch.
    policy : Policy
        Any policy from :mod:`edgewise.serving.policies`.
    flavors : FlavorOption or sequence of FlavorOption
        The flavors the deployment's replicas may run in (capacities from the profiles).
    variant : str or None
        The model reference the deployment serves at the start (a decision naming
        another one switches to it).
    slo_ms, slo_percentile : float
        The service's SLO.
    startup_s : float
        Expected replica start-up time (wall seconds).
    history_bin_s : float
        Length of one rate-history bin (wall seconds; a trace hour over the speedup).
    history : sequence of float
        Past mean rates per bin, oldest first (for forecasting policies).
    kb : KnowledgeBase or None
        Where policy state and scaling events go.
    run_key : str
        Identity of this run: a restarted controller with the same key resumes.
    clock : Clock
        Wall clock live, a fake in tests.
    time_scale : float
        Trace seconds per wall second (the replay speedup), for cost in trace time.
    future_rate : callable, optional
        The true rate over ``[t0, t1]`` (the clairvoyant oracle's input).
    resume_within_s : float
        Resume a stored state only when it was saved less than this long ago (clock
        seconds); an older one is left alone and the controller starts cold.
    gate : bool
        Keep Serve's proxy admitting only what the asked-for replicas serve within the
        SLO (:meth:`admission_limit`, published after every change); the excess gets a
        503 at once instead of a queue a flood would grow (``edgewise serve`` sets it).
    on_variant : callable, optional
        Called with the new variant's reference after each switch (``edgewise serve``
        records it; the callback must not block the loop).

    """

    def __init__(
        self,
        runtime: RuntimePort,
        policy: Policy,
        flavors: FlavorOption | Sequence[FlavorOption],
        *,
        variant: str | None = None,
        slo_ms: float,
        slo_percentile: float = 99.0,
        startup_s: float = 5.0,
        history_bin_s: float = 3600.0,
        history: Sequence[float] = (),
        kb: Any = None,
        run_key: str = "serve",
        clock: Clock | None = None,
        time_scale: float = 1.0,
        future_rate: Any = None,
        resume_within_s: float = RESUME_WITHIN_S,
        gate: bool = False,
        on_variant: Callable[[str], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.gate = gate
        self.on_variant = on_variant
        self.policy = policy
        self.flavors = (flavors,) if isinstance(flavors, FlavorOption) else tuple(flavors)
        if not self.flavors:
            raise ValueError("the live controller needs at least one flavor")
        self.flavor = self.flavors[0]
        self.variant = variant
        self.slo_ms = slo_ms
        self.slo_percentile = slo_percentile
        self.startup_s = startup_s
        self.history_bin_s = history_bin_s
        self.kb = kb
        self.run_key = run_key
        self.clock = clock or WallClock()
        self.time_scale = time_scale
        self.future_rate = future_rate
        self.resume_within_s = resume_within_s
        self._series = _Series()
        self._history = [float(v) for v in history]
        self._bin_sum = 0.0
        self._bin_n = 0
        self._state: dict[str, Any] = {}
        self._targets = {f.name: 0 for f in self.flavors}
        self._cpus_of = {f.name: f.cpus for f in self.flavors}
        self._plan: dict[str, Any] | None = None
        self._prev: dict[str, Any] | None = None
        self._last_decide = -math.inf
        # This run's own start (cost, replica steps, duration) and the origin of the
        # policy's time, which a resumed run carries on from the stored one.
        self._started_at = self.clock.now()
        self._t0 = self._started_at
        self.decisions = 0
        self.scale_actions = 0
        self.vertical_actions = 0
        self.variant_switches = 0
        self.series: list[ReplicaStep] = []
        self.executed: list[dict[str, Any]] = []
        self.meter = CostMeter(
            {f.name: FlavorPrice(f.name, f.cpus, f.price_per_hour) for f in self.flavors},
            start=0.0,
        )
        self.writer = StateWriter(kb, run_key, policy.name) if kb is not None else None
        self.resumed = self._load_state()

    @property
    def pooled(self) -> bool:
        """Whether the runtime is driven as a pool of several flavors."""
        return len(self.flavors) > 1

    @property
    def _pool_port(self) -> PoolRuntimePort:
        """The runtime as a pool (only called with several flavors or a variant switch)."""
        return cast(PoolRuntimePort, self.runtime)

    @property
    def target(self) -> int:
        """Replicas the controller currently asks for (every flavor together)."""
        return sum(self._targets.values())

    @property
    def targets(self) -> dict[str, int]:
        """Replicas the controller currently asks for, per flavor."""
        return dict(self._targets)

    @property
    def _cpus(self) -> float:
        """The mean CPU quota of the replicas asked for (the one flavor's quota alone)."""
        n = self.target
        if not self.pooled or n == 0:
            return self._cpus_of[self.flavor.name]
        return sum(self._targets[k] * self._cpus_of[k] for k in self._targets) / n

    @property
    def history(self) -> list[float]:
        """The rate history (mean rate per bin, oldest first) the policy forecasts from."""
        return list(self._history)

    @property
    def policy_state(self) -> dict[str, Any]:
        """The policy's state after its last decision (or as resumed)."""
        return dict(self._state)

    # --- persistence ------------------------------------------------------------------
    def _load_state(self) -> bool:
        """Take over a recent stored state of ``run_key``; ``False`` when starting cold."""
        if self.kb is None:
            return False
        from sqlalchemy import select

        from edgewise.kb import models as m

        with self.kb.snapshot() as s:
            row = s.scalars(select(m.PolicyState).where(m.PolicyState.key == self.run_key)).first()
            if row is None:
                return False
            saved, updated = dict(row.state), row.updated_at
        ctl = saved.get("controller", {})
        saved_at = float(ctl.get("saved_at", _epoch(updated)))
        now = self.clock.now()
        if not now - saved_at <= self.resume_within_s:
            log.info("state of %s saved %.0f s ago: starting cold", self.run_key, now - saved_at)
            return False
        self._state = dict(saved.get("policy", {}))
        self._history = [float(v) for v in ctl.get("history", self._history)]
        targets = ctl.get("targets") or {self.flavor.name: ctl.get("target", 0)}
        cpus = ctl.get("cpus_of") or {self.flavor.name: ctl.get("cpus", self.flavor.cpus)}
        for f in self.flavors:
            self._targets[f.name] = int(targets.get(f.name, 0))
            self._cpus_of[f.name] = float(cpus.get(f.name, f.cpus))
        self.variant = ctl.get("variant", self.variant)
        self._plan = ctl.get("plan")
        bin_sum, bin_n = ctl.get("bin", (0.0, 0))
        self._bin_sum, self._bin_n = float(bin_sum), int(bin_n)
        if "series" in ctl:
            self._series = _Series.from_json(ctl["series"])
        # The policy's clock goes on from where the stored run left it (downtime included),
        # so the times it keeps in its state (last scale-out, recommendations) stay valid.
        self._t0 = saved_at - float(ctl.get("elapsed_s", 0.0))
        return True

    def _snapshot_state(self, now: float) -> dict[str, Any]:
        """Everything a restarted controller needs to go on (JSON)."""
        return {
            "policy": self._state,
            "controller": {
                "history": self._history[-_HISTORY_KEPT:],
                "bin": [self._bin_sum, self._bin_n],
                "series": self._series.to_json(),
                "target": self.target,
                "cpus": self._cpus,
                "targets": dict(self._targets),
                "cpus_of": dict(self._cpus_of),
                "variant": self.variant,
                "plan": self._plan,
                "elapsed_s": now,
                "saved_at": self.clock.now(),
            },
        }

    # --- the loop ----------------------------------------------------------------------
    def observe(self) -> None:
        """Take one sample of the deployment and extend the per-second windows."""
        cur = self.runtime.snapshot(window_s=5.0)
        if self._prev is not None:
            arrivals, ongoing, util, p99 = observe_second(self._prev, cur, self._cpus)
            self._series.push(arrivals, ongoing, util, p99)
            self._bin_sum += arrivals
            self._bin_n += 1
            if self._bin_n * 1.0 >= self.history_bin_s:
                self._history.append(self._bin_sum / self._bin_n)
                self._bin_sum, self._bin_n = 0.0, 0
        self._prev = cur

    def context(self, now: float) -> ScalingContext:
        """What the policy sees at ``now`` (seconds on the policy's clock)."""
        running = self._running()
        return ScalingContext(
            now=now,
            period_s=self.policy.period_s,
            startup_s=self.startup_s,
            replicas={k: max(n, running[k]) for k, n in self._targets.items()},
            starting={k: max(0, n - running[k]) for k, n in self._targets.items()},
            cpus_per_replica=dict(self._cpus_of),
            metrics=self._series.metrics(),
            slo_ms=self.slo_ms,
            slo_percentile=self.slo_percentile,
            flavors=self.flavors,
            rate_history=tuple(self._history),
            history_bin_s=self.history_bin_s,
            time_scale=self.time_scale,
            history_end=now - self._bin_n,
            policy_state=self._state,
            future_rate=self.future_rate,
        )

    def _running(self) -> dict[str, int]:
        """Replicas running per flavor (a pool's runtime says; one flavor: all of them)."""
        if self.pooled:
            by_flavor = self._pool_port.running_by_flavor()
            return {f.name: int(by_flavor.get(f.name, 0)) for f in self.flavors}
        return {self.flavor.name: self.runtime.running_replicas()}

    def decide(self) -> ScalingDecision:
        """Ask the policy, apply its decision and hand the new state to the writer."""
        wall = self.clock.now()
        now, local = wall - self._t0, wall - self._started_at
        decision, state = self.policy.decide(self.context(now))
        self._state = json.loads(json.dumps(state))
        self.decisions += 1
        changed = self._apply(decision)
        if changed:
            self._publish_gate()
        self._plan = {**decision.to_dict(), "t": now}
        self._record(local)
        self.executed.append({"t": now, "replicas": dict(self._targets), "variant": self.variant})
        self.runtime.set_info(target_replicas=self.target, cpus=self._cpus)
        if self.writer is not None:
            event = (now, decision.to_dict()) if changed else None
            self.writer.put(self._snapshot_state(now), event)
        return decision

    def _apply(self, decision: ScalingDecision) -> bool:
        """Execute ``decision`` on the runtime; whether anything changed."""
        targets = {k: int(decision.replicas.get(k, n)) for k, n in self._targets.items()}
        cpus = {k: float(decision.cpus_per_replica.get(k, c)) for k, c in self._cpus_of.items()}
        scaled = targets != self._targets
        resized = any(abs(cpus[k] - self._cpus_of[k]) > 1e-6 for k in cpus)
        self._targets, self._cpus_of = targets, cpus
        if self.pooled and (scaled or resized):
            self._pool_port.set_pool(targets, cpus)
        elif scaled:
            self.runtime.scale_to(targets[self.flavor.name])
        if resized and not self.pooled:
            self.runtime.set_cpus(cpus[self.flavor.name])
        self.scale_actions += scaled
        self.vertical_actions += resized
        switched = decision.variant is not None and decision.variant != self.variant
        if switched:
            self._pool_port.set_variant(str(decision.variant))
            self.variant = decision.variant
            self.variant_switches += 1
            if self.on_variant is not None:
                self.on_variant(str(decision.variant))
        return scaled or resized or switched

    def _record(self, local: float) -> None:
        """Meter every flavor's replicas from ``local`` on and extend the replica steps."""
        for name, n in self._targets.items():
            self.meter.update(local, name, n, self._cpus_of[name])
        by_flavor = dict(self._targets) if self.pooled else None
        self.series.append(ReplicaStep(local, self.target, self._cpus, by_flavor))

    def start(self, initial_replicas: int) -> None:
        """Set the starting level (ignored when resuming a stored run)."""
        if not self.resumed:
            self._targets = {f.name: 0 for f in self.flavors}
            self._targets[self.flavor.name] = initial_replicas
        self.start_pool(self._targets)

    def start_pool(self, replicas: Mapping[str, int]) -> None:
        """Set the starting replicas per flavor (the first flavor's count alone with one)."""
        for f in self.flavors:
            self._targets[f.name] = int(replicas.get(f.name, 0))
        if self.pooled:
            self._pool_port.set_pool(self._targets, self._cpus_of)
        else:
            self.runtime.scale_to(self.target)
            self.runtime.set_cpus(self._cpus)
        for name, n in self._targets.items():
            self.meter.update(0.0, name, n, self._cpus_of[name])
        self._publish_gate()

    def admission_limit(self) -> int:
        """Requests the asked-for replicas may hold with the admitted ones in the SLO
        (:func:`~edgewise.serving.runtime.admission.pool_admission_limit` of the serving
        variant's flavors)."""
        from edgewise.serving.runtime.admission import pool_admission_limit

        options = self.flavors
        for v in getattr(self.policy, "variants", ()):
            if getattr(v, "ref", None) == self.variant:
                options = v.flavors
        return pool_admission_limit(self.slo_ms, options, self._targets, self._cpus_of)

    def _publish_gate(self) -> None:
        """Publish :meth:`admission_limit` to the runtime's proxy (with ``gate`` only)."""
        publish = getattr(self.runtime, "set_admission_limit", None)
        if self.gate and publish is not None:
            publish(self.admission_limit())

    def align_clock(self) -> None:
        """Start this run's clock now (the load starts now), unless it resumed a stored one.

        A replay calls it once the first replicas are up, so that the policy's time and
        the trace's time start together, as in the simulator.
        """
        if not self.resumed and self.decisions == 0:
            self._started_at = self._t0 = self.clock.now()

    def run(self, duration_s: float, stop: threading.Event | None = None) -> ControllerResult:
        """Observe every second and decide every policy period until ``duration_s``.

        The knowledge-base writer runs beside the loop; what it could not write by the
        end is tried for a few more seconds, and counted in the result if still unsaved.
        """
        end = self._started_at + duration_s
        next_tick = self.clock.now()
        if self.writer is not None:
            self.writer.start()
        try:
            while self.clock.now() < end and not (stop is not None and stop.is_set()):
                self.observe()
                now = self.clock.now()
                # half a tick of slack: a tick landing a few ms early must not skip a period
                if now - self._last_decide >= self.policy.period_s - 0.5 * _TICK_S:
                    self._last_decide = now
                    self.decide()
                next_tick += _TICK_S
                self.clock.sleep(max(0.0, next_tick - self.clock.now()))
        finally:
            stats = self.writer.close() if self.writer is not None else None
        t_end = min(self.clock.now(), end) - self._started_at
        return ControllerResult(
            decisions=self.decisions,
            scale_actions=self.scale_actions,
            vertical_actions=self.vertical_actions,
            cost=self.meter.total(t_end) * self.time_scale,
            replicas_series=list(self.series),
            resumed=self.resumed,
            kb_write_failures=stats.failures if stats else 0,
            unsaved_writes=stats.pending if stats else 0,
            executed=list(self.executed),
            variant_switches=self.variant_switches,
        )


def _epoch(stamp: datetime | None) -> float:
    """A stored timestamp as epoch seconds (``-inf`` when missing: never recent)."""
    return stamp.timestamp() if stamp is not None else -math.inf
