"""Retrain use cases: update a deployed model on a device pool, and benchmark the planner.

:func:`retrain` optionally checks the deployed model for drift (and stops when it is
fine), starts the device pool (emulated on this host, or the Ray cluster's nodes that
carry the devices), takes the device profiles from the knowledge base when cached and
not stale (else measures them), plans, trains elastically with the load-aware monitor,
and records the job, its checkpoints and its metrics in the knowledge base.

:func:`benchmark_retrain` runs our plan against the equal and the
interference-oblivious proportional split on one emulated pool (and, with
``kill_at_step``, once more with a device killed), and reports speed, deadline misses,
accuracy and recovery (the runs: :mod:`edgewise.retrain.comparison`), with the profile
pillar's prediction of the apps' latency beside the measured one.

Faults are injected by wrapping the pool in
:class:`edgewise.retrain.faults.KillDeviceAtStep`; the controller receives the failure
as data. The heavy engines (torch, Ray) are imported inside the calls.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.errors import EdgewiseError, SpecError
from edgewise.retrain.comparison import RetrainBenchmark, compare_plans, training_stressor
from edgewise.retrain.jobs import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    BackgroundSummary,
    background_summaries,
    base_weights,
    check_pool,
    device_states,
    drift_accuracy,
    make_constraints,
    steps_for,
)

if TYPE_CHECKING:
    from edgewise.config import DevicePool, DeviceSpec
    from edgewise.kb import KnowledgeBase
    from edgewise.planning.retrain import DeviceProfile, RetrainConstraints, RetrainPlan
    from edgewise.retrain.controller import Launcher, RunResult
    from edgewise.retrain.drift import DriftDecision

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_EPOCHS",
    "RetrainBenchmark",
    "RetrainResult",
    "RetrainedModel",
    "benchmark_retrain",
    "predict_background",
    "retrain",
]

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; ``total == 0`` for a phase without a count."""
PlanHook = Callable[["RetrainPlan", str, str], None]
"""``on_plan(plan, profiles_source, pool_key)`` once the plan is made, before training."""

PHASE_BASE = "training the deployed model on the base split"
PHASE_TRAIN = "re-training"


@dataclass(frozen=True)
class RetrainedModel:
    """One finished re-training job: plan, speed, accuracy, failures and background."""

    job_id: int
    model: str
    plan: RetrainPlan
    steps: int
    train_time_s: float
    accuracy_before: float
    accuracy_after: float
    failures: list[dict[str, Any]]
    recovery_s: float | None
    replans: list[dict[str, Any]]
    background: dict[str, BackgroundSummary]
    profiles: str
    """Where the device profiles came from: ``cache`` or ``measured``."""
    reprofile_next: bool
    weights: Path

    def as_dict(self) -> dict[str, Any]:
        """The ``edgewise retrain --json`` form."""
        return {
            "job_id": self.job_id,
            "plan": self.plan.to_dict(),
            "steps": self.steps,
            "train_time_s": self.train_time_s,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "failures": self.failures,
            "recovery_s": self.recovery_s,
            "replans": self.replans,
            "background": {n: b.as_dict() for n, b in self.background.items()},
            "profiles": self.profiles,
            "reprofile_next": self.reprofile_next,
            "weights": str(self.weights),
        }


@dataclass(frozen=True)
class RetrainResult:
    """What :func:`retrain` did: the drift check (when asked) and the job (when it ran)."""

    drift: DriftDecision | None = None
    job: RetrainedModel | None = None

    @property
    def updated(self) -> bool:
        """Whether the model was re-trained."""
        return self.job is not None

    def as_dict(self) -> dict[str, Any]:
        """The job's JSON, or ``{"drift": ..., "updated": false}`` when none was needed."""
        if self.job is not None:
            return self.job.as_dict()
        return {"drift": asdict(self.drift) if self.drift else None, "updated": False}


