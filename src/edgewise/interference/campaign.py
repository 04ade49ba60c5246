"""Profiling campaigns: design points -> stressed runs -> stored runs -> fitted surrogate.

Pure part: :func:`features_of`, :func:`plan_next` (seed design first, then the
candidate that most lowers the surrogate's integrated variance), :func:`training_set`
(drift correction: each run's latency is divided by the solo latency interpolated
between the baselines around it, so the surrogate learns the *slowdown*, which host
drift between baselines does not move),
:func:`fit_interference_model` (optionally warm-started from other workloads' runs: the
transfer part), :func:`learning_curve` and :func:`transfer_curve`. Effectful part:
:class:`CampaignRunner` starts each stress mix, warms up, drives the target open-loop,
records latency percentiles, the achieved vector and host CPU, stops everything, flags
and repeats runs disturbed by foreign load, and stores every run in its own KB
transaction as it finishes, so ``resume=True`` continues an interrupted campaign.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy import select

from edgewise.config import RESOURCES, StressSpace
from edgewise.errors import EdgewiseError, EnvironmentProblem
from edgewise.interference import doe
from edgewise.interference.calibration import Calibration
from edgewise.interference.footprint import ensure_workload, store_footprint
from edgewise.interference.gpu import GPU_RESOURCES
from edgewise.interference.stressors import Achieved, HostCaps, StressMix
from edgewise.interference.surrogates import (
    SURROGATES,
    GPSurrogate,
    ape,
    cv_median_ape,
    select_surrogate,
)
from edgewise.interference.target import TargetResult
from edgewise.stats import PERCENTILES

SOLO_FEATURES: tuple[str, ...] = ("solo_cpu", "solo_log_p50")
FEATURES: tuple[str, ...] = (*RESOURCES, *SOLO_FEATURES)
Confine = Literal["taskset", "cgroup"]


def resources_of(space: Mapping[str, Any]) -> tuple[str, ...]:
    """Resource features of a campaign: the host resources, plus GPU ones it explores."""
    extra = tuple(r for r in GPU_RESOURCES if r in space)
    if "gpu" in space and "gpumem" not in extra:
        extra = (*extra, "gpumem")
    return (*RESOURCES, *extra)


DEFAULT_SPACE = StressSpace(
    resources={
        "cpu": (0.0, 0.9),
        "membw": (0.0, 0.8),
        "llc": (0.0, 0.8),
        "disk": (0.0, 0.5),
        "net": (0.0, 0.5),
    }
)


@dataclass(frozen=True)
class CampaignConfig:
    """Everything that defines a campaign (stored with it, checked on resume)."""

    name: str
    budget: int = 30
    seconds: float = 6.0
    warmup_s: float = 1.5
    seed: int = 0
    method: Literal["active", "lhs", "sobol"] = "active"
    n_seed: int | None = None
    solo_runs: int = 2
    solo_every: int = 10
    space: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {str(k): v for k, v in DEFAULT_SPACE.resources.items()}
    )
    stress_cpus: tuple[int, ...] | None = None
    cpu_stress_cpus: tuple[int, ...] | None = None
    confine: Confine = "taskset"
    foreign_threshold: float = 0.25
    max_repeats: int = 1
    target_cv_ape: float = 0.0
    surrogates: tuple[str, ...] = ("gp", "gbq", "linear")
    normalise: bool = True
    warm_start: bool = False
    curve_step: int = 5

    def seed_size(self) -> int:
        if self.method != "active":
            return self.budget
        return (
            self.n_seed
            if self.n_seed is not None
            else max(2, min(self.budget, math.ceil(0.5 * self.budget)))
        )

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["space"] = {k: list(v) for k, v in self.space.items()}
        d["surrogates"] = list(self.surrogates)
        d["stress_cpus"] = list(self.stress_cpus) if self.stress_cpus else None
        d["cpu_stress_cpus"] = list(self.cpu_stress_cpus) if self.cpu_stress_cpus else None
        return d

    @property
    def resources(self) -> tuple[str, ...]:
        return resources_of(self.space)


# --------------------------------------------------------------------------- pure
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


def solo_summary(solo_runs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Median solo p50/p95/p99 and target CPU over the stored solo baselines."""
    if not solo_runs:
        return {"p50": 1.0, "p95": 1.0, "p99": 1.0, "cpu": 0.0}
    out = {p: float(np.median([r["latency"][p] for r in solo_runs])) for p in PERCENTILES}
    out["cpu"] = float(np.median([r["achieved"].get("target_cpu", 0.0) for r in solo_runs]))
    return out


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


