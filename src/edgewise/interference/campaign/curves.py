"""Learning and transfer curves, and held-out errors of refitted surrogates (pure).

:func:`learning_curve` is the cross-validated error after the first k stressed runs
(stored with every model); :func:`p50_holdout_ape` is the light refit behind the
held-out learning and :func:`transfer_curve` (warm-started from other workloads' runs
against starting from scratch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgewise.config import RESOURCES
from edgewise.interference.campaign.fit import (
    InterferenceModel,
    PoolSet,
    count_stressed,
    features_of,
    pooled_arrays,
    prefix,
    training_set,
)
from edgewise.interference.campaign.records import RunLike
from edgewise.interference.surrogates import SURROGATES, ape, cv_median_ape


def learning_curve(
    runs: Sequence[RunLike],
    strategy: str,
    *,
    name: str = "gp",
    step: int = 5,
    normalise: bool = True,
    resources: Sequence[str] = RESOURCES,
    seed: int = 0,
    min_runs: int = 10,
) -> list[dict[str, Any]]:
    """CV median APE (p50, %) of surrogate ``name`` trained on the first k stressed runs.

    One entry ``{"runs", "cv_median_ape", "strategy"}`` every ``step`` runs from
    ``min_runs`` on, and at the end. Below ``min_runs`` a cross-validated error says
    nothing (four or six points give folds of one or two and errors in the thousands of
    percent), so a shorter campaign stores no curve.
    """
    n = count_stressed(runs)
    ks = sorted({*range(min_runs, n + 1, max(1, step)), n} - set(range(min_runs)))
    out: list[dict[str, Any]] = []
    for k in ks:
        X, ys, _ = training_set(prefix(runs, k), normalise, resources)
        est = SURROGATES[name]().set_params(random_state=seed)
        err = cv_median_ape(est, X, ys["p50"], seed=seed)
        out.append({"runs": int(k), "cv_median_ape": round(float(err), 3), "strategy": strategy})
    return out


def holdout_error(
    model: InterferenceModel,
    held: Sequence[Mapping[str, Any]],
    percentile: str = "p50",
) -> np.ndarray:
    """APE (%) of ``model`` on held-out runs (each with ``achieved``, ``latency`` and an
    optional ``reference`` solo latency for drift correction)."""
    errs = [
        float(
            ape(
                [h["latency"][percentile]],
                [model.predict(h["achieved"], reference=h.get("reference"))[percentile]],
            )[0]
        )
        for h in held
    ]
    return np.asarray(errs)


def p50_holdout_ape(
    runs: Sequence[RunLike],
    held: Sequence[Mapping[str, Any]],
    *,
    name: str = "gp",
    seed: int = 0,
    resources: Sequence[str] = RESOURCES,
    pool: Sequence[PoolSet] = (),
) -> np.ndarray:
    """APE (%) on ``held`` of one p50 slowdown surrogate fitted on ``runs`` (+ ``pool``).

    The light refit behind learning and transfer curves: one estimator, no conformal
    scores. Each held-out prediction is scaled by its ``reference`` solo latency when
    given, else by the solo summary of ``runs``.
    """
    X, ys, solo = training_set(runs, True, resources)
    PX, pys = pooled_arrays(pool, resources)
    if len(pys["p50"]):
        X, y = np.vstack([PX, X]), np.concatenate([pys["p50"], ys["p50"]])
    else:
        y = ys["p50"]
    est = SURROGATES[name]().set_params(random_state=seed, cv=1).fit(X, y)
    Xh = np.array([features_of(h["achieved"], solo, resources) for h in held])
    ref = np.array([float((h.get("reference") or solo)["p50"]) for h in held])
    truth = np.array([float(h["latency"]["p50"]) for h in held])
    return ape(truth, ref * est.predict(Xh))


def transfer_curve(
    pool: Sequence[PoolSet],
    runs: Sequence[RunLike],
    held: Sequence[Mapping[str, Any]],
    ks: Sequence[int],
    *,
    name: str = "gp",
    seed: int = 0,
    resources: Sequence[str] = RESOURCES,
) -> list[dict[str, Any]]:
    """Held-out median APE (p50, %) after k of a new workload's runs, warm vs scratch.

    ``warm``: pooled other workloads plus the new workload's solo baselines and first
    k stressed runs; ``scratch``: those k runs alone (only where k >= 3).
    """
    out: list[dict[str, Any]] = []
    for k in ks:
        part = prefix(runs, k)
        n_stressed = count_stressed(part)
        for strategy, use_pool in (("warm", pool), ("scratch", ())):
            if not use_pool and n_stressed < 3:
                continue
            errs = p50_holdout_ape(
                part, held, name=name, seed=seed, resources=resources, pool=use_pool
            )
            out.append(
                {
                    "runs": int(k),
                    "median_ape": round(float(np.median(errs)), 3),
                    "strategy": strategy,
                }
            )
    return out
