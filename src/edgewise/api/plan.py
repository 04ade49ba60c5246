"""Plan use case: the cheapest replica mix that serves a rate, or a forecast, under the SLO.

:func:`plan` reads the capacity profile of every (variant, flavor) of a service from the
knowledge base (measuring the missing ones when asked, :func:`.capacity.measure_profiles`),
recomputes each capacity under the service's SLO, and solves the Barista problem with the
exact planner or the heuristic (:mod:`edgewise.planning.serving`, pure). With a trace
instead of a rate, it first forecasts the trace and plans for the peak of the upper
bound (:func:`edgewise.planning.serving.forecast_rate`). Next to declared neighbours
(``neighbours=`` or the service spec's ``neighbours:``) every variant's capacity is derated
by the slowdown the knowledge base's interference model predicts for it
(:func:`edgewise.api.colocation.neighbour_slowdown`), so the replicas are sized on the
derated capacity. A flavor too small for the SLO is left out of the plan with a note
while another fits. The decision and its inputs are stored as a
:class:`edgewise.kb.models.Plan` row.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import numpy as np

from edgewise.api.capacity import Progress, measure_profiles
from edgewise.api.colocation import Slowdown, derated_capacity_rps, neighbour_slowdown, observed
from edgewise.config import FlavorCatalog, FlavorSpec, ModelVariant, ServiceSpec
from edgewise.config import load_flavors as _load_flavors
from edgewise.config import load_service as _load_service
from edgewise.errors import InfeasibleError, SpecError
from edgewise.planning.serving import (
    PLANNERS,
    ForecastRate,
    ReplicaOption,
    ServingPlan,
    forecast_rate,
    replica_options,
    unfit_options,
)
from edgewise.serving.profiles import MissingProfileError, StoredProfile, read_profile

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = ["ServicePlan", "native_stdout_silenced", "plan"]

Key = tuple[str, str]


@contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null for the block (HiGHS may print debug lines there).

    For callers whose stdout is data (``--json``); it affects the whole process, so the
    pure planners do not use it on their own.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@dataclass(frozen=True)
class ServicePlan:
    """The result of :func:`plan`: the chosen mix, what it was chosen from, and why.

    Attributes
    ----------
    id : int
        Id of the stored :class:`edgewise.kb.models.Plan` row.
    service : str
        The service's name.
    method : str
        ``'exact'`` or ``'heuristic'``.
    result : ServingPlan
        Replica counts per (model, flavor), cost and capacity against the rate.
    options : tuple of ReplicaOption
        Every (variant, flavor) with its capacity under the SLO and its price.
    slo_ms, percentile, min_accuracy : float
        The service's SLO and accuracy floor.
    forecast : ForecastRate, optional
        The forecast the rate came from (``None`` for a given rate).
    trace : str, optional
        The forecast trace as given.
    neighbours : tuple of str
        The declared neighbours (``host`` as observed); empty when planned alone.
    slowdowns : tuple of Slowdown
        Each variant's predicted slowdown next to them, and where it came from.
    notes : tuple of str
        Options left out of the plan (a flavor too small for the SLO), one line each.
    """

    id: int
    service: str
    method: str
    result: ServingPlan
    options: tuple[ReplicaOption, ...]
    slo_ms: float
    percentile: float
    min_accuracy: float
    forecast: ForecastRate | None = None
    trace: str | None = None
    neighbours: tuple[str, ...] = ()
    slowdowns: tuple[Slowdown, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def rate_rps(self) -> float:
        """The rate planned for (requests/s)."""
        return self.result.rate_rps

    def forecast_dict(self) -> dict[str, Any] | None:
        """The forecast's JSON form, or ``None`` for a given rate."""
        f = self.forecast
        if f is None:
            return None
        return {
            "trace": self.trace,
            "method": f.method,
            "level": f.level,
            "horizon": f.horizon,
            "peak_step": f.step,
            "rate_rps": f.rate_rps,
            "mean_peak_rps": f.mean_peak_rps,
            "rps_per_unit": f.rps_per_unit,
            "reason": f.reason(),
        }

    def as_dict(self) -> dict[str, Any]:
        """The decision's JSON form (what ``edgewise plan --json`` prints and the KB stores)."""
        out = self.result.to_dict() | {"method": self.method}
        forecast = self.forecast_dict()
        if forecast is not None:
            out["forecast"] = forecast
        if self.neighbours:
            out["neighbours"] = list(self.neighbours)
            out["slowdowns"] = [
                {"model": d.app, "slowdown": d.factor, "slowdown_source": d.origin()}
                for d in self.slowdowns
            ]
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def inputs_dict(self) -> dict[str, Any]:
        """The inputs' JSON form, as stored with the decision."""
        return {
            "service": self.service,
            "rate_rps": self.rate_rps,
            "forecast": self.trace,
            "slo_ms": self.slo_ms,
            "percentile": self.percentile,
            "min_accuracy": self.min_accuracy,
            "options": [
                {
                    "model": o.model,
                    "flavor": o.flavor,
                    "capacity_rps": o.capacity_rps,
                    "price_per_hour": o.price_per_hour,
                }
                for o in self.options
            ],
        } | ({"neighbours": list(self.neighbours)} if self.neighbours else {})


