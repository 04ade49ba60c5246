"""Elastic re-training controller: launch ranks, watch them, survive a device failure.

The imperative shell around the pure planner. A *generation* is one process group:
the controller plans on the devices it believes alive, writes the group's config,
spawns one rank per selected device inside that device's cgroup (own session, dies
with the controller), and polls. When a rank exits abnormally it kills the rest of
the group, marks a device whose rank was killed by a signal, or that the launcher
reports failed (:class:`DeviceFailure`), as failed (failures go back to the planner as
data: ``alive=False``), re-plans on the survivors and starts the next generation on a
fresh port from the last checkpoint. Every wait is bounded.

The production loop injects no faults: a test, a benchmark or ``edgewise retrain
--kill-at-step`` wraps the launcher in :class:`edgewise.retrain.faults.KillDeviceAtStep`,
which kills a device and reports it as data, as a real node loss would be.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from edgewise.errors import EdgewiseError
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    RetrainPlan,
)
from edgewise.procs import free_port, kill_group
from edgewise.retrain.checkpoint import latest_checkpoint, list_checkpoints
from edgewise.retrain.devices import REAP_S
from edgewise.retrain.loadaware import (
    BackgroundObservation,
    LoadContext,
    LoadState,
    adjusted_profiles,
    decide,
    plan_with_bans,
)
from edgewise.retrain.trainer import RankConfig, TrainJobConfig, write_live_plan

Planner = Callable[
    [Sequence[DeviceState], Mapping[str, DeviceProfile], RetrainConstraints], RetrainPlan
]


class RankProcess(Protocol):
    """A started rank: a local ``Popen`` or a remote handle (``raypool.RemoteProcess``)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Launcher(Protocol):
    """Where ranks run: an :class:`~edgewise.retrain.devices.EmulatedPool`, a
    :class:`~edgewise.retrain.raypool.RayPool` or a fake.

    A launcher may also offer ``rendezvous(device) -> (host, port)``: where the group
    whose rank 0 runs on ``device`` meets (default: loopback and a free local port).
    """

    def spawn(self, name: str, cmd: list[str], **kw: Any) -> RankProcess: ...

    def kill_device(self, name: str) -> None: ...


def stop_rank(proc: RankProcess, sig: int = signal.SIGKILL) -> None:
    """Signal a rank's process group and reap it, locally or through its launcher."""
    if isinstance(proc, subprocess.Popen):
        kill_group(proc, sig, reap_s=REAP_S)
    else:
        proc.kill_group(sig)  # type: ignore[attr-defined]


def rendezvous(launcher: Launcher, device: str) -> tuple[str, int]:
    """Host and port of a group's rendezvous (rank 0 on ``device``)."""
    where = getattr(launcher, "rendezvous", None)
    if where is None:
        return "127.0.0.1", free_port()
    host, port = where(device)
    return str(host), int(port)


class Monitor(Protocol):
    """Background apps' own reports, per device (see :mod:`edgewise.retrain.loadaware`)."""

    @property
    def deadlines_ms(self) -> Mapping[str, float]: ...

    def observe(self, now: float) -> Mapping[str, BackgroundObservation]: ...


class TrainingFailed(EdgewiseError):
    """Training could not finish (no survivors, repeated failures, a hung group)."""


@dataclass(frozen=True)
class JobSpec:
    """The training job, independent of where it runs."""

    model: str
    data: str
    drift: str
    seed: int
    total_steps: int
    workdir: Path
    lr: float = 0.05
    max_grad_norm: float | None = 5.0
    """Clip the averaged gradient's norm (SGD with momentum at lr 0.05 diverged on one
    seed of the digits benchmark: a norm-38 step at step 12, accuracy 0.30 -> 0.13)."""
    checkpoint_every: int = 10
    timeout_s: float = 5.0
    init_weights: str | None = None
    startup_timeout_s: float = 90.0
    max_generations: int = 5
    rebalance: bool = False
    """Move batch shares online toward the ranks' measured compute rates (exact gradients)."""


@dataclass
class RunResult:
    """What happened: plans per generation, step records, failure and recovery."""

    plans: list[RetrainPlan]
    steps: list[dict[str, Any]]
    final_weights: Path
    final_step: int
    t_first_step: float
    t_end: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    recovery_s: float | None = None
    steps_lost: int | None = None
    replans: list[dict[str, Any]] = field(default_factory=list)
    accuracy: float | None = None
    step_time_over_plan: float | None = None

    @property
    def train_time_s(self) -> float:
        """From the start of the first step to the end of the last one."""
        return self.t_end - self.t_first_step


