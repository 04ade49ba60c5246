"""Retrain use case: update a model on a device pool under its apps' deadlines.

:func:`retrain` takes a zoo model on a built-in data set (trained first on the base
split, re-trained on the drifted one), or the user's own model (a registry entry or a
trainable path) on the user's own data (an image folder or an ``.npz``, split into a
training and a held-out part). It optionally checks for drift (and stops when the model
is fine), starts the device pool (emulated on this host, or the Ray cluster's nodes
that carry the devices), takes the device profiles from the knowledge base when cached
and not stale, else predicts them from the apps' interference models (else, where an
app has none, measures them), plans, trains elastically with the load-aware
monitor, records the job, its checkpoints and its metrics in the knowledge base, and
registers a registered model's result as its next version with its lineage.

Faults are injected by wrapping the pool in
:class:`edgewise.retrain.faults.KillDeviceAtStep`; the controller receives the failure
as data. The heavy engines (torch, Ray) are imported inside the calls. The benchmark
of the planner lives in :mod:`edgewise.api.retrain_bench` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.api.retrain_bench import (
    ProfilePrediction,
    RetrainBenchmark,
    benchmark_retrain,
    predict_background,
    predict_profiles,
    prediction_report,
)
from edgewise.errors import SpecError
from edgewise.retrain.jobs import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    BackgroundSummary,
    background_summaries,
    base_weights,
    builtin_steps,
    check_pool,
    clear_checkpoints,
    device_states,
    drift_accuracy,
    drift_decision,
    initial_weights,
    make_constraints,
    pool_profiles,
    steps_for,
    train_recorded,
)
from edgewise.retrain.ownmodel import (
    OwnModel,
    held_out_accuracy,
    prepare_own,
    register_retrained,
    write_job_inputs,
)

if TYPE_CHECKING:
    from edgewise.config import DevicePool
    from edgewise.kb import KnowledgeBase
    from edgewise.planning.retrain import DeviceProfile, RetrainConstraints, RetrainPlan
    from edgewise.retrain.controller import Launcher, RunResult
    from edgewise.retrain.drift import DriftDecision

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_EPOCHS",
    "ProfilePrediction",
    "RetrainBenchmark",
    "RetrainResult",
    "RetrainedModel",
    "benchmark_retrain",
    "predict_background",
    "predict_profiles",
    "prediction_report",
    "retrain",
]

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; ``total == 0`` for a phase without a count."""
PlanHook = Callable[["RetrainPlan", str, str], None]
"""``on_plan(plan, profiles_source, pool_key)`` once the plan is made, before training."""