def _forecast_rate(
    trace: str,
    *,
    time_col: str | None,
    value_col: str | None,
    seasons: Sequence[int] | None,
    horizon: int | None,
    train: int | None,
    peak_rps: float | None,
    seed: int,
) -> ForecastRate:
    """Load ``trace``, forecast its next horizon, and return the rate to plan for."""
    import pandas as pd

    from edgewise.api.forecast import TRAIN_SEASONS, load_series, resolve_seasons
    from edgewise.forecast import step_seconds

    series = load_series(trace, time_col, value_col)
    lengths = resolve_seasons(series, seasons)
    h = horizon or lengths[0]
    n_train = min(len(series), train or TRAIN_SEASONS * lengths[-1])
    history = series.to_numpy(dtype=float)[-n_train:]
    if peak_rps is not None:
        top = float(np.max(history))
        if top <= 0:
            raise SpecError(f"{trace}: --peak-rps needs a trace with a positive value")
        per_unit = peak_rps / top
    else:
        per_unit = 1.0 / step_seconds(pd.DatetimeIndex(series.index))
    return forecast_rate(history, lengths, h, rps_per_unit=per_unit, seed=seed)


class RateForecast(TypedDict):
    """The keywords of :func:`_forecast_rate`, passed on by name."""

    time_col: str | None
    value_col: str | None
    seasons: Sequence[int] | None
    horizon: int | None
    train: int | None
    peak_rps: float | None
    seed: int


def _planned_rate(
    rate_rps: float | None, trace: str | None, **forecast: Unpack[RateForecast]
) -> tuple[float, ForecastRate | None]:
    """The rate to plan for: the given one, or the forecast's (exactly one of them)."""
    if (rate_rps is None) == (trace is None):
        raise SpecError("plan: give exactly one of --rate R and --forecast TRACE")
    if rate_rps is not None:
        return rate_rps, None
    assert trace is not None
    predicted = _forecast_rate(trace, **forecast)
    return predicted.rate_rps, predicted


def _read_profiles(
    kb: KnowledgeBase, svc: ServiceSpec, catalog: FlavorCatalog
) -> dict[Key, StoredProfile]:
    """The stored profile of every (variant, flavor) that has one."""
    found: dict[Key, StoredProfile] = {}
    with kb.snapshot() as s:
        for v in svc.variants:
            for f in catalog.flavors:
                prof = read_profile(s, v.model, f.name, f.cpus, batch_size=v.batch_size)
                if prof is not None:
                    found[(v.model, f.name)] = prof
    return found


def _missing_message(
    missing: list[tuple[ModelVariant, FlavorSpec]], flavors: str | Path, slo: float, pct: float
) -> str:
    by_model: dict[str, list[str]] = {}
    for v, f in missing:
        by_model.setdefault(v.model, []).append(f.name)
    what = "; ".join(f"{m} in {', '.join(fs)}" for m, fs in by_model.items())
    v0 = missing[0][0]
    batch = f" --batch-size {v0.batch_size}" if v0.batch_size != 1 else ""
    more = " (and likewise for the other models)" if len(by_model) > 1 else ""
    return (
        f"no capacity profile for {what}: measure with `edgewise capacity {v0.model} "
        f"--flavors {flavors} --slo-ms {slo:g} --percentile {pct:g}{batch}`{more}, or pass --measure"
    )


def _lone_ms(profile: StoredProfile, pct: float, slowdown: float) -> float:
    """One request's latency percentile in a profile, slowed by ``slowdown``."""
    return slowdown * float(np.percentile(profile.samples_ms, pct))


