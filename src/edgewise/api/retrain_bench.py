"""Retrain benchmark use case: our plan against the equal and the proportional split.

:func:`benchmark_retrain` runs our plan against the equal and the
interference-oblivious proportional split on one emulated pool (and, with
``kill_at_step``, once more with a device killed), and reports speed, deadline misses,
accuracy and recovery (the runs: :mod:`edgewise.retrain.comparison`).

Before the pool is measured, the device profiles are predicted from the knowledge base
(:func:`predict_profiles`: each background app's interference model with the training
job as its neighbour, or, where training exhausts a device's CPU quota, the throttling
of the device's cgroup) and a first plan is made from them alone; the measurement then
corrects it, and the report puts the first plan's predicted background latency beside
the one measured at the same intensity (:func:`first_plan_report`). The heavy engines
(torch, Ray) are imported inside the calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.errors import EdgewiseError, InfeasibleError
from edgewise.retrain.comparison import RetrainBenchmark, compare_plans
from edgewise.retrain.jobs import DEFAULT_BATCH, DEFAULT_EPOCHS

if TYPE_CHECKING:
    from edgewise.config import DevicePool, DeviceSpec
    from edgewise.planning.retrain import DeviceProfile, RetrainPlan
    from edgewise.retrain.calibrate import Calibration

__all__ = [
    "ProfilePrediction",
    "RetrainBenchmark",
    "benchmark_retrain",
    "predict_background",
    "predict_profiles",
    "prediction_report",
]

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; ``total == 0`` for a phase without a count."""


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
    spec = load_devices(devices)
    task = (model, data, drift, seed)
    batch = max(32, global_batch // len(spec.devices))
    seen: list[ProfilePrediction] = []

    def predict(pool: DevicePool) -> dict[str, dict[str, Any]] | None:
        say("predicting the device profiles from the knowledge base", 0, 0)
        from edgewise.retrain.calibrate import device_calibration

        calibrate = device_calibration(pool.devices)
        got = predict_profiles(knowledge, pool.devices, task=task, batch=batch, calibrate=calibrate)
        seen.append(got)
        return got.by_label() if got.complete else None

    result = compare_plans(
        spec,
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
        predict=predict,
        say=lambda msg: say(msg, 0, 0),
    )
    if not seen:
        return result
    first = first_plan_report(spec, seen[0], result.profiles, global_batch, model)
    ours = result.runs["ours"].p99_ms
    in_run = {
        n: ours[n]
        for n, row in first.get("devices", {}).items()
        if n in ours
        and result.plan.intensities.get(n) is not None
        and result.plan.intensities[n].label == row["intensity"]
    }
    for n, got in in_run.items():
        first["devices"][n]["run_p99_ms"] = got
    return replace(result, background_prediction={**result.background_prediction, **first})


def first_plan_report(
    spec: DevicePool,
    prediction: ProfilePrediction,
    measured: Mapping[str, DeviceProfile],
    global_batch: int,
    model: str,
) -> dict[str, Any]:
    """The plan made from ``prediction`` alone and its error against ``measured``.

    Returns the JSON the benchmark adds under ``background_prediction``: ``first_plan``
    (the plan from the predicted profiles, or ``None`` with ``first_plan_note`` when no
    plan could be made from them), ``devices`` (per device of that plan,
    ``predicted_p99_ms``, ``measured_p99_ms`` at the same intensity by the profiler, and
    ``prediction_error``), ``max_prediction_error`` and the prediction itself.
    """
    from edgewise.planning.retrain import plan_exact
    from edgewise.retrain.jobs import device_states, make_constraints
    from edgewise.retrain.profiler import max_prediction_error, prediction_errors

    out: dict[str, Any] = {"prediction": prediction.as_dict()}
    if not prediction.complete:
        note = "; ".join(f"{n}: {why}" for n, why in prediction.missing.items())
        return out | {"first_plan": None, "first_plan_note": note, "devices": {}}
    try:
        first = plan_exact(
            device_states(spec), prediction.profiles, make_constraints(model, global_batch)
        )
    except InfeasibleError as err:
        return out | {"first_plan": None, "first_plan_note": str(err), "devices": {}}
    at_same = {
        n: k.bg_latency_ms
        for n, it in first.intensities.items()
        for k in (measured[n].intensities if n in measured else ())
        if k.label == it.label
    }
    errors = prediction_errors(first, at_same)
    return out | {
        "first_plan": first.to_dict(),
        "devices": errors,
        "max_prediction_error": max_prediction_error(errors),
    }


def prediction_report(
    prediction: ProfilePrediction, plan: RetrainPlan, bg: Mapping[str, Any]
) -> dict[str, Any]:
    """The first plan's predicted background latency against the one measured in training.

    Returns ``{"prediction": ..., "devices": {DEVICE: {intensity, predicted_p99_ms,
    measured_p99_ms, prediction_error}}, "max_prediction_error": ...}``, or, where the
    pool was measured because an app has no interference model, the prediction with
    its ``missing`` reasons and no devices. The measured figure is the app's latency
    over the whole job (the load-aware monitor may have moved a device off the first
    plan's intensity: ``replans`` says when).
    """
    from edgewise.retrain.profiler import max_prediction_error, prediction_errors

    out: dict[str, Any] = {"prediction": prediction.as_dict()}
    if not prediction.complete:
        return out | {"devices": {}, "max_prediction_error": None}
    errors = prediction_errors(plan, {n: b.p99_ms for n, b in bg.items()})
    return out | {"devices": errors, "max_prediction_error": max_prediction_error(errors)}


def predict_background(kb: Any, devices: Sequence[DeviceSpec]) -> dict[str, dict[str, Any]] | None:
    """Predicted background p99 per device and intensity from the profile pillar.

    ``None`` when the KB holds no interference model for an app (then the plan uses
    the direct measurement alone). The figures of :func:`predict_profiles` with the
    throughput left out (no training is timed).
    """
    got = predict_profiles(kb, devices, sps_per_cpu=1.0)
    return got.by_label() if got.complete else None


@dataclass(frozen=True)
class ProfilePrediction:
    """Device profiles predicted from the knowledge base, and where each figure came from.

    ``profiles`` holds every device with a background app that has an interference
    model (and every device without an app); ``missing`` says, per device, why its
    profile cannot be predicted: then the pool is measured as before.
    """

    profiles: dict[str, DeviceProfile]
    sources: dict[str, str]
    missing: dict[str, str]
    throughput_source: str

    @property
    def complete(self) -> bool:
        """Whether every device's profile is predicted (the first plan needs no measurement)."""
        return not self.missing

    def by_label(self) -> dict[str, dict[str, Any]]:
        """Per device with an app, ``{label: {"p99": ms, "source": ...}}``."""
        return {
            n: {k.label: {"p99": k.bg_latency_ms, "source": self.sources[n]} for k in p.intensities}
            for n, p in self.profiles.items()
            if n in self.sources
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the predicted profiles, their sources, what could not be predicted."""
        from edgewise.retrain.profiler import profiles_to_json

        return {
            "complete": self.complete,
            "profiles": profiles_to_json(self.profiles),
            "sources": dict(self.sources),
            "missing": dict(self.missing),
            "throughput_source": self.throughput_source,
        }


def predict_profiles(
    kb: Any,
    devices: Sequence[DeviceSpec],
    *,
    task: tuple[str, str, str, int] = ("digits_cnn", "digits", "rotation", 0),
    batch: int = 32,
    sps_per_cpu: float | None = None,
    period_ms: float | None = None,
    calibrate: Calibration | None = None,
) -> ProfilePrediction:
    """Device profiles predicted from the apps' interference models, before any measurement.

    A device is a cgroup with a CPU quota (CFS bandwidth control) holding its background
    app (workload ``MODEL@RATErps``) and the training job. The app's service time is its
    solo p50 in the knowledge base (one CPU, at its rate) and its CPU demand the rate
    times that (:func:`~edgewise.retrain.profiler.app_cpu_demand`). Its solo latency on
    the device is stretched only by a quota it exhausts
    (:func:`~edgewise.retrain.profiler.quota_solo_ms`: a request longer than a period's
    runtime, or an app whose demand alone exceeds the quota); a short request on a
    small device is not slowed. For each candidate intensity:

    - where training exhausts the quota and a request fits in a period's runtime
      (:func:`~edgewise.retrain.profiler.quota_binds`: half a CPU with one training
      thread), the wait is the scheduler's: the device's calibrated tail for a burst of
      the app's compute next to the training intensity (``calibrate``), plus the rest of
      the app's solo latency;
    - elsewhere (a 1-CPU device, where CFS weights share the CPU), the app's percentile
      predicted by its interference model with the training job as the neighbour
      (:func:`~edgewise.retrain.profiler.training_neighbour`: the trainer's CPU pressure
      on the device, estimated: the knowledge base holds no footprint of a training
      loop), from the app's solo latency on the device.

    The training throughput is one thread's, timed in this process, times the device's
    CPUs; the controller re-balances the shares from the measured step times.

    Parameters
    ----------
    kb : KnowledgeBase
        Holds the interference models.
    devices : sequence of DeviceSpec
        The pool.
    task : tuple
        What the ranks train: ``(model, data, drift, seed)``.
    batch : int
        Samples per timed step.
    sps_per_cpu : float or None
        One CPU's training throughput; ``None``: timed now.
    period_ms : float or None
        The devices' CFS period; ``None``: the emulated pool's
        (:data:`~edgewise.retrain.devices.DEVICE_PERIOD_US`, 5 ms).
    calibrate : Calibration or None
        :func:`~edgewise.retrain.calibrate.device_calibration`; ``None``: the throttling
        alone (:func:`~edgewise.retrain.profiler.throttled_latency_ms`).

    Returns
    -------
    ProfilePrediction
        ``missing`` names each device whose app has no interference model (or whose
        percentile the model does not predict), with the reason.
    """
    from edgewise.interference.predictor import Predictor
    from edgewise.retrain.profiler import predicted_profile

    if period_ms is None:
        from edgewise.retrain.devices import DEVICE_PERIOD_US

        period_ms = DEVICE_PERIOD_US / 1000.0
    pred = Predictor(kb)
    latencies: dict[str, dict[tuple[int, int], float]] = {}
    solos: dict[str, float] = {}
    sources: dict[str, str] = {}
    missing: dict[str, str] = {}
    for d in devices:
        try:
            got = _predicted_latencies(pred, d, period_ms, calibrate)
        except (EdgewiseError, KeyError, ValueError) as err:
            missing[d.name] = f"measured: {err}"
            continue
        if got is not None:
            latencies[d.name], solos[d.name], sources[d.name] = got
    if missing:
        return ProfilePrediction({}, sources, missing, "not predicted")
    if sps_per_cpu is None:
        sps_per_cpu = _timed_sps(task, batch)
        how = (
            f"timed in-process: {sps_per_cpu:.0f} samples/s on one thread, times each device's CPUs"
        )
    else:
        how = f"given: {sps_per_cpu:g} samples/s per CPU"
    profiles = {
        d.name: predicted_profile(
            d.name,
            d.cpus,
            latencies.get(d.name, _no_app(d.cpus)),
            sps_per_cpu,
            solos.get(d.name, 0.0),
        )
        for d in devices
    }
    return ProfilePrediction(profiles, sources, missing, how)


def _timed_sps(task: tuple[str, str, str, int], batch: int) -> float:
    """One thread's training throughput of ``task`` timed in this process."""
    from edgewise.retrain.profiler import time_training

    return time_training(*task, batch=batch)


def _no_app(cpus: float) -> dict[tuple[int, int], float]:
    """Latencies of a device without a background app: none to keep (0 ms)."""
    from edgewise.retrain.profiler import candidate_intensities

    return dict.fromkeys(candidate_intensities(cpus), 0.0)


def _predicted_latencies(
    pred: Any, d: DeviceSpec, period_ms: float, calibrate: Calibration | None = None
) -> tuple[dict[tuple[int, int], float], float, str] | None:
    """``(latency per intensity, solo latency, source)`` of ``d``'s app (``None``: no app).

    Raises
    ------
    EdgewiseError
        No interference model for the app, or a percentile it does not predict.
    """
    from edgewise.interference.target import workload_name
    from edgewise.retrain.profiler import (
        app_cpu_demand,
        candidate_intensities,
        quota_binds,
        quota_runtime_ms,
        quota_solo_ms,
        throttled_latency_ms,
        training_neighbour,
    )

    bg = d.background
    if bg is None:
        return None
    field = _PERCENTILE_FIELDS.get(float(bg.percentile))
    if field is None:
        raise EdgewiseError(
            f"the interference model predicts p50, p95 and p99, not p{bg.percentile:g}"
        )
    app = workload_name(bg.model, bg.rate_rps, bg.batch_size)
    model = pred.model(app)
    service = float(model.solo["p50"])
    demand = app_cpu_demand(bg.rate_rps, service)
    solo_p50 = quota_solo_ms(service, d.cpus, period_ms, demand)
    solo = float(getattr(pred.predict(app, [], solo_p50_ms=solo_p50), field))
    # a request that fits in a period's runtime runs ahead of the trainer and waits out
    # the group's throttling; a longer one shares the CPU by weight (interference model)
    short = service <= quota_runtime_ms(d.cpus, period_ms)
    lat: dict[tuple[int, int], float] = {}
    throttled = False
    for t, n in candidate_intensities(d.cpus):
        if short and quota_binds(d.cpus, t, demand):
            throttled = True
            if calibrate is None:
                lat[t, n] = throttled_latency_ms(solo, d.cpus, period_ms, bg.percentile)
            else:  # the device's tail for a burst of the app's CPU time, plus the rest
                tail = calibrate(d, t, n, service, float(bg.percentile))
                lat[t, n] = tail + max(0.0, solo - service)
        else:
            neighbour = [training_neighbour(t, n, d.cpus)]
            lat[t, n] = float(getattr(pred.predict(app, neighbour, solo_p50_ms=solo_p50), field))
    stretched = "stretched by" if solo_p50 > service else "not stretched by"
    source = (
        f"interference model for {app}, solo latency {stretched} the {d.cpus:g}-CPU quota "
        f"({demand:.3f} CPUs of demand); "
        + (
            "training exhausts the quota: "
            + (
                f"the device's tail for a {service:.2f} ms CPU burst next to training "
                "calibrated (CPU hogs at its threads and nice, no app or training run)"
                if calibrate is not None
                else f"throttling tail of the CFS period ({period_ms:g} ms) estimated, "
                "the same at every nice"
            )
            if throttled
            else "training's CPU pressure estimated"
        )
    )
    return lat, solo, source


_PERCENTILE_FIELDS = {50.0: "p50", 95.0: "p95", 99.0: "p99"}
