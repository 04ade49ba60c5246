"""The next design point of a campaign (pure: decided from the runs so far).

:func:`plan_next` takes the seed design (LHS or Sobol) first, then the candidate that
most lowers the surrogates' integrated variance, each candidate judged where it is
expected to land (:func:`expected_achieved`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np

from edgewise.interference import doe
from edgewise.interference.campaign.config import CampaignConfig
from edgewise.interference.campaign.fit import features_of, training_set
from edgewise.interference.campaign.records import RunLike, as_runs
from edgewise.interference.surrogates import GPSurrogate, cv_median_ape


def expected_achieved(
    runs: Sequence[RunLike], knobs: Sequence[str], resources: Sequence[str]
) -> Callable[[Sequence[Mapping[str, float]]], list[dict[str, float]]]:
    """Map requested design points to the achieved vectors the runs so far suggest.

    Stressors sharing CPUs achieve less than asked (and a calibration made for each
    resource alone cannot know the mix), while the surrogates live in achieved
    coordinates: a linear fit of achieved on requested over the stressed runs puts the
    active-sampling candidates where they will land. Identity below three runs.
    """
    stressed = [r for r in as_runs(runs) if not r.is_solo and r.design]
    if len(stressed) < 3:
        return lambda pts: [{r: float(p.get(r, 0.0)) for r in resources} for p in pts]
    from sklearn.linear_model import Ridge

    D = np.array([[float(r.design.get(k, 0.0)) for k in knobs] for r in stressed])
    A = np.array([[float(r.achieved.get(k, 0.0)) for k in resources] for r in stressed])
    fit = Ridge(alpha=1e-2).fit(D, A)

    def expect(pts: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
        P = np.array([[float(p.get(k, 0.0)) for k in knobs] for p in pts])
        out = np.clip(fit.predict(P), 0.0, None)
        return [dict(zip(resources, row.tolist(), strict=True)) for row in out]

    return expect


def plan_next(
    cfg: CampaignConfig,
    done_designs: Sequence[Mapping[str, float]],
    runs: Sequence[RunLike],
    solo: Mapping[str, float] | None = None,
) -> dict[str, float] | None:
    """The next design point, or None when the budget (or target CV error) is reached.

    The seed design (LHS or Sobol) comes first; then the candidate whose run would most
    lower the predictive variance of GPs on the runs so far (``runs``: ok runs, solos
    included) over the whole candidate set, for p50 and p99 together, each candidate
    judged at its expected achieved vector (:func:`expected_achieved`).
    """
    n = len(done_designs)
    if n >= cfg.budget:
        return None
    space = dict(cfg.space)
    n_seed = cfg.seed_size()
    if n < n_seed:
        method: Literal["lhs", "sobol"] = "sobol" if cfg.method == "sobol" else "lhs"
        return doe.seed_design(space, n_seed, method, cfg.seed)[n]
    res = cfg.resources
    X, ys, solo_s = training_set(runs, cfg.normalise, res)
    if len(X) < 3:
        return doe.seed_design(space, cfg.budget, "lhs", cfg.seed + 1)[n]
    if (
        cfg.target_cv_ape > 0
        and cv_median_ape(GPSurrogate(n_restarts=0, cv=1), X, ys["p50"]) <= cfg.target_cv_ape
    ):
        return None
    gps = {
        p: GPSurrogate(n_restarts=1, cv=1, random_state=cfg.seed).fit(X, ys[p])
        for p in ("p50", "p99")
    }
    cands = doe.candidates(space, 256, cfg.seed + 7 + n)
    expect = expected_achieved(runs, list(space), res)

    def gain(points: Sequence[dict[str, float]]) -> np.ndarray:
        xc = np.array([features_of(a, solo_s, res) for a in expect(points)])
        total = np.zeros(len(xc))
        for g in gps.values():
            v = g.variance_reduction(xc)
            total += v / max(float(v.max()), 1e-12)
        return total

    return doe.next_point(cands, gain, taken=[dict(d) for d in done_designs])
