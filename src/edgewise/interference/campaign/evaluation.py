"""Evaluate profiling on one app: campaigns, then held-out stress mixes and noise runs.

Effectful orchestration, as :class:`~.runner.CampaignRunner` is: :func:`evaluate_app`
runs the one-shot LHS (optional) and the active campaign for an app, then measures the
held-out points with their solo reference windows
(:func:`~.holdout.measure_holdout_and_solos`) and the noise floor on it, and writes each
model's held-out predictions into its stored metrics. What the app's
figures are is decided by the caller from the returned :class:`AppEvaluation`, except
one pure summary kept here: :func:`noise_floor`, the error against single windows beside
the noise floor of the same run and whether the host was steady enough to judge them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgewise.interference.calibration import Calibration
from edgewise.interference.campaign.config import CampaignConfig
from edgewise.interference.campaign.fit import InterferenceModel
from edgewise.interference.campaign.holdout import (
    HeldOutPoint,
    Steadiness,
    holdout_records,
    judge_host,
    measure_holdout_and_solos,
    measure_noise,
    noise_floor_ape,
    reference_spread,
    repeat_groups,
    row_ape,
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
    solos : tuple of dict
        Latencies of the solo baselines measured before, between and after the held-out
        points: the repeated reference windows.
    """

    app: str
    workload: str
    window_s: float
    campaigns: dict[str, str]
    models: dict[str, InterferenceModel]
    runs: dict[str, tuple[RunRecord, ...]]
    held: tuple[HeldOutPoint, ...]
    noise: tuple[dict[str, float], ...]
    solos: tuple[dict[str, float], ...] = ()

    def holdout_rows(self, kind: str = "active", corrected: bool = False) -> list[dict[str, float]]:
        """Measured beside predicted p50/p99 per held-out point for model ``kind``."""
        return holdout_records(self.models[kind], self.held, corrected=corrected)

    def noise_floor_ape(self, percentile: str = "p50") -> float | None:
        """Median APE (%) a perfect predictor scores against this app's single windows,
        from its repeated held-out windows and its identical centre runs."""
        return noise_floor_ape(repeat_groups(self.held, self.noise, percentile))

    def reference_spread(self, percentile: str = "p50") -> float:
        """Spread ``(max - min) / median`` of the solo reference windows."""
        return reference_spread(self.solos, percentile)

    def as_dict(self) -> dict[str, Any]:
        """JSON view: campaigns, chosen surrogates, solo baseline, runs, held-out, noise,
        the solo reference windows."""
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
            "solos": [dict(s) for s in self.solos],
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
        held, solos = measure_holdout_and_solos(
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
        app, target.name, window, campaigns, models, runs, tuple(held), tuple(noise), tuple(solos)
    )


@dataclass(frozen=True)
class NoiseFloor:
    """A run's model error beside the noise floor measured in the same run.

    Attributes
    ----------
    median_ape_single_window : float
        Median p50 APE (%) of the active models against single windows: each held-out
        point's first window when points were repeated, else its only one.
    noise_floor_ape : float or None
        Median p50 APE (%) a perfect predictor scores against single windows
        (:func:`~.holdout.noise_floor_ape` over every app's repeated windows).
    excess_error : float or None
        ``median_ape_single_window / noise_floor_ape``: 1 is as good as the noise allows.
    steadiness : Steadiness
        Whether the host was steady enough to judge the figures.
    steal_frac : float or None
        CPU steal over the run (share of all CPU time).
    """

    median_ape_single_window: float
    noise_floor_ape: float | None
    excess_error: float | None
    steadiness: Steadiness
    steal_frac: float | None

    def as_dict(self) -> dict[str, Any]:
        """The benchmark's keys: floor, excess, ``host_steady`` with its reason, steal."""
        return {
            "noise_floor_ape": self.noise_floor_ape,
            "excess_error": self.excess_error,
            "host_steady": self.steadiness.steady,
            "host_unsteady_reason": self.steadiness.reason,
            "host_steal_frac": self.steal_frac,
        }


def single_window_apes(app: AppEvaluation) -> list[float]:
    """p50 APE (%) of the active model against each held-out point's first window."""
    first = [h.first_window() for h in app.held]
    return [row_ape(r) for r in holdout_records(app.models["active"], first, corrected=False)]


def noise_floor(apps: Sequence[AppEvaluation], *, steal_frac: float | None) -> NoiseFloor:
    """The apps' error against single windows beside the noise floor of the same run.

    Both figures are against single windows, so their ratio compares like with like
    whether or not the held-out points were repeated (the headline ``median_ape``
    against the median of repeated windows is a less noisy truth than the floor's).
    """
    single = float(np.median([e for a in apps for e in single_window_apes(a)]))
    floor = noise_floor_ape(g for a in apps for g in repeat_groups(a.held, a.noise))
    steadiness = judge_host(
        steal_frac=steal_frac,
        reference_spreads={a.app: a.reference_spread() for a in apps},
        noise_floor=floor,
    )
    return NoiseFloor(single, floor, single / floor if floor else None, steadiness, steal_frac)
