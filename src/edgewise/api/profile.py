"""Profile pillar use cases: stress the host, profile an app, predict, benchmark.

:func:`stress` runs a stress mix and reports requested against achieved intensities;
:func:`profile` runs (or resumes) an interference campaign and stores the fitted model;
:func:`predict` reads the models back for an app beside co-located workloads;
:func:`benchmark_interference` profiles apps and measures held-out stress mixes to
score their models (the benchmark's report is :mod:`edgewise.bench.interference`'s).

This module wires the pillar's parts together: the knowledge base, stress-ng, the
targets and the campaign loop. The decisions (what to measure next, how to fit) are the
pure functions of :mod:`edgewise.interference.campaign`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.errors import SpecError

if TYPE_CHECKING:
    from edgewise.interference.campaign import AppEvaluation, EvaluationSetup, Placement
    from edgewise.interference.campaign.evaluation import NoiseFloor
    from edgewise.interference.predictor import LatencyPrediction
    from edgewise.kb import KnowledgeBase

__all__ = [
    "AppEvaluation",
    "InterferenceBenchmark",
    "Prediction",
    "ProfileResult",
    "StressResult",
    "benchmark_interference",
    "predict",
    "profile",
    "stress",
]

#: ``progress(phase, done, total)``.
Progress = Callable[[str, int, int], None]

#: ``--confine`` of ``edgewise profile`` -> where the stressors go.
CONFINE_PLACEMENT: dict[str, Placement] = {
    "none": "any",
    "split": "split",
    "taskset": "same",
    "cgroup": "same",
}


def _open_kb(kb: str | KnowledgeBase | None) -> KnowledgeBase:
    from edgewise.kb import KnowledgeBase

    return kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb)


def _quiet(phase: str, done: int, total: int) -> None:
    """The default progress: report nothing."""


def target_cpus() -> list[int]:
    """The CPU a profiled target runs on: the last one this process may use."""
    return [sorted(os.sched_getaffinity(0))[-1]]


# --------------------------------------------------------------------------- stress
@dataclass(frozen=True)
class StressResult:
    """Requested against achieved intensity per resource (empty when only calibrating)."""

    calibrated: bool
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """``{'calibrated', 'rows'}``: what ``edgewise stress --json`` prints."""
        return {"calibrated": self.calibrated, "rows": [dict(r) for r in self.rows]}


def stress(
    *,
    intensity: dict[str, float],
    seconds: float = 10.0,
    calibrate: bool = False,
    kb: str | KnowledgeBase | None = None,
    progress: Progress | None = None,
) -> StressResult:
    """Run a multi-resource stress mix for ``seconds`` and measure what it achieved.

    Parameters
    ----------
    intensity : dict
        Requested intensity in [0, 1] per resource (``cpu``, ``membw``, ``llc``,
        ``disk``, ``net``, ``mem``); zeros are left out.
    seconds : float
        Measurement window.
    calibrate : bool
        Calibrate this host's stressors first and store the calibration in the KB.
    kb : str, KnowledgeBase or None
        The knowledge base (``None``: the default one).
    progress : callable, optional
        ``progress(phase, done, total)``.

    Returns
    -------
    StressResult
        Whether a calibration is stored, and one row per stressed resource.

    Raises
    ------
    SpecError
        An intensity outside [0, 1], or nothing to do.
    """
    from edgewise.interference.calibration import calibrate as run_calibration
    from edgewise.interference.calibration import load_calibration, save_calibration
    from edgewise.interference.stressors import (
        describe,
        require_stress_ng,
        run_stress,
        validate_intensity,
    )

    say = progress or _quiet
    req = {k: v for k, v in validate_intensity(intensity).items() if v > 0}
    if not req and not calibrate:
        raise SpecError("nothing to stress: give at least one intensity above 0 (e.g. --cpu 0.5)")
    require_stress_ng()
    db = _open_kb(kb)
    if calibrate:
        say("calibrating stressors", 0, 1)
        cal = run_calibration(progress=lambda msg: say(f"calibrating: {msg}", 0, 1))
        save_calibration(db, cal)
    stored = load_calibration(db)
    if not req:
        return StressResult(calibrated=stored is not None)
    say(f"stressing for {seconds:g} s", 0, 1)
    achieved = run_stress(req, seconds, calibration=stored)
    return StressResult(calibrated=stored is not None, rows=describe(achieved, req))


# --------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class ProfileResult:
    """The interference model a campaign stored: per percentile the chosen surrogate."""

    workload: str
    campaign: str
    chosen: dict[str, str]
    cv_scores: dict[str, dict[str, float]]
    pooled_from: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON view of the result."""
        return {
            "workload": self.workload,
            "campaign": self.campaign,
            "chosen": dict(self.chosen),
            "cv_scores": {p: dict(s) for p, s in self.cv_scores.items()},
            "pooled_from": list(self.pooled_from),
        }


