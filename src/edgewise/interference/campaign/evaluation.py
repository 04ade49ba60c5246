"""Evaluate profiling on one app: campaigns, then held-out stress mixes and noise runs.

Effectful orchestration, as :class:`~.runner.CampaignRunner` is: :func:`evaluate_app`
runs the one-shot LHS (optional) and the active campaign for an app, then measures the
held-out points (:func:`~.holdout.measure_holdout`) and the noise floor on it, and
writes each model's held-out predictions into its stored metrics. What the app's
figures are is decided by the caller from the returned :class:`AppEvaluation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgewise.interference.calibration import Calibration
from edgewise.interference.campaign.config import CampaignConfig
from edgewise.interference.campaign.fit import InterferenceModel
from edgewise.interference.campaign.holdout import (
    HeldOutPoint,
    holdout_records,
    measure_holdout,
    measure_noise,
)
from edgewise.interference.campaign.measure import Measured, measure_point
from edgewise.interference.campaign.records import RunRecord
from edgewise.interference.campaign.runner import CampaignRunner
from edgewise.interference.campaign.store import attach_holdout, campaign_records
from edgewise.interference.stressors import HostCaps

#: ``say(phase, done, total)``.
Say = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvaluationSetup:
    """What every app of an evaluation shares: host, stressor placement, space, knobs."""

    kb: Any
    calibration: Calibration | None
    caps: HostCaps
    target_cpus: list[int]
    stress_cpus: tuple[int, ...] | None
    cpu_stress_cpus: tuple[int, ...] | None
    confine: str
    space: dict[str, tuple[float, float]]
    points: list[dict[str, float]]
    centre: dict[str, float]
    stamp: int
    budget: int
    seed: int
    seconds: float
    warmup_s: float
    solo_every: int
    foreign_threshold: float
    max_repeats: int
    holdout_repeats: int
    repeats: int
    surrogates: tuple[str, ...]
    curve_step: int
    lhs_baseline: bool
    rate_rps: float | None = None
    load: float = 0.3
    min_requests: int = 0
    device: str = "cpu"

    def measure_at(self, target: Any, window: float) -> Callable[..., Measured]:
        """``measure(design, seed, warmup_s)`` on ``target`` with this set-up's stressors."""

        def measure(design: Mapping[str, float], seed: int, warmup_s: float) -> Measured:
            return measure_point(
                target,
                design,
                seconds=window,
                warmup_s=warmup_s,
                seed=seed,
                stress_cpus=self.stress_cpus,
                cpu_stress_cpus=self.cpu_stress_cpus,
                calibration=self.calibration,
                caps=self.caps,
                confine=self.confine,  # type: ignore[arg-type]  # checked by the caller
            )

        return measure

    def campaign_config(self, kind: str, workload: str, window: float) -> CampaignConfig:
        """The ``kind`` (``lhs`` or ``active``) campaign of ``workload``."""
        return CampaignConfig(
            name=f"bench-{kind}-{workload}-s{self.seed}-{self.stamp}",
            budget=self.budget,
            seconds=window,
            warmup_s=self.warmup_s,
            seed=self.seed,
            method=kind,  # type: ignore[arg-type]
            solo_every=self.solo_every,
            stress_cpus=self.stress_cpus,
            cpu_stress_cpus=self.cpu_stress_cpus,
            confine=self.confine,  # type: ignore[arg-type]
            foreign_threshold=self.foreign_threshold,
            max_repeats=self.max_repeats,
            surrogates=self.surrogates,
            curve_step=self.curve_step,
            space=dict(self.space),
        )


@dataclass(frozen=True)
class AppEvaluation:
    """One app's campaigns and the held-out truth measured after them.

    Attributes
    ----------
    app, workload : str
        The app as given and its workload name in the KB.
    window_s : float
        Measurement window of each run.
    campaigns : dict
        Campaign name per design (``lhs`` when run, then ``active``).
    models : dict
        The fitted model per design (``active`` is the one the predictor uses).
    runs : dict
        The ok runs of each campaign.
    held : tuple of HeldOutPoint
        The held-out points with their interpolated solo reference.
    noise : tuple of dict
        Latencies of the identical runs at the centre of the space.
    """

    app: str
    workload: str
    window_s: float
    campaigns: dict[str, str]
    models: dict[str, InterferenceModel]
    runs: dict[str, tuple[RunRecord, ...]]
    held: tuple[HeldOutPoint, ...]
    noise: tuple[dict[str, float], ...]

    def holdout_rows(self, kind: str = "active", corrected: bool = False) -> list[dict[str, float]]:
        """Measured beside predicted p50/p99 per held-out point for model ``kind``."""
        return holdout_records(self.models[kind], self.held, corrected=corrected)

    def as_dict(self) -> dict[str, Any]:
        """JSON view: campaigns, chosen surrogates, solo baseline, runs, held-out, noise."""
        return {
            "app": self.app,
            "workload": self.workload,
            "seconds_per_run": round(self.window_s, 2),
            "campaigns": dict(self.campaigns),
            "chosen": {k: dict(m.chosen) for k, m in self.models.items()},
            "solo": dict(self.models["active"].solo),
            "runs": {k: [r.as_dict() for r in rs] for k, rs in self.runs.items()},
            "held_out": [h.as_dict() for h in self.held],
            "noise": [dict(n) for n in self.noise],
        }


def run_campaigns(
    setup: EvaluationSetup, app: str, target: Any, window: float, say: Say
) -> tuple[dict[str, str], dict[str, InterferenceModel]]:
    """Run the one-shot LHS (optional) and the active campaign; active is stored last."""
    names: dict[str, str] = {}
    models: dict[str, InterferenceModel] = {}
    for kind in ("lhs", "active") if setup.lhs_baseline else ("active",):
        cfg = setup.campaign_config(kind, target.name, window)

        def prog(done: int, total: int, what: str, kind: str = kind) -> None:
            say(f"{app}: {kind} run ({what})", done, total)

        models[kind] = CampaignRunner(
            setup.kb, target, cfg, calibration=setup.calibration, caps=setup.caps, progress=prog
        ).run()
        names[kind] = cfg.name
    return names, models


def evaluate_app(
    setup: EvaluationSetup, app: str, target: Any, window: float, say: Say
) -> AppEvaluation:
    """Profile ``target``, then measure the held-out points and the noise floor on it."""
    campaigns, models = run_campaigns(setup, app, target, window, say)
    measure = setup.measure_at(target, window)

    def tell(phase: str, done: int, total: int) -> None:
        say(f"{app}: {phase}", done, total)

    target.start()
    try:
        held = measure_holdout(
            measure,
            setup.points,
            seed=setup.seed,
            warmup_s=setup.warmup_s,
            repeats_per_point=setup.holdout_repeats,
            solo_every=setup.solo_every,
            say=tell,
        )
        noise = measure_noise(
            measure,
            setup.centre,
            seed=setup.seed,
            warmup_s=setup.warmup_s,
            repeats=setup.repeats,
            say=tell,
        )
    finally:
        target.close()
    for kind, model in models.items():
        rows = holdout_records(model, held, corrected=False)
        attach_holdout(setup.kb, target.name, campaigns[kind], rows)
    runs = {
        kind: tuple(r for r in campaign_records(setup.kb, name) if r.is_ok)
        for kind, name in campaigns.items()
    }
    return AppEvaluation(
        app, target.name, window, campaigns, models, runs, tuple(held), tuple(noise)
    )