def _check_some_flavor_meets(
    svc: ServiceSpec,
    catalog: FlavorCatalog,
    profiles: Mapping[Key, StoredProfile],
    capacity: Mapping[Key, float],
    factors: Mapping[str, float],
) -> None:
    """An :class:`InfeasibleError` when no accurate enough variant meets the SLO anywhere."""
    slo, pct = svc.slo.latency_ms, svc.slo.percentile
    accurate = [v for v in svc.variants if v.accuracy >= svc.min_accuracy]
    keys = [(v.model, f.name) for v in accurate for f in catalog.flavors]
    if not keys or any(capacity[k] > 0 for k in keys):
        return
    best = min(keys, key=lambda k: _lone_ms(profiles[k], pct, factors[k[0]]))
    lone = _lone_ms(profiles[best], pct, factors[best[0]])
    beside = " next to its neighbours" if factors[best[0]] > 1.0 else ""
    raise InfeasibleError(
        f"SLO p{pct:g} <= {slo:g} ms of {svc.name} cannot be met by any flavor: a lone "
        f"request takes {lone:.1f} ms at p{pct:g}{beside} even as {best[0]} in {best[1]}"
    )


def _left_out_notes(
    svc: ServiceSpec,
    options: Sequence[ReplicaOption],
    profiles: Mapping[Key, StoredProfile],
    factors: Mapping[str, float],
) -> tuple[str, ...]:
    """One line per accurate enough option left out because its flavor is too small."""
    pct = svc.slo.percentile
    notes = []
    for o in unfit_options(options, svc.min_accuracy):
        lone = _lone_ms(profiles[o.key], pct, factors[o.model])
        beside = " next to the neighbours" if factors[o.model] > 1.0 else ""
        notes.append(
            f"flavor {o.flavor} left out for {o.model}: SLO p{pct:g} <= "
            f"{svc.slo.latency_ms:g} ms is below what one request takes there{beside} "
            f"(p{pct:g} {lone:.1f} ms)"
        )
    return tuple(notes)


def _capacities(
    store: KnowledgeBase,
    svc: ServiceSpec,
    profiles: Mapping[Key, StoredProfile],
    neighbours: Sequence[str],
    seed: int,
) -> tuple[dict[Key, float], tuple[Slowdown, ...]]:
    """Each profile's capacity under the SLO, derated next to ``neighbours`` per variant."""
    slo, pct = svc.slo.latency_ms, svc.slo.percentile
    slowdowns = (
        tuple(
            neighbour_slowdown(app=m, neighbours=neighbours, kb=store)
            for m in dict.fromkeys(v.model for v in svc.variants)
        )
        if neighbours
        else ()
    )
    factor = {d.app: d.factor for d in slowdowns}
    capacity = {
        k: (
            derated_capacity_rps(p.samples_ms, factor[k[0]], slo_ms=slo, percentile=pct, seed=seed)
            if factor.get(k[0], 1.0) > 1.0
            else p.capacity_at(slo, pct, seed)
        )
        for k, p in profiles.items()
    }
    return capacity, slowdowns


def _profiles_measuring_missing(
    kb: KnowledgeBase,
    svc: ServiceSpec,
    catalog: FlavorCatalog,
    flavors: str | Path,
    *,
    measure: bool,
    samples: int,
    seed: int,
    progress: Progress | None,
) -> dict[Key, StoredProfile]:
    """Every (variant, flavor)'s profile; the missing ones measured, or a one-line error."""
    slo, pct = svc.slo.latency_ms, svc.slo.percentile
    profiles = _read_profiles(kb, svc, catalog)
    missing = [
        (v, f) for v in svc.variants for f in catalog.flavors if (v.model, f.name) not in profiles
    ]
    if not missing:
        return profiles
    if not measure:
        raise MissingProfileError(_missing_message(missing, flavors, slo, pct))
    for v in dict.fromkeys(v for v, _ in missing):
        measure_profiles(
            v.model,
            [f for w, f in missing if w == v],
            kb=kb,
            progress=progress,
            slo_ms=slo,
            percentile=pct,
            batch_size=v.batch_size,
            samples=samples,
            seed=seed,
        )
    return _read_profiles(kb, svc, catalog)


def _options_beside(
    store: KnowledgeBase,
    svc: ServiceSpec,
    catalog: FlavorCatalog,
    profiles: Mapping[Key, StoredProfile],
    neighbours: Sequence[str],
    seed: int,
) -> tuple[list[ReplicaOption], tuple[Slowdown, ...], tuple[str, ...]]:
    """The replica options next to ``neighbours``, their slowdowns and what was left out.

    An :class:`InfeasibleError` when no accurate enough option meets the SLO there.
    """
    capacity, slowdowns = _capacities(store, svc, profiles, neighbours, seed)
    factors = {v.model: 1.0 for v in svc.variants} | {d.app: d.factor for d in slowdowns}
    _check_some_flavor_meets(svc, catalog, profiles, capacity, factors)
    options = replica_options(svc, catalog, capacity)
    return options, slowdowns, _left_out_notes(svc, options, profiles, factors)


