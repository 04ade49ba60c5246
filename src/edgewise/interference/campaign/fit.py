"""From stored runs to a fitted interference model (pure: no process, no KB).

:func:`training_set` applies the drift correction: each run's latency is divided by the
solo latency interpolated between the baselines around it (:func:`reference_at`), so the
surrogate learns the *slowdown*, which host drift between baselines does not move.
:func:`fit_interference_model` selects one surrogate per percentile, optionally
warm-started from other workloads' runs (:class:`PoolSet`: the transfer part).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from edgewise.config import RESOURCES
from edgewise.interference.campaign.config import SOLO_FEATURES
from edgewise.interference.campaign.records import RunLike, RunRecord, SoloReference, as_runs
from edgewise.interference.surrogates import select_surrogate
from edgewise.stats import PERCENTILES

R = TypeVar("R", bound=RunLike)


def features_of(
    achieved: Mapping[str, float],
    solo: Mapping[str, float],
    resources: Sequence[str] = RESOURCES,
) -> list[float]:
    """Feature row: achieved resource vector then the target's solo footprint."""
    return [float(achieved.get(r, 0.0)) for r in resources] + [
        float(solo.get("cpu", 0.0)),
        math.log(max(1e-6, float(solo.get("p50", 1.0)))),
    ]


def solo_summary(solo_runs: Sequence[RunLike]) -> dict[str, float]:
    """Median solo p50/p95/p99 and target CPU over the stored solo baselines."""
    return SoloReference.median_of(as_runs(solo_runs)).as_dict()


