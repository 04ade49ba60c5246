"""Elastic re-training controller: launch ranks, watch them, survive a device failure.

The imperative shell around the pure planner. A *generation* is one process group:
the controller plans on the devices it believes alive, writes the group's config,
spawns one rank per selected device inside that device's cgroup (own session, dies
with the controller), and polls. When a rank exits abnormally it kills the rest of
the group, marks a device whose rank was killed by a signal as failed (failures go
back to the planner as data: ``alive=False``), re-plans on the survivors and starts
the next generation on a fresh port from the last checkpoint. Every wait is bounded.
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
from typing import Any, Protocol

from edgewise.errors import EdgewiseError
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    RetrainPlan,
)
from edgewise.procs import free_port
from edgewise.retrain.checkpoint import latest_checkpoint, list_checkpoints
from edgewise.retrain.devices import kill_group
from edgewise.retrain.loadaware import (
    BackgroundObservation,
    LoadContext,
    LoadState,
    adjusted_profiles,
    decide,
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
        kill_group(proc, sig)
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


def run_training(
    launcher: Launcher,
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    job: JobSpec,
    planner: Planner,
    kill_at_step: int | None = None,
    kill_device: str | None = None,
    on_step: Callable[[int, int], None] | None = None,
    resume: bool = False,
    on_checkpoint: Callable[[int, Path], None] | None = None,
    monitor: Monitor | None = None,
    monitor_every_s: float = 0.5,
) -> RunResult:
    """Train ``job`` on ``launcher``'s devices with plans from ``planner``; elastic.

    ``kill_at_step``/``kill_device`` inject a failure (SIGKILL of that device's rank and
    its background app) once the group reaches that step. ``resume`` starts from the
    latest checkpoint in ``job.workdir``. ``on_checkpoint(step, path)`` is called once
    per checkpoint the group writes. With a ``monitor``, the background apps' reports
    go through the load-aware policy every ``monitor_every_s``; a re-plan on the running
    group's devices takes effect at the next step boundary (shares, threads, nice; a
    device may drop to share 0 and come back). Raises :class:`TrainingFailed` (one line).
    """
    work = Path(job.workdir)
    work.mkdir(parents=True, exist_ok=True)
    states = {d.name: d for d in devices}
    plans: list[RetrainPlan] = []
    failures: list[dict[str, Any]] = []
    all_steps: list[dict[str, Any]] = []
    steps_lost: int | None = None
    resume_from: str | None = None
    start_step = 0
    if resume:
        found = latest_checkpoint(work / "checkpoints")
        if found is not None:
            start_step, path = found
            resume_from = str(path)
    pending_kill = kill_at_step is not None
    seen_ck: set[int] = set()
    replans: list[dict[str, Any]] = []
    load_state = LoadState()
    # generations already in the workdir (a resumed or repeated job) keep their files
    gen0 = 1 + max((int(f.stem[len("group-g") :]) for f in work.glob("group-g*.json")), default=-1)
    for gen in range(gen0, gen0 + job.max_generations):
        plan = planner(list(states.values()), adjusted_profiles(profiles, load_state), constraints)
        plans.append(plan)
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
            start_step=start_step,
            resume_from=resume_from,
            init_weights=job.init_weights,
            generation=gen,
            extra={
                "startup_timeout_s": job.startup_timeout_s,
                "live_plan": monitor is not None,
                "master_addr": host,
                "rebalance": job.rebalance,
            },
        )
        cfg_path = work / f"group-g{gen}.json"
        cfg_path.write_text(cfg.to_json())
        procs: list[RankProcess] = []
        metrics = [work / f"metrics-g{gen}-r{r}.jsonl" for r in range(len(ranks))]
        killed: set[str] = set()
        t_kill: float | None = None
        try:
            for r, rank in enumerate(ranks):
                err = open(work / f"rank-g{gen}-r{r}.err", "wb")  # noqa: SIM115
                procs.append(
                    launcher.spawn(
                        rank.device,
                        [sys.executable, "-m", "edgewise.retrain.trainer", str(cfg_path), str(r)],
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                )
                err.close()
            last_progress = time.time()
            seen_step = start_step
            started = False
            current: dict[str, Intensity | None] = {
                n: plan.intensities.get(n) for n in [rk.device for rk in ranks]
            }
            version, next_look = 0, time.time() + monitor_every_s
            while True:
                time.sleep(0.05)
                steps0 = _read_steps(metrics[0])
                step_now = steps0[-1]["step"] if steps0 else start_step
                if step_now > seen_step:
                    seen_step, last_progress, started = step_now, time.time(), True
                    if on_step is not None:
                        on_step(step_now, job.total_steps)
                if on_checkpoint is not None:
                    for ck_step, ck_path in list_checkpoints(work / "checkpoints"):
                        if ck_step not in seen_ck:
                            seen_ck.add(ck_step)
                            on_checkpoint(ck_step, ck_path)
                if monitor is not None and started and time.time() >= next_look:
                    now = time.time()
                    next_look = now + monitor_every_s
                    group = [rk.device for rk in ranks]
                    ctx = LoadContext(
                        now=now,
                        observations={n: o for n, o in monitor.observe(now).items() if n in group},
                        deadlines_ms=monitor.deadlines_ms,
                        current=current,
                        profiles=profiles,
                        margin=constraints.deadline_margin,
                    )
                    decision, load_state = decide(ctx, load_state)
                    if decision.replan:
                        new = _replan_group(
                            planner, states, group, profiles, load_state, constraints
                        )
                        if new is not None:
                            version += 1
                            live = [
                                RankConfig(
                                    n,
                                    new.shares[n],
                                    new.intensities[n].threads,
                                    new.intensities[n].nice,
                                )
                                if n in new.shares
                                else RankConfig(n, 0, 1, 19)
                                for n in group
                            ]
                            write_live_plan(work, gen, version, live)
                            current = {n: new.intensities.get(n) for n in group}
                            plans.append(new)
                            replans.append(
                                {
                                    "t": now,
                                    "step": step_now,
                                    "generation": gen,
                                    "version": version,
                                    "reasons": list(decision.reasons),
                                    "shares": {r.device: r.share for r in live},
                                }
                            )
                if pending_kill and kill_at_step is not None and step_now >= kill_at_step:
                    victim = kill_device or ranks[-1].device
                    if victim in plan.shares:
                        idx = [rk.device for rk in ranks].index(victim)
                        t_kill = time.time()
                        stop_rank(procs[idx], signal.SIGKILL)
                        launcher.kill_device(victim)
                        killed.add(victim)
                        pending_kill = False
                codes = [p.poll() for p in procs]
                if all(c == 0 for c in codes):
                    for m in metrics:
                        all_steps.extend(dict(s, generation=gen) for s in _read_steps(m))
                    final = work / "final.pt"
                    end_step = max(s["step"] for s in all_steps) if all_steps else start_step
                    return RunResult(
                        plans,
                        all_steps,
                        final,
                        end_step,
                        min(s["t0"] for s in all_steps) if all_steps else time.time(),
                        max(s["t"] for s in all_steps) if all_steps else time.time(),
                        failures,
                        recovery_time(failures, all_steps),
                        steps_lost,
                        replans,
                    )
                failed = [i for i, c in enumerate(codes) if c is not None and c != 0]
                limit = job.timeout_s * 4 if started else job.startup_timeout_s
                if failed or time.time() - last_progress > limit:
                    # a rank killed by a signal we did not send: its device is gone
                    for i in failed:
                        if codes[i] is not None and codes[i] < 0:  # type: ignore[operator]
                            killed.add(ranks[i].device)
                    break
        finally:
            for p in procs:
                if p.poll() is None:
                    stop_rank(p)
        # --- failure handling: everything of this generation is dead now
        t_detect = time.time()
        t_fail = t_kill if t_kill is not None else t_detect
        for m in metrics:
            all_steps.extend(dict(s, generation=gen) for s in _read_steps(m))
        reached = max((s["step"] for s in all_steps), default=start_step)
        found = latest_checkpoint(work / "checkpoints")
        ck_step = found[0] if found else 0
        failures.append(
            {
                "generation": gen,
                "t": t_fail,
                "devices": sorted(killed),
                "step": reached,
                "resume_step": ck_step,
                "t_detect": t_detect,
            }
        )
        if not killed and len(failures) > 1 and failures[-2]["devices"] == []:
            raise TrainingFailed(
                f"training group failed twice without a device failure; see {work}/rank-g{gen}-r*.err"
            )
        for name in killed:
            states[name] = replace(states[name], alive=False)
        if not any(s.alive for s in states.values()):
            raise TrainingFailed("every device has failed; nothing left to train on")
        if found is not None:
            start_step, resume_from = found[0], str(found[1])
        else:
            start_step, resume_from = 0, None
        if t_kill is not None and steps_lost is None:
            steps_lost = reached - start_step
        if t_kill is not None:
            failures[-1]["t_kill"] = t_kill
    raise TrainingFailed(f"gave up after {job.max_generations} generations; see {work}")


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
    """Seconds from the injected kill to the end of the first step after resuming."""
    for f in failures:
        if "t_kill" in f:
            after = [s["t"] for s in steps if s["generation"] == f["generation"] + 1]
            return min(after) - f["t_kill"] if after else None
    return None