def _read_steps(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rec = json.loads(line)
            if rec.get("event") == "step":
                out.append(rec)
    return out


@dataclass(frozen=True)
class DeviceFailure:
    """A device failure a launcher saw or caused: it reaches the controller as data.

    Like a federated strategy that receives the failed clients of a round with the
    results, the controller takes these reports at the end of a generation, plans the
    devices out and measures recovery from ``t``.
    """

    device: str
    t: float
    step: int


@runtime_checkable
class StepObserver(Protocol):
    """A launcher that wants to know the group's progress (a fault injector, say)."""

    def at_step(self, step: int) -> None: ...


@runtime_checkable
class FailureReporter(Protocol):
    """A launcher that reports the device failures it saw since the last call."""

    def drain_failures(self) -> list[DeviceFailure]: ...


@dataclass
class _RunState:
    """What the controller carries from one generation to the next."""

    states: dict[str, DeviceState]
    start_step: int = 0
    resume_from: str | None = None
    plans: list[RetrainPlan] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    replans: list[dict[str, Any]] = field(default_factory=list)
    steps_lost: int | None = None
    seen_checkpoints: set[int] = field(default_factory=set)
    load_state: LoadState = field(default_factory=LoadState)

    def resume_at_latest(self, work: Path) -> tuple[int, Path] | None:
        """Continue from the newest checkpoint in ``work`` (or from scratch without one)."""
        found = latest_checkpoint(work / "checkpoints")
        if found is not None:
            self.start_step, self.resume_from = found[0], str(found[1])
        else:
            self.start_step, self.resume_from = 0, None
        return found


@dataclass
class _Group:
    """One generation: its plan, ranks, processes and per-rank metrics files."""

    gen: int
    plan: RetrainPlan
    ranks: list[RankConfig]
    cfg_path: Path
    metrics: list[Path]
    procs: list[RankProcess] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        return [rk.device for rk in self.ranks]

    def read_steps(self) -> list[dict[str, Any]]:
        """Every rank's step records, tagged with the generation."""
        return [dict(s, generation=self.gen) for m in self.metrics for s in _read_steps(m)]


@dataclass(frozen=True)
class _Hooks:
    """The caller's callbacks and the load monitor of :func:`run_training`."""

    on_step: Callable[[int, int], None] | None
    on_checkpoint: Callable[[int, Path], None] | None
    monitor: Monitor | None
    monitor_every_s: float


def run_training(
    launcher: Launcher,
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    job: JobSpec,
    planner: Planner,
    on_step: Callable[[int, int], None] | None = None,
    resume: bool = False,
    on_checkpoint: Callable[[int, Path], None] | None = None,
    monitor: Monitor | None = None,
    monitor_every_s: float = 0.5,
) -> RunResult:
    """Train ``job`` on ``launcher``'s devices with plans from ``planner``; elastic.

    Parameters
    ----------
    launcher : Launcher
        Where ranks run. One that is a :class:`StepObserver` hears every new step; one
        that is a :class:`FailureReporter` hands its device failures back as data (a
        fault injector such as :class:`edgewise.retrain.faults.KillDeviceAtStep`).
    devices, profiles, constraints, job, planner
        The planner's inputs and the job.
    on_step : callable or None
        ``on_step(step, total_steps)`` when the group reaches a new step.
    resume : bool
        Start from the latest checkpoint in ``job.workdir``.
    on_checkpoint : callable or None
        ``on_checkpoint(step, path)`` once per checkpoint the group writes.
    monitor : Monitor or None
        The background apps' reports go through the load-aware policy every
        ``monitor_every_s``; a re-plan on the running group's devices takes effect at
        the next step boundary (shares, threads, nice; a device may drop to share 0 and
        come back).

    Returns
    -------
    RunResult

    Raises
    ------
    TrainingFailed
        One line: no survivors, repeated failures, a hung group.
    """
    work = Path(job.workdir)
    work.mkdir(parents=True, exist_ok=True)
    run = _RunState({d.name: d for d in devices})
    if resume:
        run.resume_at_latest(work)
    hooks = _Hooks(on_step, on_checkpoint, monitor, monitor_every_s)
    # generations already in the workdir (a resumed or repeated job) keep their files
    gen0 = 1 + max((int(f.stem[len("group-g") :]) for f in work.glob("group-g*.json")), default=-1)
    for gen in range(gen0, gen0 + job.max_generations):
        plan, run.load_state, dropped = plan_with_bans(
            planner, list(run.states.values()), profiles, run.load_state, constraints
        )
        if dropped is not None:
            run.replans.append(
                {
                    "t": time.time(),
                    "step": run.start_step,
                    "reasons": [dropped],
                    "shares": plan.shares,
                }
            )
        run.plans.append(plan)
        group = _start_group(launcher, gen, plan, run, job, constraints, live=monitor is not None)
        try:
            killed = _watch_group(launcher, group, run, profiles, constraints, job, planner, hooks)
        finally:
            for p in group.procs:
                if p.poll() is None:
                    stop_rank(p)
        if killed is None:
            run.steps.extend(group.read_steps())
            return _result(run, work)
        _after_failure(launcher, group, run, killed, work)
    raise TrainingFailed(f"gave up after {job.max_generations} generations; see {work}")


def _start_group(
    launcher: Launcher,
    gen: int,
    plan: RetrainPlan,
    run: _RunState,
    job: JobSpec,
    constraints: RetrainConstraints,
    live: bool,
) -> _Group:
    """Write generation ``gen``'s group config and spawn one rank per planned device."""
    work = Path(job.workdir)
    ranks = [
        RankConfig(n, plan.shares[n], plan.intensities[n].threads, plan.intensities[n].nice)
        for n in plan.shares
    ]
    host, port = rendezvous(launcher, ranks[0].device)
    cfg = TrainJobConfig(
        model=job.model,
        data=job.data,
        drift=job.drift,
        seed=job.seed,
        global_batch=constraints.global_batch,
        total_steps=job.total_steps,
        ranks=ranks,
        port=port,
        workdir=str(work),
        lr=job.lr,
        max_grad_norm=job.max_grad_norm,
        checkpoint_every=job.checkpoint_every,
        timeout_s=job.timeout_s,
        start_step=run.start_step,
        resume_from=run.resume_from,
        init_weights=job.init_weights,
        generation=gen,
        extra={
            "startup_timeout_s": job.startup_timeout_s,
            "live_plan": live,
            "master_addr": host,
            "rebalance": job.rebalance,
        },
    )
    cfg_path = work / f"group-g{gen}.json"
    cfg_path.write_text(cfg.to_json())
    group = _Group(
        gen, plan, ranks, cfg_path, [work / f"metrics-g{gen}-r{r}.jsonl" for r in range(len(ranks))]
    )
    for r, rank in enumerate(ranks):
        with open(work / f"rank-g{gen}-r{r}.err", "wb") as err:
            group.procs.append(
                launcher.spawn(
                    rank.device,
                    [sys.executable, "-m", "edgewise.retrain.trainer", str(cfg_path), str(r)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            )
    return group


def _watch_group(
    launcher: Launcher,
    group: _Group,
    run: _RunState,
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    job: JobSpec,
    planner: Planner,
    hooks: _Hooks,
) -> set[str] | None:
    """Poll a running group until it finishes (``None``) or fails (the devices lost)."""
    work = Path(job.workdir)
    last_progress = time.time()
    seen_step = run.start_step
    started = False
    load = (
        _LoadWatch(hooks.monitor, hooks.monitor_every_s, group, run, profiles, constraints, work)
        if hooks.monitor is not None
        else None
    )
    while True:
        time.sleep(0.05)
        steps0 = _read_steps(group.metrics[0])
        step_now = steps0[-1]["step"] if steps0 else run.start_step
        if step_now > seen_step:
            seen_step, last_progress, started = step_now, time.time(), True
            if hooks.on_step is not None:
                hooks.on_step(step_now, job.total_steps)
            if isinstance(launcher, StepObserver):
                launcher.at_step(step_now)
        if hooks.on_checkpoint is not None:
            for ck_step, ck_path in list_checkpoints(work / "checkpoints"):
                if ck_step not in run.seen_checkpoints:
                    run.seen_checkpoints.add(ck_step)
                    hooks.on_checkpoint(ck_step, ck_path)
        if load is not None and started:
            load.look(time.time(), step_now, planner)
        codes = [p.poll() for p in group.procs]
        if all(c == 0 for c in codes):
            return None
        failed = [i for i, c in enumerate(codes) if c is not None and c != 0]
        limit = job.timeout_s * 4 if started else job.startup_timeout_s
        if failed or time.time() - last_progress > limit:
            # a rank killed by a signal: its device is gone
            return {group.ranks[i].device for i in failed if (codes[i] or 0) < 0}


def _after_failure(
    launcher: Launcher, group: _Group, run: _RunState, killed: set[str], work: Path
) -> None:
    """Record a failed generation, plan its lost devices out and pick the resume point."""
    t_detect = time.time()
    reports = launcher.drain_failures() if isinstance(launcher, FailureReporter) else []
    killed = killed | {r.device for r in reports}
    t_kill = min((r.t for r in reports), default=None)
    run.steps.extend(group.read_steps())
    reached = max((s["step"] for s in run.steps), default=run.start_step)
    found = latest_checkpoint(work / "checkpoints")
    failure: dict[str, Any] = {
        "generation": group.gen,
        "t": t_kill if t_kill is not None else t_detect,
        "devices": sorted(killed),
        "step": reached,
        "resume_step": found[0] if found else 0,
        "t_detect": t_detect,
    }
    run.failures.append(failure)
    if not killed and len(run.failures) > 1 and run.failures[-2]["devices"] == []:
        raise TrainingFailed(
            f"training group failed twice without a device failure; "
            f"see {work}/rank-g{group.gen}-r*.err"
        )
    for name in killed:
        run.states[name] = replace(run.states[name], alive=False)
    if not any(s.alive for s in run.states.values()):
        raise TrainingFailed("every device has failed; nothing left to train on")
    run.resume_at_latest(work)
    if t_kill is not None:
        if run.steps_lost is None:
            run.steps_lost = reached - run.start_step
        failure["t_kill"] = t_kill


def _result(run: _RunState, work: Path) -> RunResult:
    """The finished run's result (every generation's steps are in ``run.steps``)."""
    steps = run.steps
    return RunResult(
        run.plans,
        steps,
        work / "final.pt",
        max(s["step"] for s in steps) if steps else run.start_step,
        min(s["t0"] for s in steps) if steps else time.time(),
        max(s["t"] for s in steps) if steps else time.time(),
        run.failures,
        recovery_time(run.failures, steps),
        run.steps_lost,
        run.replans,
    )


class _LoadWatch:
    """The load-aware monitor of one running group: decide, re-plan, publish in place."""

    def __init__(
        self,
        monitor: Monitor,
        every_s: float,
        group: _Group,
        run: _RunState,
        profiles: Mapping[str, DeviceProfile],
        constraints: RetrainConstraints,
        work: Path,
    ) -> None:
        self.monitor = monitor
        self.every_s = every_s
        self.group = group
        self.run = run
        self.profiles = profiles
        self.constraints = constraints
        self.work = work
        self.current: dict[str, Intensity | None] = {
            n: group.plan.intensities.get(n) for n in group.devices
        }
        self.version = 0
        self.next_look = time.time() + every_s

    def look(self, now: float, step: int, planner: Planner) -> None:
        """Every ``every_s``: ask the policy; on a re-plan publish the group's live plan."""
        if now < self.next_look:
            return
        self.next_look = now + self.every_s
        names = self.group.devices
        ctx = LoadContext(
            now=now,
            observations={n: o for n, o in self.monitor.observe(now).items() if n in names},
            deadlines_ms=self.monitor.deadlines_ms,
            current=self.current,
            profiles=self.profiles,
            margin=self.constraints.deadline_margin,
        )
        decision, self.run.load_state = decide(ctx, self.run.load_state)
        if not decision.replan:
            return
        new = _replan_group(
            planner, self.run.states, names, self.profiles, self.run.load_state, self.constraints
        )
        if new is None:
            return
        self.version += 1
        live = [
            RankConfig(n, new.shares[n], new.intensities[n].threads, new.intensities[n].nice)
            if n in new.shares
            else RankConfig(n, 0, 1, 19)
            for n in names
        ]
        write_live_plan(self.work, self.group.gen, self.version, live)
        self.current = {n: new.intensities.get(n) for n in names}
        self.run.plans.append(new)
        self.run.replans.append(
            {
                "t": now,
                "step": step,
                "generation": self.group.gen,
                "version": self.version,
                "reasons": list(decision.reasons),
                "shares": {r.device: r.share for r in live},
            }
        )


def _replan_group(
    planner: Planner,
    states: Mapping[str, DeviceState],
    group: Sequence[str],
    profiles: Mapping[str, DeviceProfile],
    load_state: LoadState,
    constraints: RetrainConstraints,
) -> RetrainPlan | None:
    """A plan over the running group's devices with the load-aware bans (None: none fits)."""
    view = [s if s.name in group else replace(s, alive=False) for s in states.values()]
    try:
        return planner(view, adjusted_profiles(profiles, load_state), constraints)
    except EdgewiseError:
        return None


def recovery_time(
    failures: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]]
) -> float | None:
    """Seconds from a reported failure to the end of the first step after resuming."""
    for f in failures:
        if "t_kill" in f:
            after = [s["t"] for s in steps if s["generation"] == f["generation"] + 1]
            return min(after) - f["t_kill"] if after else None
    return None