def _stress_space(space: Path | None, device: str) -> dict[str, tuple[float, float]]:
    from edgewise.config import load_stress_space
    from edgewise.interference.campaign import DEFAULT_SPACE

    sp = load_stress_space(space) if space else DEFAULT_SPACE
    space_map: dict[str, tuple[float, float]] = {str(k): v for k, v in sp.resources.items()}
    if device == "cuda":
        from edgewise.interference.gpu import require_gpu

        require_gpu()
        space_map["gpu"] = (0.0, 1.0)
    return space_map


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        expected = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise SpecError(f"--{option} {value!r}: expected {expected}")


def profile(
    *,
    app: str,
    budget: int = 30,
    rate_rps: float = 20.0,
    load: float | None = None,
    batch_size: int = 1,
    seconds: float = 6.0,
    warmup_s: float = 1.5,
    method: str = "active",
    space: Path | None = None,
    seed: int = 0,
    name: str | None = None,
    resume: bool = False,
    warm_start: bool = False,
    confine: str = "none",
    solo_every: int = 10,
    device: str = "cpu",
    kb: str | KnowledgeBase | None = None,
    progress: Progress | None = None,
) -> ProfileResult:
    """Profile ``app`` under a designed set of stress mixes and store its model.

    Parameters
    ----------
    app : str
        A zoo model, a registered ``NAME[:vN]`` (profiled, and stored, as the version it
        resolves to), ``model@RATErps`` of either, or ``cmd:COMMAND``.
    budget, solo_every : int
        Stressed runs; a solo baseline every ``solo_every`` runs.
    rate_rps, load, batch_size, device
        A zoo model's request rate, or (``load``) that fraction of its solo capacity;
        its batch size; ``cpu`` or ``cuda``.
    seconds, warmup_s : float
        Measurement window and stressor warm-up per run.
    method, space, seed
        ``active``, ``lhs`` or ``sobol``; a stress-space YAML (default: built in); the
        seed of the design and the arrivals.
    name, resume, warm_start
        Campaign name (default from the inputs alone, e.g. ``digits_cnn@load0.2-seed0``);
        continue it (at its stored rate: a ``load`` is not timed again); pool other
        workloads' runs.
    confine : str
        Stressors on any CPU (``none``), on the target's CPU (``taskset``, ``cgroup``),
        or ``split`` (the CPU stressor on the target's CPU, the others elsewhere).
    kb, progress
        The knowledge base (``None``: the default one); ``progress(point, done, total)``.

    Returns
    -------
    ProfileResult
        The stored model's chosen surrogates and their cross-validated errors.
    """
    from edgewise.interference.calibration import load_calibration
    from edgewise.interference.campaign import CampaignRunner
    from edgewise.interference.campaign.setup import profile_campaign
    from edgewise.interference.stressors import require_stress_ng
    from edgewise.interference.target import resolve_app

    _check_choice("method", method, ("active", "lhs", "sobol"))
    _check_choice("confine", confine, ("none", "taskset", "cgroup", "split"))
    _check_choice("device", device, ("cpu", "cuda"))
    app = resolve_app(app, kb)
    space_map = _stress_space(space, device)
    require_stress_ng()
    db = _open_kb(kb)
    cfg, target = profile_campaign(
        db,
        name=name,
        resume=resume,
        app=app,
        rate_rps=rate_rps,
        load=load,
        batch_size=batch_size,
        seed=seed,
        device=device,
        confine=confine,
        placement=CONFINE_PLACEMENT[confine],
        space=space_map,
        target_cpus=target_cpus(),
        allowed_cpus=sorted(os.sched_getaffinity(0)),
        budget=budget,
        seconds=seconds,
        warmup_s=warmup_s,
        method=method,
        solo_every=solo_every,
        warm_start=warm_start,
    )
    say = progress or _quiet
    model = CampaignRunner(
        db,
        target,
        cfg,
        calibration=load_calibration(db),
        progress=lambda done, total, what: say(what, done, total),
    ).run(resume=resume)
    say("fitted", budget, budget)
    return ProfileResult(
        model.workload, cfg.name, dict(model.chosen), dict(model.cv_scores), model.pooled_from
    )