PHASE_BASE = "training the deployed model on the base split"
PHASE_TRAIN = "re-training"
PHASE_OWN = "reading the model and the data"


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
    """Where the first plan's device profiles came from: ``cache``, ``predicted`` (from
    the knowledge base's interference models) or ``measured``."""
    reprofile_next: bool
    weights: Path
    data_fingerprint: str | None = None
    """The user's data (``sha256:...``); ``None`` on a built-in data set."""
    trained: Path | None = None
    """The re-trained model in its trainable form (the user's own model)."""
    parent: str | None = None
    registered: str | None = None
    """The new version ``NAME:vN`` when the model came from the registry."""
    prediction: dict[str, Any] | None = None
    """The first plan's predicted background latency against the measured one
    (:func:`prediction_report`); ``None`` when the profiles came from the cache."""

    def as_dict(self) -> dict[str, Any]:
        """The ``edgewise retrain --json`` form (the lineage keys on the user's own model)."""
        out = {
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
        if self.prediction is not None:
            out["background_prediction"] = self.prediction
            out["max_prediction_error"] = self.prediction.get("max_prediction_error")
        if self.data_fingerprint is not None:
            out |= {
                "data_fingerprint": self.data_fingerprint,
                "trained": str(self.trained),
                "parent": self.parent,
                "registered": self.registered,
            }
        return out


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
    task: tuple[str, str, str, int]
    """What the ranks train: ``(model, data, drift, seed)`` (names, or the job's files)."""
    names: tuple[str, str]
    """The model and the data as the user named them (records, the profiles' key)."""
    evaluate: Callable[[Path | None], float]
    """Held-out accuracy of the start weights (``None``) or of a weights file."""
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
    """Re-train a model on a device pool under its apps' deadlines.

    A zoo model on a built-in data set is trained on its base split (the deployed model),
    then on its drifted split; the user's own model (``NAME[:VERSION]`` or a trainable
    path) on the user's image folder or ``.npz`` (split with ``seed``), and a registry
    model's result is registered as ``NAME:v(n+1)`` with its lineage. Held-out accuracy
    before and after is part of every result.

    Parameters
    ----------
    devices : str or Path
        Devices YAML.
    model, data, drift, seed
        Model reference; data set or path; a built-in set's drift (rotation, noise,
        new_classes); seed.
    epochs, steps, global_batch
        Passes over the training split (``steps`` overrides them) and the batch.
    kill_at_step, kill_device
        Kill that device (rank and app) at that step, the recovery demo; both or neither.
    resume, workdir
        Continue from the last checkpoint in the job directory (default
        ``$EDGEWISE_HOME/retrain/<model>-<data>-<devices>``).
    reprofile, load_aware
        Ignore cached profiles; re-plan when background load changes.
    when_drift, drift_metric, threshold
        Update only on drift (``accuracy`` below or ``ks`` above ``threshold``; defaults
        0.9 / 0.2; on the user's own data, accuracy only).
    address, kb
        Ray cluster address (the devices are the nodes that carry them); knowledge base
        URL (``None``: the default one).
    progress, on_plan
        Progress reports and the plan once made (:data:`Progress`, :data:`PlanHook`).

    Returns
    -------
    RetrainResult

    Raises
    ------
    SpecError
        Bad options, pool or data (one line naming the file), a model form that cannot
        be trained, or an interrupt (checkpoints are kept: rerun with resume).
    TrainingFailed
        Training could not finish.
    """
    from edgewise.config import MODEL_NAMES, load_devices
    from edgewise.kb import KnowledgeBase
    from edgewise.workloads.datasets import DATASETS

    _check_options(kill_at_step, kill_device, drift_metric)
    say = progress or (lambda _phase, _done, _total: None)
    spec = load_devices(devices)
    opts = _JobOptions(devices, drift, epochs, steps, global_batch, seed, workdir, resume)
    knowledge = KnowledgeBase.open(kb)
    check = (when_drift, drift_metric, threshold)
    own: OwnModel | None = None
    if model in MODEL_NAMES and data in DATASETS:
        setup, decision = _builtin_setup(spec, opts, model, data, say, check)
    else:
        own, setup, decision = _own_setup(knowledge, spec, opts, (model, data), say, check)
    if setup is None:
        return RetrainResult(drift=decision)
    job = _run_job(
        setup,
        knowledge,
        kill=(kill_at_step, kill_device),
        resume=resume,
        reprofile=reprofile,
        load_aware=load_aware,
        address=address,
        say=say,
        on_plan=on_plan,
    )
    if own is not None:
        job = _register(knowledge, own, job, setup.work / f"result-job{job.job_id}")
    return RetrainResult(drift=decision, job=job)


@dataclass(frozen=True)
class _JobOptions:
    """The options every job path reads the same way."""

    devices: str | Path
    drift: str
    epochs: int
    steps: int | None
    global_batch: int
    seed: int
    workdir: str | Path | None
    resume: bool

    def work(self, stem: str) -> Path:
        """The job directory: ``workdir``, or one per model, data and pool under home."""
        from edgewise.paths import home

        if self.workdir:
            return Path(self.workdir)
        return home() / "retrain" / f"{stem}-{Path(self.devices).stem}"


def _builtin_setup(
    spec: DevicePool,
    opts: _JobOptions,
    model: str,
    data: str,
    say: Progress,
    check: tuple[bool, str, float | None],
) -> tuple[_Setup | None, DriftDecision | None]:
    """A zoo model trained on a built-in set's base split, re-trained on its drifted split.

    ``check`` is ``(when_drift, metric, threshold)``; ``None`` for the setup when the
    drift check finds the deployed model fine.
    """
    drift, seed = opts.drift, opts.seed
    when_drift, drift_metric, threshold = check
    c = make_constraints(model, opts.global_batch)
    check_pool(spec, {}, c, str(opts.devices))
    say(PHASE_BASE, 0, 0)
    base = base_weights(model, data, drift, seed)
    decision = None
    if when_drift:
        decision = drift_decision(model, base, (data, drift, seed), drift_metric, threshold)
        if not decision.update:
            return None, decision
    work = opts.work(f"{model}-{data}")
    clear_checkpoints(work / "job" / "checkpoints", opts.resume)
    n_steps = opts.steps or builtin_steps(data, drift, seed, opts.epochs, c.global_batch)
    setup = _Setup(
        spec,
        str(opts.devices),
        c,
        work,
        n_steps,
        base,
        task=(model, data, drift, seed),
        names=(model, data),
        evaluate=lambda w: drift_accuracy(model, data, drift, seed, w or base),
    )
    setup.accuracy_before = setup.evaluate(None)
    return setup, decision


def _own_setup(
    kb: KnowledgeBase,
    spec: DevicePool,
    opts: _JobOptions,
    what: tuple[str, str],
    say: Progress,
    check: tuple[bool, str, float | None],
) -> tuple[OwnModel, _Setup | None, DriftDecision | None]:
    """The user's model and data (``what``), the ranks' inputs written into the job directory.

    ``check`` is ``(when_drift, metric, threshold)``: on the user's data the drift check
    is the held-out accuracy against the threshold; ``None`` for the setup when the
    model is fine.
    """
    from edgewise.retrain import drift as drift_mod

    say(PHASE_OWN, 0, 0)
    own = prepare_own(kb, *what, seed=opts.seed)
    when_drift, metric, threshold = check
    decision = None
    if when_drift:
        if metric != "accuracy":
            raise SpecError(f"--drift-metric {metric}: on your own data, use accuracy")
        now = held_out_accuracy(own.module, None, own.data)
        decision = drift_mod.decide("accuracy", now, threshold)
        if not decision.update:
            return own, None, decision
    c = make_constraints(own.ref, opts.global_batch, memory=own.memory_mb)
    check_pool(spec, {}, c, str(opts.devices))
    work = opts.work(own.stem)
    clear_checkpoints(work / "job" / "checkpoints", opts.resume)
    tensors, init = write_job_inputs(work / "job" / "inputs", own.data, own.module.state_dict())
    model_dir = own.save(work / "job" / "inputs" / "model")
    n = opts.steps or steps_for(opts.epochs, len(own.data.y_train), c.global_batch)
    setup = _Setup(
        spec,
        str(opts.devices),
        c,
        work,
        n,
        init,
        task=(str(model_dir), str(tensors), "none", opts.seed),
        names=(own.ref, own.data.fingerprint),
        evaluate=lambda w: held_out_accuracy(own.module, w, own.data),
    )
    setup.accuracy_before = setup.evaluate(None)
    return own, setup, decision


def _register(kb: KnowledgeBase, own: OwnModel, job: RetrainedModel, out: Path) -> RetrainedModel:
    """Save the re-trained model (and register its next version); the job with its lineage."""
    accuracy = (job.accuracy_before, job.accuracy_after)
    trained, ref = register_retrained(kb, own, job.weights, accuracy, out)
    return replace(
        job,
        data_fingerprint=own.data.fingerprint,
        trained=trained,
        parent=own.parent,
        registered=ref,
    )


def _check_options(kill_at_step: int | None, kill_device: str | None, drift_metric: str) -> None:
    """Options that only make sense together or from a short list: one line each."""
    if (kill_at_step is None) != (kill_device is None):
        raise SpecError("--kill-at-step and --kill-device go together")
    if drift_metric not in ("accuracy", "ks"):
        raise SpecError(f"--drift-metric {drift_metric}: choose accuracy or ks")


def _run_job(
    setup: _Setup,
    kb: KnowledgeBase,
    *,
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
    from edgewise.registry import check_refs
    from edgewise.retrain import records
    from edgewise.retrain.background import BackgroundMonitor
    from edgewise.retrain.controller import JobSpec
    from edgewise.retrain.devices import EmulatedPool
    from edgewise.retrain.faults import KillDeviceAtStep
    from edgewise.retrain.raypool import RayPool

    spec, c = setup.spec, setup.constraints
    model, data, drift, seed = setup.task
    key = records.pool_key(spec.devices, *setup.names, setup.profile_batch)
    states = device_states(spec)
    check_refs(spec.background_models(), kb)
    pool_cm: EmulatedPool | RayPool = (
        RayPool(spec.devices, setup.work / "pool", seed=seed, address=address)
        if address
        else EmulatedPool(spec.devices, setup.work / "pool", seed=seed, kb_url=kb.url)
    )
    with pool_cm as pool:
        profiles, source, prediction = _first_profiles(pool, setup, kb, key, reprofile, say)
        check_pool(spec, profiles, c, setup.source)
        plan = plan_exact(states, profiles, c)
        if on_plan is not None:
            on_plan(plan, source, key)
        init = initial_weights(setup.base, setup.work, address)
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
            setup.names[0],
            {
                "devices": setup.source,
                "data": setup.names[1],
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
        res = train_recorded(
            launcher,
            states,
            profiles,
            c,
            job,
            kb,
            job_id,
            resume,
            monitor,
            lambda s, total: say(PHASE_TRAIN, s, total),
        )
        bg = background_summaries(spec.devices, pool.bg_log, res.t_first_step, res.t_end)
    job_done = _finish(setup, kb, key, job_id, profiles, source, plan, res, bg)
    if prediction is None:
        return job_done
    return replace(job_done, prediction=prediction_report(prediction, plan, bg))


def _first_profiles(
    pool: Any,
    setup: _Setup,
    kb: KnowledgeBase,
    key: str,
    reprofile: bool,
    say: Progress,
) -> tuple[dict[str, DeviceProfile], str, ProfilePrediction | None]:
    """The profiles of the first plan, where they came from, and the prediction tried.

    Cached measured profiles first (unless ``reprofile``); else the profiles predicted
    from the knowledge base's interference models (no measurement before the first
    plan: ``predicted``); else, where an app has no model, measured as before.
    """
    from edgewise.retrain import records

    prediction = None
    devices, batch = setup.spec.devices, setup.profile_batch
    if not reprofile and records.load_profiles(kb, key) is None:
        from edgewise.retrain.calibrate import device_calibration

        pool.wait_background_ready()  # the apps serve while the devices are calibrated
        say("predicting the device profiles from the knowledge base", 0, 0)
        cal = device_calibration(devices)
        prediction = predict_profiles(kb, devices, task=setup.task, batch=batch, calibrate=cal)
        if prediction.complete:
            return dict(prediction.profiles), "predicted", prediction

    def tell(msg: str) -> None:
        say(msg, 0, 0)

    got = pool_profiles(pool, devices, kb, key, setup.task, batch, reprofile, tell)
    return got[0], got[1], prediction


def _finish(
    setup: _Setup,
    kb: KnowledgeBase,
    key: str,
    job_id: int,
    profiles: dict[str, DeviceProfile],
    source: str,
    plan: RetrainPlan,
    res: RunResult,
    bg: dict[str, BackgroundSummary],
) -> RetrainedModel:
    """Score the new weights, mark drifted profiles stale, record the job's metrics."""
    from edgewise.retrain import records

    after = setup.evaluate(res.final_weights)
    ratio, drifted = records.measured_drift(res.steps, res.plans[0])
    if drifted and source != "predicted":
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
        model=setup.names[0],
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
