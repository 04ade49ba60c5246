"""``edgewise serve`` and ``edgewise replay``: the live serve pillar on Ray Serve.

Both parse their options, call :mod:`edgewise.api.serve` or :mod:`edgewise.api.replay`
(:mod:`edgewise.api.replay_pool` for a service spec's pool of flavors and variants) and
render what comes back; the signals that stop ``serve`` are caught here.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from edgewise.api.replay_pool import PoolReplayOutcome
    from edgewise.serving.replay import ReplayResult

__all__ = ["register", "replay", "serve"]

console = Console(stderr=True)


def serve(
    service: Path | None = typer.Argument(
        None, help="Service YAML (model variants and SLO); not with --fleet."
    ),
    flavors: Path | None = typer.Option(None, help="Flavors YAML (default: a 0.5-CPU flavor)."),
    flavor: str | None = typer.Option(None, help="Flavor to run replicas in (default: smallest)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind the HTTP proxy to."),
    port: int = typer.Option(8000, help="HTTP port (0: any free one, named when serving)."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: local Ray)."),
    policy: str = typer.Option("edgewise", help="Autoscaling policy."),
    seconds: float = typer.Option(0.0, help="Stop after this long (0: until Ctrl-C)."),
    measure: bool = typer.Option(True, help="Measure a missing capacity profile now."),
    ingress: str = typer.Option(
        "proxy",
        help="'proxy' (Ray Serve's HTTP proxy, on --host) or 'haproxy' (HAProxy straight to "
        "the replicas, whose ports follow --host: less latency and CPU, but Ray 2.60 binds "
        "HAProxy's stats and metrics ports on all interfaces).",
    ),
    neighbours: list[str] = typer.Option(
        [],
        "--with",
        help="A workload beside every replica: host (its observed utilisation), "
        "stress:RES=V,..., MODEL or MODEL@RATErps; repeatable (default: the service spec's "
        "neighbours:). The capacity is derated by the slowdown the knowledge base predicts.",
    ),
    fleet: Path | None = typer.Option(
        None,
        dir_okay=False,
        help="instead of SERVICE: a fleet spec. Every service is served at /SERVICE/predict, "
        "its replicas placed on the spec's nodes (emulated by this host's CPUs) by the "
        "interference-aware planner, re-planned every --window-s at the observed rates.",
    ),
    kb: str | None = typer.Option(None, help="Knowledge-base URL (with --fleet)."),
    window_s: float = typer.Option(30.0, min=5.0, help="Seconds per re-plan (with --fleet)."),
    probe: bool = typer.Option(
        True,
        help="With --fleet: plan with service times probed through the live HTTP path "
        "first (about 10 s per model and flavor), not the knowledge base's profiles.",
    ),
) -> None:
    """Serve the service's model on Ray Serve behind HTTP, autoscaled to its SLO.

    Routes: POST /predict (PNG/JPEG, .npy tensor, or JSON text), GET /healthz, GET /metrics.
    """
    from edgewise.api.serve import ServingStarted
    from edgewise.api.serve import serve as serve_service

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if fleet is not None:
        if service is not None:
            raise typer.BadParameter("give SERVICE or --fleet, not both")
        _serve_fleet(fleet, kb, window_s, seconds, probe, stop)
        return
    if service is None:
        raise typer.BadParameter("give SERVICE (a service YAML) or --fleet")

    def ready(s: ServingStarted) -> None:
        for note in s.notes:
            console.print(f"note: {note}", soft_wrap=True)
        if s.capacity_alone_rps is not None:
            console.print(
                f"predicted slowdown of {s.model} next to {', '.join(s.neighbours) or 'them'}: "
                f"x{s.slowdown:.2f} ({s.slowdown_source}); capacity per replica "
                f"{s.capacity_alone_rps:.1f} rps alone, {s.capacity_rps:.1f} beside them",
                soft_wrap=True,
            )
        console.print(
            f"serving {s.model} for {s.service!r} at {s.url} "
            f"(SLO p{s.slo_percentile:g} <= {s.slo_ms:g} ms, flavor {s.flavor}, "
            f"capacity {s.capacity_rps:.1f} rps/replica, policy {s.policy}); Ctrl-C stops"
        )

    serve_service(
        service=service,
        flavors=flavors,
        flavor=flavor,
        host=host,
        port=port,
        address=address,
        policy=policy,
        seconds=seconds,
        measure=measure,
        ingress=ingress,
        neighbours=neighbours or None,
        stop=stop,
        on_ready=ready,
    )


def _serve_fleet(
    fleet: Path,
    kb: str | None,
    window_s: float,
    seconds: float,
    probe: bool,
    stop: threading.Event,
) -> None:
    """``serve --fleet``: every service of the fleet, placed and re-planned live."""
    from edgewise.api.fleet_live import FleetRuntime, serve_fleet
    from edgewise.planning.fleet import FleetPlan

    def placed(plan: FleetPlan) -> str:
        return "; ".join(
            f"{node}: " + ", ".join(f"{r['service']}/{r['flavor']}" for r in reps)
            for node, reps in plan.as_dict()["nodes"].items()
        )

    def started(runtime: FleetRuntime, plan: FleetPlan) -> None:
        for what, source in runtime.fleet.setup.profile_sources.items():
            if "/" in what:  # a (model, flavor) probed now
                console.print(f"service times of {what}: {source}", soft_wrap=True)
        for name in runtime.runtimes:
            console.print(f"serving {name!r} ({runtime.models[name]}) at {runtime.url(name)}")
        for note in plan.notes:
            console.print(f"note: {note}", soft_wrap=True)
        console.print(f"placed: {placed(plan)}; Ctrl-C stops", soft_wrap=True)

    def replanned(plan: FleetPlan | None, why: str | None) -> None:
        if plan is None:
            console.print(f"note: {why}", soft_wrap=True)
            return
        rates = ", ".join(f"{k} {v:.1f} rps" for k, v in plan.rates_rps.items())
        console.print(f"re-planned at {rates}: {placed(plan)}", soft_wrap=True)

    serve_fleet(
        fleet=fleet,
        kb=kb,
        window_s=window_s,
        probe=probe,
        duration_s=seconds or None,
        stop=stop,
        started=started,
        replanned=replanned,
    )


def replay(
    trace: str = typer.Option("bikeshare", help="'bikeshare' or a CSV path."),
    time_col: str | None = typer.Option(None, help="Time column of a CSV trace."),
    value_col: str | None = typer.Option(None, help="Value column of a CSV trace."),
    start: str | None = typer.Option(None, help="Start of the segment (default: last H hours)."),
    hours: float = typer.Option(12.0, help="Trace hours to replay."),
    speedup: float = typer.Option(120.0, help="Trace seconds per wall second."),
    policy: str = typer.Option("edgewise", help="Policy, or several comma-separated."),
    slo_ms: float | None = typer.Option(None, help="Latency SLO in ms (default: 150)."),
    percentile: float | None = typer.Option(None, help="SLO percentile (default: 99)."),
    model: str | None = typer.Option(None, help="Zoo model to serve (default: mobilenet_v2)."),
    service: Path | None = typer.Option(
        None,
        help="Service YAML instead of --model/--slo-ms/--percentile: its model variants "
        "(chosen under min_accuracy) in every flavor of --flavors that meets its SLO, "
        "compared with the simulator decision by decision.",
    ),
    flavors: Path | None = typer.Option(None, help="Flavors YAML."),
    flavor: str | None = typer.Option(None, help="Flavor name (default: smallest)."),
    peak_rps: float | None = typer.Option(None, help="Scale the trace to this peak rate."),
    port: int = typer.Option(8000, help="HTTP port of the deployment (0: any free one)."),
    seed: int = typer.Option(0, help="Seed of the arrivals."),
    plot: Path = typer.Option(Path("replay.png"), help="Where to write the plot."),
    ingress: str = typer.Option("proxy", help="'proxy' (Ray Serve's) or 'haproxy'."),
    neighbours: list[str] = typer.Option(
        [],
        "--with",
        help="A workload beside every replica (stress:cpu=0.5, model@RATErps); repeatable. "
        "The capacity is derated by the slowdown the knowledge base predicts next to them.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Replay a compressed trace segment against the live system, one run per policy."""
    from edgewise.errors import SpecError
    from edgewise.serving.runtime import stdout_to_stderr

    common: dict[str, Any] = {
        "trace": trace,
        "time_col": time_col,
        "value_col": value_col,
        "start": start,
        "hours": hours,
        "speedup": speedup,
        "policies": [p.strip() for p in policy.split(",") if p.strip()],
        "flavors": flavors,
        "flavor": flavor,
        "peak_rps": peak_rps,
        "port": port,
        "seed": seed,
        "ingress": ingress,
        "progress": lambda phase, _done, _total: console.print(phase),
    }
    if service is not None:
        given = [
            o
            for o, v in (
                ("--model", model),
                ("--slo-ms", slo_ms),
                ("--percentile", percentile),
                ("--with", neighbours),
            )
            if v
        ]
        if given:
            raise SpecError(f"{', '.join(given)}: the service spec {service} sets them")
        with stdout_to_stderr():
            pooled = _replay_pool(service=service, **common)
        _render_pool(pooled, trace, hours, speedup, plot, as_json)
        return
    from edgewise.api.replay import replay as replay_segment

    slo = 150.0 if slo_ms is None else slo_ms
    with stdout_to_stderr():
        outcome = replay_segment(
            slo_ms=slo,
            percentile=99.0 if percentile is None else percentile,
            model=model or "mobilenet_v2",
            neighbours=neighbours,
            **common,
        )
    if outcome.colocation is not None and outcome.slowdown is not None:
        c = outcome.colocation
        console.print(
            f"predicted slowdown of {outcome.model} next to "
            f"{', '.join(outcome.slowdown.neighbours)}: x{c.slowdown:.2f} "
            f"({outcome.slowdown.source}); capacity per replica "
            f"{c.alone.capacity_rps:.1f} rps alone, {c.colocated.capacity_rps:.1f} beside them"
        )
    _render_runs(outcome.results, slo, trace, hours, outcome.start, speedup, plot, as_json)