# --------------------------------------------------------------------------- predict
@dataclass(frozen=True)
class Prediction:
    """An app's predicted latency beside co-located workloads."""

    app: str
    latency: LatencyPrediction

    def as_dict(self) -> dict[str, Any]:
        """The prediction's fields: what ``edgewise predict --json`` prints."""
        return dataclasses.asdict(self.latency)


def predict(
    *,
    app: str,
    neighbours: Sequence[str] = (),
    solo_p50_ms: float | None = None,
    kb: str | KnowledgeBase | None = None,
) -> Prediction:
    """Predict ``app``'s latency percentiles next to ``neighbours``, with 90% intervals.

    Parameters
    ----------
    app : str
        A profiled workload (a bare zoo model or ``NAME:vN`` finds the rate it was
        profiled at); a registry version may be spelled ``N`` or ``vN``, a bare
        registered ``NAME`` is its latest version.
    neighbours : sequence of str
        Co-located workloads or ``stress:RES=V,...`` mixes.
    solo_p50_ms : float, optional
        ``app``'s p50 alone now (ms): scales the prediction to the host's current speed.
    kb : str, KnowledgeBase or None
        The knowledge base (``None``: the default one).

    Returns
    -------
    Prediction
        p50/p95/p99 (ms) with interval bounds and the resource vector used.
    """
    from edgewise.interference.apps import stored_app
    from edgewise.interference.predictor import Predictor

    db = _open_kb(kb)
    app = stored_app(app, db)
    pred = Predictor(db).predict(app, [stored_app(n, db) for n in neighbours], solo_p50_ms)
    return Prediction(app, pred)