def solo_reference(
    run: Mapping[str, Any], solos: Sequence[Mapping[str, Any]]
) -> dict[str, float] | None:
    """The solo latency a run is divided by: :func:`reference_at` its run index over the
    solo baselines (the other baselines, for a solo run)."""
    others = [s for s in solos if s.get("index") != run.get("index")] or list(solos)
    pairs = [(float(s.get("index", 0)), s["latency"]) for s in others]
    return reference_at(float(run.get("index", 0)), pairs)


def training_set(
    runs: Sequence[Mapping[str, Any]],
    normalise: bool = True,
    resources: Sequence[str] = RESOURCES,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """Feature matrix, per-percentile targets and the solo summary from ok runs.

    With ``normalise`` each target is the run's latency divided by the solo latency
    interpolated between the baselines around it (:func:`solo_reference`), so drift of
    the host between baselines cancels out.
    """
    ok = [r for r in runs if r.get("status", "ok") == "ok"]
    solos = [r for r in ok if "solo" in r.get("flags", [])]
    solo = solo_summary(solos)
    X = np.array([features_of(r["achieved"], solo, resources) for r in ok]).reshape(
        len(ok), len(resources) + len(SOLO_FEATURES)
    )
    # each run's divisor, found once for all percentiles (without any solo baseline:
    # the summary's placeholder of 1 ms)
    ones = dict.fromkeys(PERCENTILES, 1.0)
    refs = [(solo_reference(r, solos) or solo) if normalise else ones for r in ok]
    ys = {
        p: np.array(
            [float(r["latency"][p]) / ref[p] for r, ref in zip(ok, refs, strict=True)],
            dtype=float,
        )
        for p in PERCENTILES
    }
    return X, ys, solo


def training_arrays(
    runs: Sequence[Mapping[str, Any]],
    solo: Mapping[str, float],
    resources: Sequence[str] = RESOURCES,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Absolute-latency training arrays with a given solo summary (no normalisation)."""
    X = np.array([features_of(r["achieved"], solo, resources) for r in runs])
    ys = {p: np.array([r["latency"][p] for r in runs], dtype=float) for p in PERCENTILES}
    return X, ys


def prefix(runs: Sequence[Mapping[str, Any]], k: int) -> list[Mapping[str, Any]]:
    """Runs up to and including the ``k``-th stressed run (with the solos before it)."""
    out: list[Mapping[str, Any]] = []
    n = 0
    for r in sorted(runs, key=lambda r: int(r.get("index", 0))):
        stressed = "solo" not in r.get("flags", [])
        if stressed:
            if n >= k:
                break
            n += 1
        out.append(r)
    return out


@dataclass(frozen=True)
class PoolSet:
    """Another workload's campaign runs, used to warm-start a new workload's model."""

    workload: str
    runs: tuple[Mapping[str, Any], ...]


def _pooled_arrays(
    pool: Sequence[PoolSet], resources: Sequence[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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
    runs: Sequence[Mapping[str, Any]],
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
        X, ys = training_arrays(
            [r for r in runs if r.get("status", "ok") == "ok"], solo_s, resources
        )
    PX, pys = _pooled_arrays(pool, resources)
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


def learning_curve(
    runs: Sequence[Mapping[str, Any]],
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
    n = sum(1 for r in runs if "solo" not in r.get("flags", []))
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
    runs: Sequence[Mapping[str, Any]],
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
    PX, pys = _pooled_arrays(pool, resources)
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
    runs: Sequence[Mapping[str, Any]],
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
        n_stressed = sum(1 for r in part if "solo" not in r.get("flags", []))
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


def expected_achieved(
    runs: Sequence[Mapping[str, Any]], knobs: Sequence[str], resources: Sequence[str]
) -> Callable[[Sequence[Mapping[str, float]]], list[dict[str, float]]]:
    """Map requested design points to the achieved vectors the runs so far suggest.

    Stressors sharing CPUs achieve less than asked (and a calibration made for each
    resource alone cannot know the mix), while the surrogates live in achieved
    coordinates: a linear fit of achieved on requested over the stressed runs puts the
    active-sampling candidates where they will land. Identity below three runs.
    """
    stressed = [r for r in runs if "solo" not in r.get("flags", []) and r.get("design") is not None]
    if len(stressed) < 3:
        return lambda pts: [{r: float(p.get(r, 0.0)) for r in resources} for p in pts]
    from sklearn.linear_model import Ridge

    D = np.array([[float(r["design"].get(k, 0.0)) for k in knobs] for r in stressed])
    A = np.array([[float(r["achieved"].get(k, 0.0)) for k in resources] for r in stressed])
    fit = Ridge(alpha=1e-2).fit(D, A)

    def expect(pts: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
        P = np.array([[float(p.get(k, 0.0)) for k in knobs] for p in pts])
        out = np.clip(fit.predict(P), 0.0, None)
        return [dict(zip(resources, row.tolist(), strict=True)) for row in out]

    return expect


def plan_next(
    cfg: CampaignConfig,
    done_designs: Sequence[Mapping[str, float]],
    runs: Sequence[Mapping[str, Any]],
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


# --------------------------------------------------------------------------- effects
def _host_cpu_busy() -> tuple[float, float]:
    """(busy seconds, total seconds) summed over CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [float(v) for v in parts[:8]]
    hz = float(os.sysconf("SC_CLK_TCK"))
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / hz, sum(vals) / hz


@dataclass(frozen=True)
class Measured:
    design: dict[str, float]
    achieved: dict[str, float]
    latency: dict[str, float]
    foreign: float
    raw: dict[str, float]


Placement = Literal["same", "split", "any"]


def placement_cpus(
    placement: Placement, target_cpus: Sequence[int], allowed: Sequence[int]
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """``(stress_cpus, cpu_stress_cpus)`` for a placement of the stressors.

    ``same``: every stressor on the target's CPUs; ``split``: the CPU stressor there and
    the others on the remaining ``allowed`` CPUs (the target's own on a one-CPU host), as
    co-located neighbours would run; ``any``: unconfined.
    """
    if placement == "any":
        return None, None
    target = tuple(target_cpus)
    if placement == "same":
        return target, None
    others = tuple(c for c in allowed if c not in target) or target
    return others, target


def measure_point(
    target: Any,
    design: Mapping[str, float],
    *,
    seconds: float,
    warmup_s: float,
    seed: int,
    stress_cpus: Sequence[int] | None,
    calibration: Calibration | None,
    caps: HostCaps,
    confine: Confine = "taskset",
    cpu_stress_cpus: Sequence[int] | None = None,
) -> Measured:
    """One run: stress mix (if any), warm-up, open-loop target window, achieved vector.

    ``stress_cpus`` confines the host stressors, through stress-ng's ``--taskset`` or
    (``confine='cgroup'``) a :class:`~edgewise.isolation.CGroup` with that cpuset;
    ``cpu_stress_cpus``, when given, places the CPU stressor apart from the others (on
    the target's own CPUs, say, while memory, cache, disk and network stressors run on
    the host's other CPUs). A ``gpu`` entry of ``design`` starts the duty-cycled GPU
    stressor beside them.
    """
    host = {k: v for k, v in design.items() if k in RESOURCES and v > 0.005}
    groups: list[tuple[dict[str, float], Sequence[int] | None]] = []
    if cpu_stress_cpus is not None and "cpu" in host:
        groups.append(({"cpu": host.pop("cpu")}, cpu_stress_cpus))
    if host:
        groups.append((host, stress_cpus))
    gpu_duty = float(design.get("gpu", 0.0))
    with contextlib.ExitStack() as stack:
        mixes: list[StressMix] = []
        for i, (part, cpus) in enumerate(groups):
            cg = None
            if confine == "cgroup" and cpus:
                from edgewise.isolation import CGroup

                cg = stack.enter_context(CGroup(f"stress{i}", cpuset=",".join(map(str, cpus))))
            mixes.append(
                StressMix(
                    part,
                    seconds=seconds + warmup_s,
                    cpus=cpus,
                    caps=caps,
                    calibration=calibration,
                    cgroup=cg,
                )
            )
        gpu = None
        if gpu_duty > 0.005:
            from edgewise.interference.gpu import GpuStress

            gpu = stack.enter_context(GpuStress(gpu_duty))
        for mix in mixes:
            stack.callback(mix.close)
            stack.callback(mix.stop)
            mix.start()
        if mixes or gpu is not None:
            time.sleep(warmup_s)
        for mix in mixes:
            mix.check_alive()
            mix.begin_window()
        if gpu is not None:
            gpu.begin_window()
        gpu_before = _gpu_now() if "gpu" in design else {}
        b0, t0 = _host_cpu_busy()
        result: TargetResult = target.measure(seconds, seed)
        b1, t1 = _host_cpu_busy()
        gpu_ach = gpu.end_window() if gpu is not None else gpu_before
        ach = Achieved(dict.fromkeys(RESOURCES, 0.0), {}, result.wall_s)
        for mix in mixes:
            mix.check_alive()
            part_ach = mix.finish(mix.end_window())
            ach = Achieved(
                {r: ach.intensity[r] + (part_ach.intensity.get(r, 0.0) or 0.0) for r in RESOURCES},
                {**ach.raw, **part_ach.raw},
                ach.wall_s,
            )
    wall = max(1e-6, result.wall_s)
    ncpu = caps.ncpus
    ours = result.cpu_s / wall + sum(ach.raw.get(r, 0.0) for r in ("cpu", "llc", "net", "membw"))
    busy = (b1 - b0) / max(1e-6, (t1 - t0) / ncpu) if t1 > t0 else 0.0
    foreign = max(0.0, busy - ours) / ncpu
    achieved = {r: round(float(ach.intensity.get(r, 0.0)), 5) for r in RESOURCES}
    if "gpu" in design:
        for k in GPU_RESOURCES:
            achieved[k] = round(float(gpu_ach.get(k, 0.0)), 5)
    achieved["target_cpu"] = round(result.cpu_fraction / ncpu, 5)
    return Measured(dict(design), achieved, result.summary(), foreign, dict(ach.raw))


def _gpu_now() -> dict[str, float]:
    from edgewise.interference.gpu import gpu_features

    return gpu_features()


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

    # -- KB -------------------------------------------------------------------
    def _open_campaign(self, resume: bool) -> int:
        from edgewise.kb import models as m

        with self.kb.transaction() as s:
            c = s.scalars(select(m.Campaign).where(m.Campaign.name == self.cfg.name)).first()
            if c is not None and not resume:
                raise EdgewiseError(
                    f"campaign {self.cfg.name!r} already exists ({c.status}): pass --resume to continue it"
                )
            if c is None:
                w = ensure_workload(s, self.target.name, self.target.kind, self.target.params)
                c = m.Campaign(
                    name=self.cfg.name,
                    target_workload_id=w.id,
                    status="running",
                    config=self.cfg.to_json(),
                )
                s.add(c)
                s.flush()
            else:
                c.status = "running"
            return int(c.id)

    def _runs(self, cid: int) -> list[dict[str, Any]]:
        from edgewise.kb import models as m

        with self.kb.snapshot() as s:
            rows = s.scalars(
                select(m.Run).where(m.Run.campaign_id == cid).order_by(m.Run.index)
            ).all()
            return [
                {
                    "id": r.id,
                    "index": r.index,
                    "design": dict(r.design),
                    "achieved": dict(r.achieved),
                    "latency": dict(r.latency),
                    "status": r.status,
                    "flags": list(r.flags or []),
                }
                for r in rows
            ]

    def _store(
        self, cid: int, index: int, meas: Measured, status: str, flags: list[str], started: float
    ) -> None:
        from datetime import UTC, datetime

        from edgewise.kb import models as m

        with self.kb.transaction() as s:
            run = m.Run(
                campaign_id=cid,
                index=index,
                design=meas.design,
                achieved=meas.achieved,
                latency=meas.latency,
                status=status,
                flags=flags,
                started_at=datetime.fromtimestamp(started, UTC),
                finished_at=datetime.now(UTC),
            )
            s.add(run)
            s.flush()
            s.add(m.Sample(run_id=run.id, t=0.0, metrics={"foreign_cpu": meas.foreign, **meas.raw}))

    def _set_status(self, cid: int, status: str) -> None:
        from datetime import UTC, datetime

        from edgewise.kb import models as m

        with self.kb.transaction() as s:
            c = s.get(m.Campaign, cid)
            if c is not None:
                c.status = status
                if status == "done":
                    c.finished_at = datetime.now(UTC)

    # -- loop -----------------------------------------------------------------
    def _one(self, cid: int, index: int, design: Mapping[str, float], solo: bool) -> None:
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
                self._store(cid, index, meas, "ok", flags, started)
                return
            flags = [*flags, f"foreign_cpu={meas.foreign:.2f}"]
        self._store(cid, index, meas, "flagged", flags, started)

    def run(self, resume: bool = False) -> InterferenceModel:
        """Run (or resume) the campaign, store the fitted model, return it."""
        cid = self._open_campaign(resume)
        self.target.start()
        try:
            while True:
                runs = self._runs(cid)
                index = len(runs)
                solos = [r for r in runs if "solo" in r["flags"] and r["status"] == "ok"]
                stressed = [r for r in runs if "solo" not in r["flags"]]
                n_solo_due = self.cfg.solo_runs + len(stressed) // max(1, self.cfg.solo_every)
                n_solo_all = sum(1 for r in runs if "solo" in r["flags"])
                solo = solo_summary(solos)
                ok = [r for r in runs if r["status"] == "ok"]
                if n_solo_all < n_solo_due:
                    if self.progress:
                        self.progress(len(stressed), self.cfg.budget, "solo baseline")
                    self._one(cid, index, dict.fromkeys(self.cfg.space, 0.0), solo=True)
                    continue
                point = plan_next(self.cfg, [r["design"] for r in stressed], ok, solo)
                if point is None:
                    break
                if self.progress:
                    self.progress(
                        len(stressed),
                        self.cfg.budget,
                        ", ".join(f"{k}={v:.2f}" for k, v in point.items()),
                    )
                self._one(cid, index, point, solo=False)
        except BaseException:
            self._set_status(cid, "interrupted")
            raise
        finally:
            self.target.close()
        runs = self._runs(cid)
        ok = [r for r in runs if r["status"] == "ok"]
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
            training_ids=[r["id"] for r in ok],
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
        self._set_status(cid, "done")
        return model


def campaign_runs(kb: Any, name: str) -> list[dict[str, Any]]:
    """Every stored run of campaign ``name`` as plain dicts (index order)."""
    from edgewise.kb import models as m

    with kb.snapshot() as s:
        c = s.scalars(select(m.Campaign).where(m.Campaign.name == name)).first()
        if c is None:
            return []
        rows = s.scalars(select(m.Run).where(m.Run.campaign_id == c.id).order_by(m.Run.index))
        return [
            {
                "id": r.id,
                "index": r.index,
                "design": dict(r.design),
                "achieved": dict(r.achieved),
                "latency": dict(r.latency),
                "status": r.status,
                "flags": list(r.flags or []),
            }
            for r in rows
        ]


def load_pool(kb: Any, exclude: str = "") -> list[PoolSet]:
    """Runs behind the newest surrogate of every other workload (the transfer pool)."""
    from edgewise.kb import models as m

    with kb.snapshot() as s:
        rows = s.scalars(
            select(m.FittedModel)
            .where(m.FittedModel.kind == "surrogate")
            .order_by(m.FittedModel.version.desc())
        ).all()
        latest: dict[str, str] = {}
        for row in rows:
            if row.name != exclude and row.name not in latest:
                campaign = (row.meta or {}).get("campaign")
                if campaign:
                    latest[row.name] = str(campaign)
    pool = []
    for workload, campaign in sorted(latest.items()):
        runs = [r for r in campaign_runs(kb, campaign) if r["status"] == "ok"]
        if runs:
            pool.append(PoolSet(workload, tuple(runs)))
    return pool
