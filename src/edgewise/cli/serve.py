"""``edgewise serve`` and ``edgewise replay``: the live serve pillar on Ray Serve.

Both parse their options, call :mod:`edgewise.api.serve` or :mod:`edgewise.api.replay`
and render what comes back; the signals that stop ``serve`` are caught here.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register", "replay", "serve"]

console = Console(stderr=True)


def serve(
    service: Path = typer.Argument(..., help="Service YAML (model variants and SLO)."),
    flavors: Path | None = typer.Option(None, help="Flavors YAML (default: a 0.5-CPU flavor)."),
    flavor: str | None = typer.Option(None, help="Flavor to run replicas in (default: smallest)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind the HTTP proxy to."),
    port: int = typer.Option(8000, help="HTTP port."),
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
) -> None:
    """Serve the service's model on Ray Serve behind HTTP, autoscaled to its SLO.

    Routes: POST /predict (PNG/JPEG, .npy tensor, or JSON text), GET /healthz, GET /metrics.
    """
    from edgewise.api.serve import ServingStarted
    from edgewise.api.serve import serve as serve_service

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

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


def replay(
    trace: str = typer.Option("bikeshare", help="'bikeshare' or a CSV path."),
    time_col: str | None = typer.Option(None, help="Time column of a CSV trace."),
    value_col: str | None = typer.Option(None, help="Value column of a CSV trace."),
    start: str | None = typer.Option(None, help="Start of the segment (default: last H hours)."),
    hours: float = typer.Option(12.0, help="Trace hours to replay."),
    speedup: float = typer.Option(120.0, help="Trace seconds per wall second."),
    policy: str = typer.Option("edgewise", help="Policy, or several comma-separated."),
    slo_ms: float = typer.Option(150.0, help="Latency SLO in ms."),
    percentile: float = typer.Option(99.0, help="SLO percentile."),
    model: str = typer.Option("mobilenet_v2", help="Zoo model to serve."),
    flavors: Path | None = typer.Option(None, help="Flavors YAML."),
    flavor: str | None = typer.Option(None, help="Flavor name (default: smallest)."),
    peak_rps: float | None = typer.Option(None, help="Scale the trace to this peak rate."),
    port: int = typer.Option(8000, help="HTTP port of the deployment."),
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
    from edgewise.api.replay import replay as replay_segment
    from edgewise.serving.replay import plot_replay
    from edgewise.serving.runtime import stdout_to_stderr

    with stdout_to_stderr():
        outcome = replay_segment(
            trace=trace,
            time_col=time_col,
            value_col=value_col,
            start=start,
            hours=hours,
            speedup=speedup,
            policies=[p.strip() for p in policy.split(",") if p.strip()],
            slo_ms=slo_ms,
            percentile=percentile,
            model=model,
            flavors=flavors,
            flavor=flavor,
            peak_rps=peak_rps,
            port=port,
            seed=seed,
            ingress=ingress,
            neighbours=neighbours,
            progress=lambda phase, _done, _total: console.print(phase),
        )
    if outcome.colocation is not None and outcome.slowdown is not None:
        c = outcome.colocation
        console.print(
            f"predicted slowdown of {model} next to {', '.join(outcome.slowdown.neighbours)}: "
            f"x{c.slowdown:.2f} ({outcome.slowdown.source}); capacity per replica "
            f"{c.alone.capacity_rps:.1f} rps alone, {c.colocated.capacity_rps:.1f} beside them"
        )
    results = outcome.results
    out = plot_replay(results, slo_ms, plot)
    if as_json:
        typer.echo(json.dumps({r.policy: r.to_dict() for r in results} | {"plot": str(out)}))
        return
    table = Table(title=f"replay of {trace}: {hours:g} h from {outcome.start}, x{speedup:g}")
    for col in (
        "policy",
        "attainment %",
        "cost",
        "scale actions",
        "vertical",
        "p99 ms",
        "requests",
        "503",
        "failed",
    ):
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
    Console().print(table)
    console.print(f"plot: {out}")


def register(app: typer.Typer) -> None:
    """Add ``edgewise serve`` and ``edgewise replay`` to ``app``."""
    app.command("serve")(serve)
    app.command("replay")(replay)