# --------------------------------------------------------------------------- benchmark
@dataclass(frozen=True)
class InterferenceBenchmark:
    """What :func:`benchmark_interference` measured, with its headline figures."""

    apps: tuple[AppEvaluation, ...]
    budget: int
    holdout: int
    seed: int
    seconds: float
    holdout_repeats: int
    calibrated: bool
    device: str
    placement: str
    space: dict[str, tuple[float, float]]
    resources: tuple[str, ...]
    wall_s: float
    steal_frac: float | None = None

    @property
    def runs_per_app(self) -> int:
        """Stressed runs of each campaign."""
        return self.budget

    @property
    def median_ape(self) -> float:
        """Median APE (%) of p50 over every app's held-out points, predicted as the
        predictor does (the active model, its stored solo baseline)."""
        from edgewise.interference.campaign import row_ape

        return float(np.median([row_ape(r) for a in self.apps for r in a.holdout_rows()]))

    @property
    def noise_cv_p50(self) -> float:
        """Median over apps of the run-to-run CV (%) of p50: the noise floor."""
        from edgewise.interference.campaign import noise_cv

        return float(np.nanmedian([noise_cv(a.noise, "p50") for a in self.apps]))

    @property
    def noise(self) -> NoiseFloor:
        """The error against single windows beside the noise floor of the same run, and
        whether the host was steady enough to judge them."""
        from edgewise.interference.campaign.evaluation import noise_floor

        return noise_floor(self.apps, steal_frac=self.steal_frac)

    def as_dict(self) -> dict[str, Any]:
        """JSON view: the headline figures, the set-up and every app's measurements."""
        return {
            "median_ape": self.median_ape,
            **self.noise.as_dict(),
            "noise_cv_p50": self.noise_cv_p50,
            "runs_per_app": self.runs_per_app,
            "holdout": self.holdout,
            "holdout_repeats": self.holdout_repeats,
            "seed": self.seed,
            "seconds_per_run": self.seconds,
            "calibrated": self.calibrated,
            "device": self.device,
            "placement": self.placement,
            "space": {k: list(v) for k, v in self.space.items()},
            "wall_s": self.wall_s,
            "apps": [a.as_dict() for a in self.apps],
        }


def _bench_space(device: str, gpu_only: bool) -> dict[str, tuple[float, float]]:
    from edgewise.interference.campaign import default_space

    space = {} if gpu_only else default_space()
    if device == "cuda":
        from edgewise.interference.gpu import require_gpu

        require_gpu()
        space["gpu"] = (0.0, 1.0)
    elif gpu_only:
        raise SpecError("gpu_only needs device='cuda'")
    return space


def _evaluate(setup: EvaluationSetup, app: str, say: Progress) -> AppEvaluation:
    """Start ``app``'s target (timing its solo service for ``load``) and evaluate it."""
    from edgewise.interference.campaign import evaluate_app
    from edgewise.interference.target import make_target

    say(f"{app}: timing the solo service", 0, 0)
    target = make_target(
        app,
        rate_rps=setup.rate_rps or 20.0,
        load=None if setup.rate_rps else setup.load,
        cpus=setup.target_cpus,
        seed=setup.seed,
        device=setup.device,
        kb=setup.kb,
    )
    rate_of = getattr(target, "rate_rps", None)
    window = max(setup.seconds, setup.min_requests / rate_of) if rate_of else setup.seconds
    return evaluate_app(setup, app, target, window, say)