@dataclass
class InterferenceModel:
    """Fitted surrogates per latency percentile, with what they were trained on.

    With ``normalised`` the surrogates predict the slowdown (latency / solo latency)
    and :meth:`predict` multiplies it by a reference solo latency: the stored median
    solo baseline, or a fresh one passed as ``reference`` (drift correction).
    """

    workload: str
    features: tuple[str, ...]
    solo: dict[str, float]
    models: dict[str, Any]
    chosen: dict[str, str]
    cv_scores: dict[str, dict[str, float]]
    normalised: bool = False
    pooled_from: tuple[str, ...] = ()

    @property
    def resources(self) -> tuple[str, ...]:
        """The resource features (every feature but the solo footprint)."""
        return tuple(f for f in self.features if f not in SOLO_FEATURES)

    def predict(
        self,
        vector: Mapping[str, float],
        solo: Mapping[str, float] | None = None,
        level: float = 0.9,
        reference: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """p50/p95/p99 (ms) and their ``level`` intervals at resource ``vector``."""
        x = np.array([features_of(vector, solo or self.solo, self.resources)])
        ref = reference or self.solo
        out: dict[str, Any] = {"lower": {}, "upper": {}}
        prev = 0.0
        for p in PERCENTILES:
            est = self.models[p]
            scale = float(ref[p]) if self.normalised else 1.0
            v = max(prev, scale * float(est.predict(x)[0]))
            lo, hi = est.predict_interval(x, level)
            out[p] = v
            out["lower"][p] = min(v, scale * float(lo[0]))
            out["upper"][p] = max(v, scale * float(hi[0]))
            prev = v
        return out


# Pickled models name the class by its public path, so a later move of this module
# does not break a stored model.
InterferenceModel.__module__ = "edgewise.interference.campaign"


def reference_at(
    i: float, solos: Sequence[tuple[float, Mapping[str, float]]]
) -> dict[str, float] | None:
    """Solo latency at position ``i``, interpolated between the baselines around it.

    ``solos`` are (position, latency percentiles) pairs. Between two baselines the
    reference moves linearly from one to the other, so a host that speeds up or slows
    down between them is tracked, and the two baselines' noise averages out; before the
    first or after the last baseline it is the nearest one.
    """
    if not solos:
        return None
    before = [s for s in solos if s[0] <= i]
    after = [s for s in solos if s[0] >= i]
    if not before or not after:
        _, lat = min(after, key=lambda s: s[0]) if after else max(before, key=lambda s: s[0])
        return {p: float(lat[p]) for p in PERCENTILES}
    (i0, lat0), (i1, lat1) = max(before, key=lambda s: s[0]), min(after, key=lambda s: s[0])
    w = 0.0 if i1 == i0 else (i - i0) / (i1 - i0)
    return {p: (1.0 - w) * float(lat0[p]) + w * float(lat1[p]) for p in PERCENTILES}


def solo_reference(run: RunLike, solos: Sequence[RunLike]) -> dict[str, float] | None:
    """The solo latency a run is divided by: :func:`reference_at` its run index over the
    solo baselines (the other baselines, for a solo run)."""
    r = as_runs([run])[0]
    baselines = as_runs(solos)
    others = [s for s in baselines if s.index != r.index] or baselines
    return reference_at(float(r.index), [(float(s.index), s.latency) for s in others])


def _feature_matrix(
    runs: Sequence[RunRecord], solo: Mapping[str, float], resources: Sequence[str]
) -> np.ndarray:
    return np.array([features_of(r.achieved, solo, resources) for r in runs]).reshape(
        len(runs), len(resources) + len(SOLO_FEATURES)
    )


def training_set(
    runs: Sequence[RunLike],
    normalise: bool = True,
    resources: Sequence[str] = RESOURCES,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """Feature matrix, per-percentile targets and the solo summary from ok runs.

    With ``normalise`` each target is the run's latency divided by the solo latency
    interpolated between the baselines around it (:func:`solo_reference`), so drift of
    the host between baselines cancels out.
    """
    ok = [r for r in as_runs(runs) if r.is_ok]
    solos = [r for r in ok if r.is_solo]
    solo = SoloReference.median_of(solos).as_dict()
    X = _feature_matrix(ok, solo, resources)
    # each run's divisor, found once for all percentiles (without any solo baseline:
    # the summary's placeholder of 1 ms)
    ones = dict.fromkeys(PERCENTILES, 1.0)
    refs = [(solo_reference(r, solos) or solo) if normalise else ones for r in ok]
    ys = {
        p: np.array([r.p(p) / ref[p] for r, ref in zip(ok, refs, strict=True)], dtype=float)
        for p in PERCENTILES
    }
    return X, ys, solo


def training_arrays(
    runs: Sequence[RunLike],
    solo: Mapping[str, float],
    resources: Sequence[str] = RESOURCES,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Absolute-latency training arrays with a given solo summary (no normalisation)."""
    records = as_runs(runs)
    X = np.array([features_of(r.achieved, solo, resources) for r in records])
    ys = {p: np.array([r.p(p) for r in records], dtype=float) for p in PERCENTILES}
    return X, ys


def prefix(runs: Sequence[R], k: int) -> list[R]:
    """Runs up to and including the ``k``-th stressed run (with the solos before it)."""
    out: list[R] = []
    n = 0
    for run, rec in sorted(zip(runs, as_runs(runs), strict=True), key=lambda rr: rr[1].index):
        if not rec.is_solo:
            if n >= k:
                break
            n += 1
        out.append(run)
    return out


def count_stressed(runs: Sequence[RunLike]) -> int:
    """How many of ``runs`` are stressed runs (not solo baselines)."""
    return sum(1 for r in as_runs(runs) if not r.is_solo)


@dataclass(frozen=True)
class PoolSet:
    """Another workload's campaign runs, used to warm-start a new workload's model."""

    workload: str
    runs: tuple[RunLike, ...]


def pooled_arrays(
    pool: Sequence[PoolSet], resources: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Slowdown training arrays of every pooled workload, stacked."""
    xs: list[np.ndarray] = []
    ys: dict[str, list[np.ndarray]] = {p: [] for p in PERCENTILES}
    for ps in pool:
        X, y, _ = training_set(ps.runs, True, resources)
        if len(X):
            xs.append(X)
            for p in PERCENTILES:
                ys[p].append(y[p])
    if not xs:
        return np.empty((0, len(resources) + len(SOLO_FEATURES))), {
            p: np.empty(0) for p in PERCENTILES
        }
    return np.vstack(xs), {p: np.concatenate(ys[p]) for p in PERCENTILES}


def fit_interference_model(
    workload: str,
    runs: Sequence[RunLike],
    solo: Mapping[str, float] | None = None,
    seed: int = 0,
    names: Sequence[str] = ("gp", "gbq", "linear"),
    *,
    normalise: bool = True,
    resources: Sequence[str] = RESOURCES,
    pool: Sequence[PoolSet] = (),
) -> InterferenceModel:
    """Select and fit one surrogate per percentile on ok runs (stressed and solo).

    ``pool`` warm-starts the model (transfer): other workloads' runs join the training
    set as slowdowns, told apart by their solo-footprint features, and the selection's
    cross-validation scores only this workload's runs. Pooling implies normalisation.
    ``solo`` (absolute targets only) overrides the solo summary of ``runs``.
    """
    normalise = normalise or bool(pool)
    X, ys, solo_s = training_set(runs, normalise, resources)
    if solo is not None and not normalise:
        solo_s = dict(solo)
        X, ys = training_arrays([r for r in as_runs(runs) if r.is_ok], solo_s, resources)
    PX, pys = pooled_arrays(pool, resources)
    models: dict[str, Any] = {}
    chosen: dict[str, str] = {}
    scores: dict[str, dict[str, float]] = {}
    for p in PERCENTILES:
        name, model, sc = select_surrogate(
            X, ys[p], names=names, seed=seed, extra_X=PX, extra_y=pys[p]
        )
        models[p], chosen[p], scores[p] = model, name, sc
    return InterferenceModel(
        workload,
        (*resources, *SOLO_FEATURES),
        dict(solo_s),
        models,
        chosen,
        scores,
        normalised=normalise,
        pooled_from=tuple(ps.workload for ps in pool),
    )