@dataclass
class _Setup:
    """The job's inputs, resolved once."""

    spec: DevicePool
    source: str
    constraints: RetrainConstraints
    work: Path
    n_steps: int
    base: Path
    accuracy_before: float = 0.0
    profile_batch: int = field(init=False)

    def __post_init__(self) -> None:
        self.profile_batch = max(32, self.constraints.global_batch // len(self.spec.devices))


def retrain(
    *,
    devices: str | Path,
    model: str = "digits_cnn",
    data: str = "digits",
    drift: str = "rotation",
    epochs: int = DEFAULT_EPOCHS,
    steps: int | None = None,
    global_batch: int = DEFAULT_BATCH,
    seed: int = 0,
    kill_at_step: int | None = None,
    kill_device: str | None = None,
    resume: bool = False,
    workdir: str | Path | None = None,
    reprofile: bool = False,
    load_aware: bool = True,
    when_drift: bool = False,
    drift_metric: str = "accuracy",
    threshold: float | None = None,
    address: str | None = None,
    kb: str | None = None,
    progress: Progress | None = None,
    on_plan: PlanHook | None = None,
) -> RetrainResult:
    """Re-train the deployed model on a device pool under its apps' deadlines.

    Parameters
    ----------
    devices : str or Path
        Devices YAML.
    model, data, drift, seed
        Zoo model, data set, drift kind (rotation, noise or new_classes), seed.
    epochs, steps, global_batch
        Passes over the drifted training split (``steps`` overrides them) and the batch.
    kill_at_step, kill_device
        Kill that device (rank and app) at that step, the recovery demo; both or neither.
    resume : bool
        Continue from the last checkpoint in the job directory.
    workdir : str or Path or None
        Job directory (default ``$EDGEWISE_HOME/retrain/<model>-<data>-<devices>``).
    reprofile, load_aware
        Ignore cached profiles; re-plan when background load changes.
    when_drift, drift_metric, threshold
        Update only if the deployed model has drifted (``accuracy`` below or ``ks``
        above ``threshold``; defaults 0.9 / 0.2).
    address : str or None
        Ray cluster address: the devices are the nodes that carry them.
    kb : str or None
        Knowledge base URL (``None``: the default one).
    progress, on_plan
        Progress reports and the plan once made (:data:`Progress`, :data:`PlanHook`).

    Returns
    -------
    RetrainResult

    Raises
    ------
    SpecError
        Bad options or pool, or an interrupt (checkpoints are kept: rerun with resume).
    TrainingFailed
        Training could not finish.
    """
    from edgewise.config import load_devices
    from edgewise.kb import KnowledgeBase
    from edgewise.paths import home

    _check_options(kill_at_step, kill_device, drift_metric)
    say = progress or (lambda _phase, _done, _total: None)
    spec = load_devices(devices)
    c = make_constraints(model, global_batch)
    check_pool(spec, {}, c, str(devices))
    say(PHASE_BASE, 0, 0)
    base = base_weights(model, data, drift, seed)
    decision = None
    if when_drift:
        decision = _drift_check(model, base, data, drift, seed, drift_metric, threshold)
        if not decision.update:
            return RetrainResult(drift=decision)
    work = Path(workdir) if workdir else home() / "retrain" / f"{model}-{data}-{Path(devices).stem}"
    _clear_checkpoints(work / "job" / "checkpoints", resume)
    setup = _Setup(spec, str(devices), c, work, _n_steps(data, drift, seed, epochs, steps, c), base)
    setup.accuracy_before = drift_accuracy(model, data, drift, seed, base)
    knowledge = KnowledgeBase.open(kb)
    job = _run_job(
        setup,
        knowledge,
        model=model,
        data=data,
        drift=drift,
        seed=seed,
        kill=(kill_at_step, kill_device),
        resume=resume,
        reprofile=reprofile,
        load_aware=load_aware,
        address=address,
        say=say,
        on_plan=on_plan,
    )
    return RetrainResult(drift=decision, job=job)


def _check_options(kill_at_step: int | None, kill_device: str | None, drift_metric: str) -> None:
    """Options that only make sense together or from a short list: one line each."""
    if (kill_at_step is None) != (kill_device is None):
        raise SpecError("--kill-at-step and --kill-device go together")
    if drift_metric not in ("accuracy", "ks"):
        raise SpecError(f"--drift-metric {drift_metric}: choose accuracy or ks")


def _drift_check(
    model: str,
    base: Path,
    data: str,
    drift: str,
    seed: int,
    metric: str,
    threshold: float | None,
) -> DriftDecision:
    """Measure the deployed model's drift and decide whether to update it."""
    from edgewise.retrain import drift as drift_mod

    stat = drift_mod.measure(model, base, data, drift, seed, metric)  # type: ignore[arg-type]
    return drift_mod.decide(metric, stat, threshold)  # type: ignore[arg-type]


def _clear_checkpoints(ck_dir: Path, resume: bool) -> None:
    """A fresh job starts without the last job's checkpoints."""
    if not resume and ck_dir.exists():
        for p in ck_dir.iterdir():
            p.unlink()


def _n_steps(
    data: str, drift: str, seed: int, epochs: int, steps: int | None, c: RetrainConstraints
) -> int:
    """``steps``, or the steps of ``epochs`` passes over the drifted training split."""
    if steps:
        return steps
    from edgewise.retrain.trainer import load_task

    return steps_for(epochs, len(load_task(data, drift, seed).drift_train[1]), c.global_batch)


def _run_job(
    setup: _Setup,
    kb: KnowledgeBase,
    *,
    model: str,
    data: str,
    drift: str,
    seed: int,
    kill: tuple[int | None, str | None],
    resume: bool,
    reprofile: bool,
    load_aware: bool,
    address: str | None,
    say: Progress,
    on_plan: PlanHook | None,
) -> RetrainedModel:
    """Start the pool, profile, plan, train and record; the pool stops on return."""
    from edgewise.planning.retrain import plan_exact
    from edgewise.retrain import records
    from edgewise.retrain.background import BackgroundMonitor
    from edgewise.retrain.controller import JobSpec
    from edgewise.retrain.devices import EmulatedPool
    from edgewise.retrain.faults import KillDeviceAtStep
    from edgewise.retrain.raypool import RayPool

    spec, c = setup.spec, setup.constraints
    key = records.pool_key(spec.devices, model, data, setup.profile_batch)
    states = device_states(spec)
    pool_cm: EmulatedPool | RayPool = (
        RayPool(spec.devices, setup.work / "pool", seed=seed, address=address)
        if address
        else EmulatedPool(spec.devices, setup.work / "pool", seed=seed)
    )
    with pool_cm as pool:
        profiles, source = _pool_profiles(
            pool, setup, kb, key, model, data, drift, seed, reprofile, say
        )
        check_pool(spec, profiles, c, setup.source)
        plan = plan_exact(states, profiles, c)
        if on_plan is not None:
            on_plan(plan, source, key)
        init = _initial_weights(setup.base, setup.work, address)
        job = JobSpec(
            model,
            data,
            drift,
            seed,
            setup.n_steps,
            setup.work / "job",
            init_weights=str(init),
            rebalance=True,
        )
        at_step, victim = kill
        launcher: Launcher = (
            KillDeviceAtStep(pool, at_step, victim) if at_step is not None else pool
        )
        job_id = records.start_job(
            kb,
            f"retrain-{Path(setup.source).stem}",
            model,
            {
                "devices": setup.source,
                "data": data,
                "drift": drift,
                "seed": seed,
                "steps": setup.n_steps,
                "global_batch": c.global_batch,
                "resume": resume,
                "profiles": source,
                "workdir": str(job.workdir),
            },
        )
        monitor = BackgroundMonitor.for_pool(pool) if load_aware else None
        res = _train_recorded(launcher, states, profiles, c, job, kb, job_id, resume, monitor, say)
        bg = background_summaries(spec.devices, pool.bg_log, res.t_first_step, res.t_end)
    return _finish(
        setup, kb, key, job_id, model, data, drift, seed, profiles, source, plan, res, bg
    )


def _pool_profiles(
    pool: Any,
    setup: _Setup,
    kb: KnowledgeBase,
    key: str,
    model: str,
    data: str,
    drift: str,
    seed: int,
    reprofile: bool,
    say: Progress,
) -> tuple[dict[str, DeviceProfile], str]:
    """The devices' profiles from the knowledge base, or measured (and stored) now."""
    from edgewise.retrain import records
    from edgewise.retrain.profiler import profile_pool

    cached = None if reprofile else records.load_profiles(kb, key)
    say("starting devices" + ("" if cached else " and profiling"), 0, 0)
    pool.wait_background_ready()
    if cached is not None:
        return cached, "cache"
    profiles = profile_pool(
        pool, setup.spec.devices, model, data, drift, seed, batch=setup.profile_batch
    )
    records.save_profiles(kb, key, profiles)
    return profiles, "measured"


def _initial_weights(base: Path, work: Path, address: str | None) -> Path:
    """The weights the ranks start from: on a cluster, a copy in the shared job directory."""
    if not address:
        return base
    # workers on other hosts see the job directory, not this host's cache
    init = work / "job" / "base-weights.pt"
    init.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base, init)
    return init


