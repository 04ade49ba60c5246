"""``edgewise capacity`` and ``edgewise plan``: per-flavor capacity, cheapest serving mix.

``capacity`` measures a model's service times in each flavor (a real cgroup with the
flavor's CPU quota), derives each flavor's capacity under the SLO and stores it in the
knowledge base; ``--validate`` checks the model against an open-loop load test.
``plan`` reads those profiles for every (variant, flavor) of a service and prints the
cheapest replica mix for a rate. Both take declared neighbours (``--with``, or a service
spec's ``neighbours:``) and then print the predicted slowdown they derated capacity by
and where it came from. The commands parse their options, call
:func:`edgewise.api.capacity.capacity` and :func:`edgewise.api.plan.plan`, and render.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from edgewise.api.capacity import CapacityReport
from edgewise.api.capacity import capacity as capacity_use_case
from edgewise.api.colocation import Slowdown
from edgewise.api.plan import ServicePlan
from edgewise.api.plan import plan as plan_use_case
from edgewise.errors import InfeasibleError
from edgewise.serving.profiles import DRIFT_TOLERANCE

#: Help of ``--with`` (capacity and plan).
_WITH_HELP = (
    "a workload beside every replica: host (its observed utilisation), stress:RES=V,..., "
    "MODEL or MODEL@RATErps; repeatable. Capacity is derated by the slowdown the knowledge "
    "base's interference model predicts next to them"
)

#: What each measuring step is called on the progress bar.
_STEP_LABELS = {"start": "starting", "service": "service times", "validate": "load test"}


class _MeasureBar:
    """A rich progress bar with one line per (model, flavor) measured.

    Called as the api's ``progress("MODEL/FLAVOR/STEP", done, total)``; the bar shows
    only once something is measured, and goes away when the ``with`` block ends.
    """

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _MeasureBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tasks:
            self._bar.stop()

    def __call__(self, phase: str, done: int, total: int) -> None:
        model, flavor, step = phase.rsplit("/", 2)
        key = f"{model}/{flavor}"
        if not self._tasks:
            self._bar.start()
        if key not in self._tasks:
            self._tasks[key] = self._bar.add_task(f"{model} in {flavor}: starting", total=total)
        task = self._tasks[key]
        if step == "done":
            self._bar.update(task, completed=total)
            return
        label = _STEP_LABELS.get(step, step)
        self._bar.update(task, description=f"{model} in {flavor}: {label}")
        if step == "service":
            self._bar.update(task, completed=done, total=total)


def _capacity_table(report: CapacityReport) -> Table:
    p = f"p{report.percentile:g}"
    table = Table(title=f"{report.model}: capacity per flavor (SLO {p} ≤ {report.slo_ms:g} ms)")
    for col in ("flavor", "cpus", "threads", "samples", "p50 ms", "p99 ms", "capacity rps"):
        table.add_column(col, justify="left" if col == "flavor" else "right")
    beside = report.slowdown is not None
    if beside:
        table.add_column("beside neighbours rps", justify="right")
    table.add_column(f"load test {p} meas/pred ms", justify="right")
    table.add_column("error", justify="right")
    for i, saved in enumerate(report.profiles):
        prof = saved.profile
        s = prof.summary()
        v = prof.validation
        check, err = "-", "-"
        if v is not None:
            check = f"{v.test.measured_ms:.1f} / {v.test.predicted_ms:.1f}"
            err = f"{100 * v.test.rel_error:+.1f}%"
            if v.reprofiled:
                err += f" (re-profiled {v.reprofiled}x after drift)"
            if not v.test.conclusive:
                err += (
                    f" (inconclusive: {v.test.requests} requests, {v.test.requests_needed} needed)"
                )
        table.add_row(
            prof.flavor,
            f"{prof.cpus:g}",
            str(prof.threads),
            str(s.n),
            f"{s.p50:.2f}",
            f"{s.p99:.2f}",
            f"{prof.capacity_rps:.2f}",
            *([f"{report.capacity_rps(i):.2f}"] if beside else []),
            check,
            err,
        )
    return table


def slowdown_line(slowdown: Slowdown) -> str:
    """One line: the predicted slowdown of an app next to its neighbours, and its origin."""
    near = ", ".join(slowdown.neighbours) or "its neighbours"
    return f"predicted slowdown of {slowdown.app} next to {near}: x{slowdown.factor:.2f} ({slowdown.origin()})"


def capacity(
    model: Annotated[
        str,
        typer.Argument(help="zoo model, registered NAME[:vN] or model file (`edgewise models`)"),
    ],
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
    neighbours: Annotated[list[str] | None, typer.Option("--with", help=_WITH_HELP)] = None,
    seed: Annotated[int, typer.Option(help="seed of weights, simulation and arrivals")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Measure MODEL's service times per flavor and derive each flavor's capacity under the SLO."""
    console = Console(stderr=as_json)
    with _MeasureBar(console) as bar:
        report = capacity_use_case(
            model=model,
            flavors=flavors,
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
            service_load=service_load,
            only_flavors=flavor,
            neighbours=neighbours or (),
            seed=seed,
            progress=bar,
        )
    if report.slowdown is not None and not as_json:  # with --json: in the JSON
        console.print(slowdown_line(report.slowdown), soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        console.print(_capacity_table(report))
        if not report.isolated:
            console.print("note: cgroups not writable; CPU quotas were approximated by affinity")
    reason = report.no_flavor_meets()
    if reason is not None:
        raise InfeasibleError(reason)


_FLEET_HELP = (
    "instead of --service/--flavors: a fleet spec (services sharing nodes); place every "
    "replica with the knowledge base's interference models, next to Ray's spread and "
    "first-fit packing, at each service's peak rate"
)


def plan(
    service: Annotated[Path | None, typer.Option(help="service YAML file")] = None,
    flavors: Annotated[Path | None, typer.Option(help="flavors YAML file")] = None,
    fleet: Annotated[Path | None, typer.Option(dir_okay=False, help=_FLEET_HELP)] = None,
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
    neighbours: Annotated[
        list[str] | None,
        typer.Option("--with", help=_WITH_HELP + " (default: the service spec's neighbours:)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the capacity simulation")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Cheapest mix of model variants, flavors and replica counts that serves RATE under the SLO."""
    from edgewise.cli.forecast import parse_seasons

    if fleet is not None:
        _plan_fleet(fleet, as_json)
        return
    if service is None or flavors is None:
        raise typer.BadParameter("give --service and --flavors, or --fleet")
    console = Console(stderr=as_json)
    with _MeasureBar(console) as bar:
        decided = plan_use_case(
            service=service,
            flavors=flavors,
            rate_rps=rate,
            forecast=forecast,
            time_col=time_col,
            value_col=value_col,
            seasons=parse_seasons(season) if forecast is not None else None,
            horizon=horizon,
            train=train,
            peak_rps=peak_rps,
            exact=exact,
            measure=measure,
            samples=samples,
            neighbours=neighbours or None,
            seed=seed,
            progress=bar,
        )
    if decided.forecast is not None:
        console.print(decided.forecast.reason())
    if not as_json:  # with --json: in the JSON
        for slowdown in decided.slowdowns:
            console.print(slowdown_line(slowdown), soft_wrap=True)
        for note in decided.notes:
            console.print(f"note: {note}", soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(decided.as_dict()))
        return
    console.print(_plan_table(decided))
    result = decided.result
    headroom = "n/a" if math.isinf(result.headroom) else f"{100 * result.headroom:.1f}%"
    console.print(
        f"cost per hour: {result.cost_per_hour:.4f}   capacity: {result.capacity_rps:.2f} rps   "
        f"replicas: {result.replicas}   headroom: {headroom}"
    )


def _plan_fleet(fleet: Path, as_json: bool) -> None:
    """``plan --fleet``: every policy's placement of the fleet at its services' peak rates."""
    from edgewise.api.fleet import plan_fleet_spec

    out = plan_fleet_spec(fleet=fleet).as_dict()
    if as_json:
        typer.echo(json.dumps(out))
        return
    console = Console()
    for name, entry in out["policies"].items():
        table = Table(
            title=f"{name}: {entry['nodes_used']} nodes, cost per hour {entry['cost_per_hour']:.4f}"
        )
        for col in ("node", "service", "model", "flavor", "slowdown", "from"):
            table.add_column(col)
        for node, replicas in entry["nodes"].items():
            for r in replicas:
                table.add_row(
                    node,
                    r["service"],
                    r["model"],
                    r["flavor"],
                    f"x{r['slowdown']:.3f}",
                    r["source"],
                )
        console.print(table)
        for item in entry["unplaced"]:
            console.print(f"unplaced: a {item['flavor']} replica of {item['service']}")
        for note in entry["notes"]:
            console.print(f"note: {note}", soft_wrap=True)


def _plan_table(decided: ServicePlan) -> Table:
    by_key = {o.key: o for o in decided.options}
    title = (
        f"{decided.service}: {decided.method} plan for {decided.rate_rps:g} rps "
        f"(SLO p{decided.percentile:g} ≤ {decided.slo_ms:g} ms)"
    )
    table = Table(title=title)
    for col in ("model", "flavor", "replicas", "rps each", "$/h each", "$/h"):
        table.add_column(col, justify="left" if col in ("model", "flavor") else "right")
    for (model, fl), n in sorted(decided.result.counts.items()):
        o = by_key[(model, fl)]
        table.add_row(
            model,
            fl,
            str(n),
            f"{o.capacity_rps:.2f}",
            f"{o.price_per_hour:g}",
            f"{n * o.price_per_hour:.4f}",
        )
    return table


def register(app: typer.Typer) -> None:
    """Add ``capacity`` and ``plan`` to the edgewise CLI."""
    app.command("capacity")(capacity)
    app.command("plan")(plan)
