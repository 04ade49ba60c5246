"""The campaign loop: plan a point, measure it, store it; at the end fit and store.

:class:`CampaignRunner` starts each stress mix through ``measure`` (default
:func:`~edgewise.interference.campaign.measure.measure_point`), flags and repeats runs
disturbed by foreign load, keeps a solo baseline every ``solo_every`` runs, and stores
every run in its own KB transaction as it finishes, so ``resume=True`` continues an
interrupted campaign. The decisions (next point, solo due) are the pure functions of
:mod:`.planning`; the KB effects are :mod:`.store`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from edgewise.errors import EnvironmentProblem
from edgewise.interference.calibration import Calibration
from edgewise.interference.campaign.config import CampaignConfig
from edgewise.interference.campaign.curves import learning_curve
from edgewise.interference.campaign.fit import InterferenceModel, fit_interference_model
from edgewise.interference.campaign.measure import Measured, measure_point
from edgewise.interference.campaign.planning import plan_next
from edgewise.interference.campaign.records import RunRecord, SoloReference
from edgewise.interference.campaign.store import (
    load_pool,
    open_campaign,
    runs_of,
    set_status,
    store_run,
)
from edgewise.interference.footprint import store_footprint
from edgewise.interference.stressors import HostCaps
from edgewise.stats import PERCENTILES


def solo_due(cfg: CampaignConfig, runs: list[RunRecord]) -> bool:
    """Whether the next run is a solo baseline: ``solo_runs`` first, then one every
    ``solo_every`` stressed runs (flagged baselines count as taken)."""
    stressed = sum(1 for r in runs if not r.is_solo)
    due = cfg.solo_runs + stressed // max(1, cfg.solo_every)
    return sum(1 for r in runs if r.is_solo) < due


class CampaignRunner:
    """Runs a campaign against ``target`` and keeps it in ``kb``."""

    def __init__(
        self,
        kb: Any,
        target: Any,
        config: CampaignConfig,
        *,
        calibration: Calibration | None = None,
        caps: HostCaps | None = None,
        measure: Callable[..., Measured] = measure_point,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.kb = kb
        self.target = target
        self.cfg = config
        self.calibration = calibration
        self.caps = caps or (calibration.caps if calibration else HostCaps.default())
        self.measure = measure
        self.progress = progress

    def _tell(self, done: int, what: str) -> None:
        if self.progress:
            self.progress(done, self.cfg.budget, what)

    def _one(self, cid: int, index: int, design: Mapping[str, float], solo: bool) -> None:
        """Measure one point, repeating it while foreign load disturbs it, and store it."""
        flags: list[str] = ["solo"] if solo else []
        for attempt in range(self.cfg.max_repeats + 1):
            started = time.time()
            meas = self.measure(
                self.target,
                design,
                seconds=self.cfg.seconds,
                warmup_s=0.0 if solo else self.cfg.warmup_s,
                seed=self.cfg.seed * 100003 + index * 17 + attempt,
                stress_cpus=self.cfg.stress_cpus,
                cpu_stress_cpus=self.cfg.cpu_stress_cpus,
                calibration=self.calibration,
                caps=self.caps,
                confine=self.cfg.confine,
            )
            if meas.foreign <= self.cfg.foreign_threshold:
                store_run(self.kb, cid, index, meas, "ok", flags, started)
                return
            flags = [*flags, f"foreign_cpu={meas.foreign:.2f}"]
        store_run(self.kb, cid, index, meas, "flagged", flags, started)

    def _loop(self, cid: int) -> None:
        """Measure solo baselines and planned points until the plan says done."""
        while True:
            runs = runs_of(self.kb, cid)
            index = len(runs)
            stressed = [r for r in runs if not r.is_solo]
            if solo_due(self.cfg, runs):
                self._tell(len(stressed), "solo baseline")
                self._one(cid, index, dict.fromkeys(self.cfg.space, 0.0), solo=True)
                continue
            ok = [r for r in runs if r.is_ok]
            solo = SoloReference.median_of([r for r in ok if r.is_solo]).as_dict()
            point = plan_next(self.cfg, [r.design for r in stressed], ok, solo)
            if point is None:
                return
            self._tell(len(stressed), ", ".join(f"{k}={v:.2f}" for k, v in point.items()))
            self._one(cid, index, point, solo=False)

    def _fit_and_store(self, cid: int) -> InterferenceModel:
        """Fit the model on the campaign's ok runs and store it with the footprint."""
        ok = [r for r in runs_of(self.kb, cid) if r.is_ok]
        if len(ok) < 3:
            raise EnvironmentProblem(
                f"campaign {self.cfg.name!r}: only {len(ok)} usable runs, cannot fit a model"
            )
        pool = load_pool(self.kb, exclude=self.target.name) if self.cfg.warm_start else []
        res = self.cfg.resources
        model = fit_interference_model(
            self.target.name,
            ok,
            seed=self.cfg.seed,
            names=self.cfg.surrogates,
            normalise=self.cfg.normalise,
            resources=res,
            pool=pool,
        )
        solo = model.solo
        curve = learning_curve(
            ok,
            "lhs" if self.cfg.method == "lhs" else "active",
            name=model.chosen["p50"],
            step=self.cfg.curve_step,
            normalise=self.cfg.normalise,
            resources=res,
            seed=self.cfg.seed,
        )
        from edgewise.kb import save_model

        save_model(
            self.kb,
            "surrogate",
            self.target.name,
            model,
            features=list(model.features),
            training_ids=[r.id for r in ok],
            metrics={
                **{p: model.cv_scores[p] for p in PERCENTILES},
                "learning_curve": curve,
            },
            meta={
                "campaign": self.cfg.name,
                "chosen": model.chosen,
                "solo": solo,
                "normalised": model.normalised,
                "pooled_from": list(model.pooled_from),
            },
        )
        store_footprint(
            self.kb,
            self.target.name,
            {"cpu": solo["cpu"], "mem": 0.0, **{k: solo[k] for k in PERCENTILES}},
            kind=self.target.kind,
            params=self.target.params,
        )
        return model

    def run(self, resume: bool = False) -> InterferenceModel:
        """Run (or resume) the campaign, store the fitted model, return it."""
        cid = open_campaign(self.kb, self.cfg, self.target, resume)
        self.target.start()
        try:
            self._loop(cid)
        except BaseException:
            set_status(self.kb, cid, "interrupted")
            raise
        finally:
            self.target.close()
        model = self._fit_and_store(cid)
        set_status(self.kb, cid, "done")
        return model