def _train_recorded(
    launcher: Launcher,
    states: Any,
    profiles: dict[str, DeviceProfile],
    c: RetrainConstraints,
    job: Any,
    kb: KnowledgeBase,
    job_id: int,
    resume: bool,
    monitor: Any,
    say: Progress,
) -> RunResult:
    """Train elastically; an interrupt or a failure is recorded as the job's status."""
    from edgewise.planning.retrain import plan_exact
    from edgewise.retrain import records
    from edgewise.retrain.controller import TrainingFailed, run_training

    say(PHASE_TRAIN, 0, job.total_steps)
    try:
        return run_training(
            launcher,
            states,
            profiles,
            c,
            job,
            plan_exact,
            resume=resume,
            on_step=lambda s, total: say(PHASE_TRAIN, s, total),
            on_checkpoint=lambda s, p: records.record_checkpoint(kb, job_id, s, p),
            monitor=monitor,
        )
    except KeyboardInterrupt:
        records.finish_job(kb, job_id, "interrupted", {})
        raise SpecError(
            f"interrupted; checkpoints kept in {job.workdir / 'checkpoints'}: rerun with --resume"
        ) from None
    except TrainingFailed:
        records.finish_job(kb, job_id, "failed", {})
        raise


def _finish(
    setup: _Setup,
    kb: KnowledgeBase,
    key: str,
    job_id: int,
    model: str,
    data: str,
    drift: str,
    seed: int,
    profiles: dict[str, DeviceProfile],
    source: str,
    plan: RetrainPlan,
    res: RunResult,
    bg: dict[str, BackgroundSummary],
) -> RetrainedModel:
    """Score the new weights, mark drifted profiles stale, record the job's metrics."""
    from edgewise.retrain import records

    after = drift_accuracy(model, data, drift, seed, res.final_weights)
    ratio, drifted = records.measured_drift(res.steps, res.plans[0])
    if drifted:
        records.save_profiles(kb, key, profiles, stale=True, metrics={"ratio": ratio})
    metrics = records.job_metrics(
        res.steps,
        res.failures,
        accuracy_before=setup.accuracy_before,
        accuracy_after=after,
        background={n: b.as_dict() for n, b in bg.items()},
        plan=res.plans[0],
        replans=res.replans,
        extra={"step_time_over_plan": ratio, "reprofile_next": drifted},
    )
    records.finish_job(kb, job_id, "done", metrics)
    return RetrainedModel(
        job_id=job_id,
        model=model,
        plan=plan,
        steps=res.final_step,
        train_time_s=res.train_time_s,
        accuracy_before=setup.accuracy_before,
        accuracy_after=after,
        failures=res.failures,
        recovery_s=res.recovery_s,
        replans=res.replans,
        background=bg,
        profiles=source,
        reprofile_next=drifted,
        weights=res.final_weights,
    )