def _replay_pool(**kwargs: Any) -> PoolReplayOutcome:
    """:func:`edgewise.api.replay_pool.replay_pool` (imported when it is needed)."""
    from edgewise.api.replay_pool import replay_pool

    return replay_pool(**kwargs)


_COLUMNS = ("policy", "attainment %", "cost", "scale actions", "vertical", "p99 ms", "requests")


def _runs_table(results: list[ReplayResult], title: str, extra: Sequence[str] = ()) -> Table:
    """One row per live run: attainment, cost, actions, tail latency, requests."""
    table = Table(title=title)
    for col in (*_COLUMNS, "503", "failed", *extra):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.policy,
            f"{100 * r.slo_attainment:.2f}",
            f"{r.cost:.4f}",
            str(r.scale_actions),
            str(r.vertical_actions),
            f"{r.p99_ms:.1f}",
            str(r.requests),
            str(r.rejected),
            str(r.failed),
        )
    return table


def _render_runs(
    results: list[ReplayResult],
    slo_ms: float,
    trace: str,
    hours: float,
    start: Any,
    speedup: float,
    plot: Path,
    as_json: bool,
) -> None:
    """The plot, then one JSON object or a table of the live runs."""
    from edgewise.serving.replay import plot_replay

    out = plot_replay(results, slo_ms, plot)
    if as_json:
        typer.echo(json.dumps({r.policy: r.to_dict() for r in results} | {"plot": str(out)}))
        return
    Console().print(
        _runs_table(results, f"replay of {trace}: {hours:g} h from {start}, x{speedup:g}")
    )
    console.print(f"plot: {out}")