def plan(
    *,
    service: str | Path,
    flavors: str | Path,
    rate_rps: float | None = None,
    forecast: str | None = None,
    time_col: str | None = None,
    value_col: str | None = None,
    seasons: Sequence[int] | None = None,
    horizon: int | None = None,
    train: int | None = None,
    peak_rps: float | None = None,
    exact: bool = True,
    measure: bool = False,
    samples: int = 200,
    seed: int = 0,
    neighbours: Sequence[str] | None = None,
    kb: str | None = None,
    progress: Progress | None = None,
) -> ServicePlan:
    """Cheapest mix of model variants, flavors and replica counts that serves the rate.

    Parameters
    ----------
    service, flavors : str or Path
        Service YAML (variants, accuracy floor, SLO) and flavors YAML files.
    rate_rps : float, optional
        Request rate to serve. Give exactly one of ``rate_rps`` and ``forecast``.
    forecast, time_col, value_col : str, optional
        Forecast this trace (``'bikeshare'`` or a CSV with these columns) and plan for
        the peak of the upper 90% bound over ``horizon``.
    seasons, horizon, train
        Season lengths in steps (default: inferred from the trace's step); steps to
        cover (default: one shortest season); fit on the last ``train`` steps (default:
        eight longest seasons).
    peak_rps : float, optional
        Scale the trace so its past peak is this many requests/s (default: requests/step).
    exact, measure, samples, seed
        The integer program or the Barista heuristic; measure missing profiles
        (``samples`` service times each) instead of raising :class:`MissingProfileError`;
        seed of the capacity simulation and forecaster.
    neighbours : sequence of str, optional
        Workloads beside every replica (``host``, ``stress:RES=V,...``, ``MODEL``,
        ``MODEL@RATErps``; default: the service spec's ``neighbours:``): each variant's
        capacity is derated by its predicted slowdown next to them (solo, with a note,
        where the knowledge base has no interference model for it).
    kb : str, optional
        Knowledge-base URL (default: the file under the state directory).
    progress : callable, optional
        ``progress("MODEL/FLAVOR/STEP", done, total)`` while measuring.

    Returns
    -------
    ServicePlan
        The decision, stored in the knowledge base. The solver runs with file
        descriptor 1 sent to /dev/null (:func:`native_stdout_silenced`).
    """
    from edgewise.kb import KnowledgeBase

    svc = _load_service(service)
    catalog = _load_flavors(flavors)
    near = observed(svc.neighbours if neighbours is None else neighbours)
    rate, predicted = _planned_rate(
        rate_rps,
        forecast,
        time_col=time_col,
        value_col=value_col,
        seasons=seasons,
        horizon=horizon,
        train=train,
        peak_rps=peak_rps,
        seed=seed,
    )
    store = KnowledgeBase.open(kb)
    profiles = _profiles_measuring_missing(
        store, svc, catalog, flavors, measure=measure, samples=samples, seed=seed, progress=progress
    )
    options, slowdowns, notes = _options_beside(store, svc, catalog, profiles, near, seed)
    method = "exact" if exact else "heuristic"
    with native_stdout_silenced():
        result = PLANNERS[method](options, rate, svc.min_accuracy)
    decided = ServicePlan(
        id=0,
        service=svc.name,
        method=method,
        result=result,
        options=tuple(options),
        slo_ms=svc.slo.latency_ms,
        percentile=svc.slo.percentile,
        min_accuracy=svc.min_accuracy,
        forecast=predicted,
        trace=forecast,
        neighbours=near,
        slowdowns=slowdowns,
        notes=notes,
    )
    return _store_plan(store, decided)


def _store_plan(kb: KnowledgeBase, decided: ServicePlan) -> ServicePlan:
    """Store the decision with its inputs as a Plan row; the plan with the row's id."""
    from edgewise.kb import models as m

    row = m.Plan(
        kind="serving",
        inputs=decided.inputs_dict(),
        decision=decided.as_dict(),
        cost=decided.result.cost_per_hour,
    )
    with kb.transaction() as s:
        s.add(row)
        s.flush()
        plan_id = int(row.id)
    return replace(decided, id=plan_id)