def benchmark_retrain(
    *,
    devices: str | Path,
    seed: int = 0,
    model: str = "digits_cnn",
    data: str = "digits",
    drift: str = "rotation",
    epochs: int = DEFAULT_EPOCHS,
    steps: int | None = None,
    global_batch: int = DEFAULT_BATCH,
    kill_at_step: int | None = None,
    kill_device: str | None = None,
    workdir: str | Path | None = None,
    timeline_path: str | Path | None = None,
    kb: str | None = None,
    progress: Progress | None = None,
) -> RetrainBenchmark:
    """Our retrain plan against the equal and proportional splits on an emulated pool.

    Parameters
    ----------
    devices : str or Path
        Devices YAML.
    seed, model, data, drift
        As for :func:`retrain`.
    epochs, steps, global_batch
        The job (``steps`` overrides ``epochs``: steps = ceil(epochs * |drift train| /
        batch)).
    kill_at_step, kill_device
        One more run of our plan with that device (``auto``: the plan's last) killed at
        that step; its per-device timeline goes to ``timeline_path`` (default
        ``$EDGEWISE_HOME/results/retrain-timeline-failure.png``).
    workdir : str or Path or None
        Where the runs' files go (default: a fresh temporary directory).
    kb : str or None
        Knowledge base URL (``None``: the default one); every run is recorded there as
        a ``TrainingJob`` with its checkpoints.
    progress : callable or None
        ``progress(phase, 0, 0)`` at each phase.

    Returns
    -------
    RetrainBenchmark
        Our plan re-balances shares online; the baselines keep their static shares.
    """
    from edgewise.config import load_devices
    from edgewise.kb import KnowledgeBase

    say = progress or (lambda _phase, _done, _total: None)
    knowledge = KnowledgeBase.open(kb)
    return compare_plans(
        load_devices(devices),
        str(devices),
        model=model,
        data=data,
        drift=drift,
        seed=seed,
        epochs=epochs,
        steps=steps,
        global_batch=global_batch,
        kill_at_step=kill_at_step,
        kill_device=kill_device,
        workdir=Path(workdir) if workdir else None,
        kb=knowledge,
        timeline_path=timeline_path,
        predict=lambda spec: predict_background(knowledge, spec.devices),
        say=lambda msg: say(msg, 0, 0),
    )


def predict_background(kb: Any, devices: Sequence[DeviceSpec]) -> dict[str, dict[str, Any]] | None:
    """Predicted background p99 per device and intensity from the profile pillar.

    ``None`` when the KB holds no interference model for an app (then the plan uses
    the direct measurement alone).
    """
    from edgewise.interference.predictor import Predictor
    from edgewise.retrain.profiler import candidate_intensities

    try:
        pred = Predictor(kb)
        out: dict[str, dict[str, Any]] = {}
        for d in devices:
            if d.background is None:
                continue
            app = f"{d.background.model}@{d.background.rate_rps:g}rps"
            out[d.name] = {}
            for threads, nice in candidate_intensities(d.cpus):
                lp = pred.predict(app, [training_stressor(threads, nice, d.cpus)])
                out[d.name][f"t{threads}n{nice}"] = {"p99": lp.p99, "source": lp.source}
        return out
    except (EdgewiseError, ImportError, KeyError, ValueError):
        return None