def _render_pool(
    outcome: PoolReplayOutcome, trace: str, hours: float, speedup: float, plot: Path, as_json: bool
) -> None:
    """The pool's capacities and notes, the live runs, and their agreement with the simulator."""
    from edgewise.serving.replay import plot_replay

    out = plot_replay(outcome.results, outcome.slo_ms, plot)
    if as_json:
        doc = outcome.as_dict()
        policies = doc.pop("policies")
        typer.echo(json.dumps(policies | {"plot": str(out), "pool": doc}))
        return
    for c in outcome.capacities:
        console.print(
            f"capacity of {c['model']} in {c['flavor']}: {c['capacity_rps_per_replica']:.1f} "
            f"rps per replica ({c['source']})",
            soft_wrap=True,
        )
    for note in outcome.notes:
        console.print(f"note: {note}", soft_wrap=True)
    title = (
        f"replay of {trace} on {outcome.service}'s pool: {hours:g} h from {outcome.start}, "
        f"x{speedup:g}"
    )
    table = _runs_table(outcome.results, title)
    Console().print(table)
    for run in outcome.runs:
        a, live = run.agreement, run.run
        sim = (
            ""
            if live.simulated is None
            else (f", simulated attainment {100 * live.simulated.slo_attainment:.2f} %")
        )
        console.print(
            f"{run.policy}: live executed {a.matched} of {a.decisions} simulated decisions; "
            f"replicas at most live {_counts(a.live_flavors)}, simulated "
            f"{_counts(a.sim_flavors)}; variant switches live {a.live_switches}, simulated "
            f"{a.sim_switches}{sim}",
            soft_wrap=True,
        )
    console.print(f"plot: {out}")


def _counts(per_flavor: dict[str, int]) -> str:
    """``2 large + 1 small`` (flavors with no replica left out)."""
    return " + ".join(f"{n} {name}" for name, n in per_flavor.items() if n) or "none"


def register(app: typer.Typer) -> None:
    """Add ``edgewise serve`` and ``edgewise replay`` to ``app``."""
    app.command("serve")(serve)
    app.command("replay")(replay)
