"""``edgewise capacity`` and ``edgewise plan``: per-flavor capacity, cheapest serving mix.

``capacity`` measures a model's service times in each flavor (a real cgroup with the
flavor's CPU quota), derives each flavor's capacity under the SLO and stores it in the
knowledge base; ``--validate`` checks the model against an open-loop load test.
``plan`` reads those profiles for every (variant, flavor) of a service and prints the
cheapest replica mix for a rate. The commands are thin: the measurement lives in
:mod:`edgewise.serving.profiles`, the decision in :mod:`edgewise.planning.serving`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgewise.config import FlavorSpec, load_flavors, load_service
from edgewise.errors import InfeasibleError, SpecError
from edgewise.planning.serving import (
    PLANNERS,
    ForecastRate,
    forecast_rate,
    native_stdout_silenced,
    replica_options,
)
from edgewise.serving.profiles import (
    DRIFT_TOLERANCE,
    FlavorProfile,
    MissingProfileError,
    find_profile,
    profile_capacity,
    profile_flavor,
    save_profile,
)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _measure(
    model: str,
    flavors: list[FlavorSpec],
    console: Console,
    **kwargs: Any,
) -> list[FlavorProfile]:
    """Profile ``model`` in each flavor with a progress bar."""
    samples = int(kwargs.get("samples", 200))
    out: list[FlavorProfile] = []
    with _progress(console) as bar:
        for flavor in flavors:
            task = bar.add_task(f"{model} in {flavor.name}: starting", total=samples)

            def report(
                phase: str, done: int, total: int, task: Any = task, f: str = flavor.name
            ) -> None:
                label = {"start": "starting", "service": "service times", "validate": "load test"}
                bar.update(task, description=f"{model} in {f}: {label.get(phase, phase)}")
                if phase == "service":
                    bar.update(task, completed=done, total=total)

            out.append(profile_flavor(model, flavor, progress=report, **kwargs))
            bar.update(task, completed=samples)
    return out


def _capacity_table(model: str, profiles: list[FlavorProfile], percentile: float) -> Table:
    p = f"p{percentile:g}"
    table = Table(title=f"{model}: capacity per flavor (SLO {p} ≤ {profiles[0].slo_ms:g} ms)")
    for col in ("flavor", "cpus", "threads", "samples", "p50 ms", "p99 ms", "capacity rps"):
        table.add_column(col, justify="left" if col == "flavor" else "right")
    table.add_column(f"load test {p} meas/pred ms", justify="right")
    table.add_column("error", justify="right")
    for prof in profiles:
        s = prof.service_summary(keep_samples=False)
        v = prof.validation
        check = f"{v['measured_ms']:.1f} / {v['predicted_ms']:.1f}" if v else "-"
        err = f"{100 * v['rel_error']:+.1f}%" if v else "-"
        if v.get("reprofiled"):
            err += f" (re-profiled {v['reprofiled']}x after drift)"
        if v and not v.get("conclusive", True):
            err += f" (inconclusive: {v['requests']} requests, {v['requests_needed']} needed)"
        table.add_row(
            prof.flavor,
            f"{prof.cpus:g}",
            str(prof.threads),
            str(s["n"]),
            f"{s['p50']:.2f}",
            f"{s['p99']:.2f}",
            f"{prof.capacity_rps:.2f}",
            check,
            err,
        )
    return table


def _no_flavor_meets(model: str, profiles: list[FlavorProfile], slo_ms: float, pct: float) -> str:
    best = min(profiles, key=lambda p: float(np.percentile(p.service_ms, pct)))
    lone = float(np.percentile(best.service_ms, pct))
    return (
        f"SLO p{pct:g} <= {slo_ms:g} ms cannot be met by {model} in any flavor: a lone "
        f"request takes {lone:.1f} ms at p{pct:g} even in {best.flavor}"
    )


def capacity(
    model: Annotated[str, typer.Argument(help="zoo model name (see `edgewise models`)")],
    flavors: Annotated[Path, typer.Option(help="flavors YAML file")],
    slo_ms: Annotated[float, typer.Option(min=0.001, help="latency bound (ms)")],
    percentile: Annotated[float, typer.Option(min=0.1, max=100.0, help="SLO percentile")] = 99.0,
    batch_size: Annotated[int, typer.Option(min=1, help="samples per request")] = 1,
    samples: Annotated[int, typer.Option(min=30, help="service-time samples per flavor")] = 200,
    time_budget_s: Annotated[
        float, typer.Option(min=1.0, help="stop sampling a flavor after this (>= 30 samples)")
    ] = 120.0,
    validate: Annotated[
        bool, typer.Option("--validate", help="open-loop load test at --load-fraction")
    ] = False,
    load_fraction: Annotated[float, typer.Option(min=0.05, max=0.99)] = 0.8,
    validate_requests: Annotated[
        int | None,
        typer.Option(
            min=50,
            help="requests of the load test (default: enough for the percentile, 556 for p99)",
        ),
    ] = None,
    validate_max_s: Annotated[float, typer.Option(min=1.0, help="longest load test (s)")] = 600.0,
    max_reprofiles: Annotated[
        int,
        typer.Option(
            min=0,
            help="re-profile and re-test a flavor at most this often when the load test's "
            "mean service time drifted more than --drift-tolerance from the profile's",
        ),
    ] = 2,
    drift_tolerance: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="relative change of the mean service time between profile and load test "
            "that counts as the host having changed under the profile",
        ),
    ] = DRIFT_TOLERANCE,
    service_load: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.95,
            help="load (share of saturation) of the Poisson requests whose service times are "
            "sampled; 0 samples back-to-back bursts",
        ),
    ] = 0.5,
    flavor: Annotated[
        list[str] | None, typer.Option("--flavor", help="only these flavors (repeatable)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of weights, simulation and arrivals")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Measure MODEL's service times per flavor and derive each flavor's capacity under the SLO."""
    from edgewise.kb import KnowledgeBase
    from edgewise.workloads.zoo import check_model_name

    check_model_name(model)
    catalog = load_flavors(flavors)
    chosen = list(catalog.flavors)
    if flavor:
        known = {f.name for f in chosen}
        unknown = [f for f in flavor if f not in known]
        if unknown:
            raise SpecError(
                f"{flavors}: no flavor named {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        chosen = [f for f in chosen if f.name in set(flavor)]
    console = Console(stderr=as_json)
    kb = KnowledgeBase.open()
    profiles = _measure(
        model,
        chosen,
        console,
        slo_ms=slo_ms,
        percentile=percentile,
        batch_size=batch_size,
        samples=samples,
        time_budget_s=time_budget_s,
        validate=validate,
        load_fraction=load_fraction,
        validate_requests=validate_requests,
        validate_max_s=validate_max_s,
        max_reprofiles=max_reprofiles,
        drift_tolerance=drift_tolerance,
        service_load=service_load or None,
        seed=seed,
    )
    ids = [save_profile(kb, p) for p in profiles]
    if as_json:
        rows = [
            {
                "id": i,
                "model": p.model,
                "flavor": p.flavor,
                "cpus": p.cpus,
                "service_ms": p.service_summary(keep_samples=False),
                "capacity_rps": p.capacity_rps,
                "validation": p.validation,
            }
            for i, p in zip(ids, profiles, strict=True)
        ]
        typer.echo(
            json.dumps(
                {"model": model, "slo_ms": slo_ms, "percentile": percentile, "flavors": rows}
            )
        )
    else:
        console.print(_capacity_table(model, profiles, percentile))
        if not all(p.isolated for p in profiles):
            console.print("note: cgroups not writable; CPU quotas were approximated by affinity")
    if all(p.capacity_rps <= 0 for p in profiles):
        raise InfeasibleError(_no_flavor_meets(model, profiles, slo_ms, percentile))


def plan(
    service: Annotated[Path, typer.Option(help="service YAML file")],
    flavors: Annotated[Path, typer.Option(help="flavors YAML file")],
    rate: Annotated[
        float | None, typer.Option(min=0.0, help="request rate to serve (requests/s)")
    ] = None,
    forecast: Annotated[
        str | None,
        typer.Option(
            help="instead of --rate: forecast this trace ('bikeshare' or a CSV) and plan for "
            "the peak of the upper 90% bound over --horizon",
        ),
    ] = None,
    time_col: Annotated[str | None, typer.Option(help="time column of the trace CSV")] = None,
    value_col: Annotated[str | None, typer.Option(help="value column of the trace CSV")] = None,
    season: Annotated[
        str | None, typer.Option(help="season lengths in steps, e.g. 24,168 (default: inferred)")
    ] = None,
    horizon: Annotated[
        int | None, typer.Option(min=1, help="steps to cover (default: one shortest season)")
    ] = None,
    train: Annotated[
        int | None, typer.Option(min=2, help="fit on the last N steps (default: 8 seasons)")
    ] = None,
    peak_rps: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="scale the trace so its past peak is this many requests/s "
            "(default: values are requests per step)",
        ),
    ] = None,
    exact: Annotated[
        bool, typer.Option("--exact/--heuristic", help="integer program or Barista heuristic")
    ] = True,
    measure: Annotated[
        bool,
        typer.Option(
            "--measure/--capacity-from-kb",
            help="measure missing capacity profiles, or only use those in the knowledge base",
        ),
    ] = False,
    samples: Annotated[int, typer.Option(min=30, help="samples when measuring")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the capacity simulation")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Cheapest mix of model variants, flavors and replica counts that serves RATE under the SLO."""
    from edgewise.kb import KnowledgeBase
    from edgewise.kb import models as m

    svc = load_service(service)
    catalog = load_flavors(flavors)
    slo, pct = svc.slo.latency_ms, svc.slo.percentile
    console = Console(stderr=as_json)
    predicted = None
    if (rate is None) == (forecast is None):
        raise SpecError("plan: give exactly one of --rate R and --forecast TRACE")
    if forecast is not None:
        predicted = _forecast_rate(
            forecast, time_col, value_col, season, horizon, train, peak_rps, seed
        )
        rate = predicted.rate_rps
        console.print(predicted.reason())
    assert rate is not None
    kb = KnowledgeBase.open()

    def lookup() -> tuple[dict[tuple[str, str], np.ndarray], dict[tuple[str, str], float]]:
        samples_by: dict[tuple[str, str], np.ndarray] = {}
        capacity_by: dict[tuple[str, str], float] = {}
        with kb.snapshot() as s:
            for v in svc.variants:
                for f in catalog.flavors:
                    row = find_profile(s, v.model, f.name, f.cpus, v.batch_size)
                    if row is None:
                        continue
                    key = (v.model, f.name)
                    samples_by[key] = np.asarray(row.service_ms["samples"], dtype=float)
                    capacity_by[key] = profile_capacity(row, slo, pct, seed)
        return samples_by, capacity_by

    samples_by, capacity_by = lookup()
    missing = [
        (v, f) for v in svc.variants for f in catalog.flavors if (v.model, f.name) not in samples_by
    ]
    if missing and not measure:
        raise MissingProfileError(_missing_message(missing, flavors, slo, pct))
    for v in dict.fromkeys(v for v, _ in missing):
        todo = [f for w, f in missing if w == v]
        for prof in _measure(
            v.model,
            todo,
            console,
            slo_ms=slo,
            percentile=pct,
            batch_size=v.batch_size,
            samples=samples,
            seed=seed,
        ):
            save_profile(kb, prof)
    if missing:
        samples_by, capacity_by = lookup()

    accurate = [v for v in svc.variants if v.accuracy >= svc.min_accuracy]
    keys = [(v.model, f.name) for v in accurate for f in catalog.flavors]
    if keys and all(capacity_by[k] <= 0 for k in keys):
        best = min(keys, key=lambda k: float(np.percentile(samples_by[k], pct)))
        lone = float(np.percentile(samples_by[best], pct))
        raise InfeasibleError(
            f"SLO p{pct:g} <= {slo:g} ms of {svc.name} cannot be met by any flavor: a lone "
            f"request takes {lone:.1f} ms at p{pct:g} even as {best[0]} in {best[1]}"
        )
    options = replica_options(svc, catalog, capacity_by)
    method = "exact" if exact else "heuristic"
    with native_stdout_silenced():
        result = PLANNERS[method](options, rate, svc.min_accuracy)
    decision = result.to_dict() | {"method": method}
    if predicted is not None:
        decision["forecast"] = _forecast_json(predicted, forecast)
    inputs = {
        "service": svc.name,
        "rate_rps": rate,
        "forecast": forecast,
        "slo_ms": slo,
        "percentile": pct,
        "min_accuracy": svc.min_accuracy,
        "options": [
            {
                "model": o.model,
                "flavor": o.flavor,
                "capacity_rps": o.capacity_rps,
                "price_per_hour": o.price_per_hour,
            }
            for o in options
        ],
    }
    with kb.transaction() as s:
        s.add(m.Plan(kind="serving", inputs=inputs, decision=decision, cost=result.cost_per_hour))
    if as_json:
        typer.echo(json.dumps(decision))
        return
    by_key = {o.key: o for o in options}
    table = Table(title=f"{svc.name}: {method} plan for {rate:g} rps (SLO p{pct:g} ≤ {slo:g} ms)")
    for col in ("model", "flavor", "replicas", "rps each", "$/h each", "$/h"):
        table.add_column(col, justify="left" if col in ("model", "flavor") else "right")
    for (model, fl), n in sorted(result.counts.items()):
        o = by_key[(model, fl)]
        table.add_row(
            model,
            fl,
            str(n),
            f"{o.capacity_rps:.2f}",
            f"{o.price_per_hour:g}",
            f"{n * o.price_per_hour:.4f}",
        )
    console.print(table)
    headroom = "n/a" if math.isinf(result.headroom) else f"{100 * result.headroom:.1f}%"
    console.print(
        f"cost per hour: {result.cost_per_hour:.4f}   capacity: {result.capacity_rps:.2f} rps   "
        f"replicas: {result.replicas}   headroom: {headroom}"
    )


def _forecast_rate(
    trace: str,
    time_col: str | None,
    value_col: str | None,
    season: str | None,
    horizon: int | None,
    train: int | None,
    peak_rps: float | None,
    seed: int,
) -> ForecastRate:
    """Load ``trace``, forecast its next horizon, and return the rate to plan for."""
    import pandas as pd

    from edgewise.bench.forecast import load_series, resolve_seasons
    from edgewise.cli.forecast import TRAIN_SEASONS, parse_seasons
    from edgewise.forecast.frequency import step_seconds

    series = load_series(trace, time_col, value_col)
    seasons = resolve_seasons(series, parse_seasons(season))
    h = horizon or seasons[0]
    n_train = min(len(series), train or TRAIN_SEASONS * seasons[-1])
    history = series.to_numpy(dtype=float)[-n_train:]
    if peak_rps is not None:
        top = float(np.max(history))
        if top <= 0:
            raise SpecError(f"{trace}: --peak-rps needs a trace with a positive value")
        per_unit = peak_rps / top
    else:
        per_unit = 1.0 / step_seconds(pd.DatetimeIndex(series.index))
    return forecast_rate(history, seasons, h, rps_per_unit=per_unit, seed=seed)


def _forecast_json(f: ForecastRate, trace: str | None) -> dict[str, Any]:
    return {
        "trace": trace,
        "method": f.method,
        "level": f.level,
        "horizon": f.horizon,
        "peak_step": f.step,
        "rate_rps": f.rate_rps,
        "mean_peak_rps": f.mean_peak_rps,
        "rps_per_unit": f.rps_per_unit,
        "reason": f.reason(),
    }


def _missing_message(missing: list[Any], flavors: Path, slo: float, pct: float) -> str:
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


def register(app: typer.Typer) -> None:
    """Add ``capacity`` and ``plan`` to the edgewise CLI."""
    app.command("capacity")(capacity)
    app.command("plan")(plan)