def benchmark_interference(
    *,
    apps: Sequence[str],
    budget: int,
    holdout: int,
    seed: int,
    rate_rps: float | None = None,
    load: float = 0.3,
    min_requests: int = 0,
    seconds: float = 6.0,
    warmup_s: float = 1.0,
    repeats: int = 3,
    solo_every: int = 10,
    lhs_baseline: bool = True,
    confine: str = "taskset",
    placement: Placement = "split",
    foreign_threshold: float = 0.25,
    max_repeats: int = 1,
    holdout_repeats: int = 1,
    surrogates: Sequence[str] = ("gp", "gbq", "linear"),
    curve_step: int = 5,
    device: str = "cpu",
    gpu_only: bool = False,
    kb: str | KnowledgeBase | None = None,
    progress: Progress | None = None,
) -> InterferenceBenchmark:
    """Profile each app, then measure held-out stress mixes and the noise floor.

    For each app (target pinned to one CPU): a one-shot Latin-hypercube campaign
    (``lhs_baseline``) and an active campaign of ``budget`` runs each (the active model
    is stored last: the predictor's); ``holdout`` stress mixes drawn uniformly with
    ``seed``, each measured ``holdout_repeats`` times, with solo baselines around them;
    ``repeats`` identical runs at the centre of the space. The held-out predictions go
    to the surrogates' ``metrics['holdout']``. Each zoo app is served at ``rate_rps`` or
    else at ``load`` times its solo capacity; a run's window is at least ``seconds`` and
    holds ``min_requests`` requests. ``device='cuda'`` adds the GPU stressor (``gpu``) to
    the space; ``gpu_only`` explores it alone. ``progress(phase, done, total)``.

    Returns
    -------
    InterferenceBenchmark
        Every app's models, runs, held-out points, noise runs and solo reference
        windows, with the headline figures (``median_ape``, ``noise_cv_p50``,
        ``runs_per_app``) and, in ``noise``, the error against single windows beside the
        noise floor of the same run and whether the host (its CPU steal over the run
        read from ``/proc/stat``) was steady enough to judge them.
    """
    from edgewise.interference.calibration import host_caps, load_calibration
    from edgewise.interference.campaign import (
        EvaluationSetup,
        holdout_design,
        placement_cpus,
        space_centre,
    )

    if holdout_repeats < 1:
        raise ValueError(f"holdout_repeats must be at least 1, got {holdout_repeats}")
    say = progress or _quiet
    db = _open_kb(kb)
    t_start, cpu_start = time.monotonic(), _cpu_ticks()
    cal = load_calibration(db)
    say("host peaks (probing once if not stored)", 0, 0)
    caps = host_caps(db, probe=not gpu_only)
    allowed = sorted(os.sched_getaffinity(0))
    stress_cpus, cpu_stress_cpus = placement_cpus(placement, [allowed[-1]], allowed)
    space = _bench_space(device, gpu_only)
    setup = EvaluationSetup(
        kb=db,
        calibration=cal,
        caps=caps,
        target_cpus=[allowed[-1]],
        stress_cpus=stress_cpus,
        cpu_stress_cpus=cpu_stress_cpus,
        confine=confine,
        space=space,
        points=holdout_design(space, holdout, seed),
        centre=space_centre(space),
        stamp=time.time_ns(),
        budget=budget,
        seed=seed,
        seconds=seconds,
        warmup_s=warmup_s,
        solo_every=solo_every,
        foreign_threshold=foreign_threshold,
        max_repeats=max_repeats,
        holdout_repeats=holdout_repeats,
        repeats=repeats,
        surrogates=tuple(surrogates),
        curve_step=curve_step,
        lhs_baseline=lhs_baseline,
        rate_rps=rate_rps,
        load=load,
        min_requests=min_requests,
        device=device,
    )
    evaluated = tuple(_evaluate(setup, app, say) for app in apps)
    wall_s = round(time.monotonic() - t_start, 1)
    return _benchmark(setup, evaluated, placement, holdout, wall_s, _steal(cpu_start, _cpu_ticks()))


def _benchmark(
    setup: EvaluationSetup,
    evaluated: tuple[AppEvaluation, ...],
    placement: str,
    holdout: int,
    wall_s: float,
    steal_frac: float | None,
) -> InterferenceBenchmark:
    from edgewise.interference.campaign import resources_of

    return InterferenceBenchmark(
        apps=evaluated,
        budget=setup.budget,
        holdout=holdout,
        seed=setup.seed,
        seconds=setup.seconds,
        holdout_repeats=setup.holdout_repeats,
        calibrated=setup.calibration is not None,
        device=setup.device,
        placement=placement,
        space=setup.space,
        resources=resources_of(setup.space),
        wall_s=wall_s,
        steal_frac=steal_frac,
    )


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) CPU ticks of the host so far, from ``/proc/stat``; ``None`` where
    the file cannot be read (not Linux)."""
    from edgewise.telemetry.procfs import parse_stat

    try:
        with open("/proc/stat") as f:
            cpu = parse_stat(f.read()).cpu
    except (OSError, ValueError):
        return None
    return cpu.steal, cpu.total


def _steal(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """Share of the host's CPU time stolen by the hypervisor between two readings."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return (end[0] - start[0]) / (end[1] - start[1])
