"""``edgewise serve`` and ``edgewise replay``: the live serve pillar on Ray Serve."""

from __future__ import annotations

import json
import math
import signal
import threading
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgewise.config import FlavorSpec, load_flavors, load_service
from edgewise.errors import SpecError

console = Console(stderr=True)


def _pick_flavor(flavors_path: Path | None, name: str | None) -> FlavorSpec:
    from edgewise.serving.live import DEFAULT_FLAVOR

    if flavors_path is None:
        return DEFAULT_FLAVOR
    catalog = load_flavors(flavors_path)
    if name is None:
        return min(catalog.flavors, key=lambda f: f.cpus)
    for f in catalog.flavors:
        if f.name == name:
            return f
    known = ", ".join(f.name for f in catalog.flavors)
    raise SpecError(f"{flavors_path}: no flavor named {name!r} (known: {known})")


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
        help="'proxy' (Ray Serve's HTTP proxy, loopback) or 'haproxy' (HAProxy straight to "
        "the replicas: less latency and CPU; replica ports listen on all interfaces).",
    ),
) -> None:
    """Serve the service's model on Ray Serve behind HTTP, autoscaled to its SLO.

    Routes: POST /predict (PNG/JPEG, .npy tensor, or JSON text), GET /healthz, GET /metrics.
    """
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.controller import LiveController
    from edgewise.serving.live import flavor_option, replicas_that_fit
    from edgewise.serving.policies import make_policy
    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

    spec = load_service(service)
    variant = max(spec.variants, key=lambda v: (v.accuracy >= spec.min_accuracy, -v.accuracy))
    fl = _pick_flavor(flavors, flavor)
    kb = KnowledgeBase.open()
    cap = flavor_option(
        variant.model,
        fl,
        slo_ms=spec.slo.latency_ms,
        percentile=spec.slo.percentile,
        kb=kb,
        measure=measure,
        max_replicas=replicas_that_fit(fl) if address is None else None,
    )
    pol = make_policy(policy)
    cfg = RuntimeConfig(
        model=variant.model,
        app=spec.name,
        cpus_per_replica=fl.cpus,
        initial_replicas=1,
        max_replicas=cap.option.max_replicas,
        host=host,
        port=port,
        address=address,
        ingress=ingress,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(1, timeout_s=180)
        console.print(
            f"serving {variant.model} for {spec.name!r} at {rt.url}/predict "
            f"(SLO p{spec.slo.percentile:g} <= {spec.slo.latency_ms:g} ms, flavor {fl.name}, "
            f"capacity {cap.option.capacity_rps:.1f} rps/replica, policy {policy}); Ctrl-C stops"
        )
        ctl = LiveController(
            rt,
            pol,
            cap.option,
            slo_ms=spec.slo.latency_ms,
            slo_percentile=spec.slo.percentile,
            startup_s=spec.startup_s,
            kb=kb,
            run_key=f"serve-{spec.name}",
        )
        ctl.start(1)
        ctl.run(seconds if seconds > 0 else math.inf, stop)


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
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Replay a compressed trace segment against the live system, one run per policy."""
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.live import replicas_that_fit
    from edgewise.serving.replay import plot_replay, replay_policy, select_segment
    from edgewise.serving.runtime import RaySession, probe_capacity, stdout_to_stderr
    from edgewise.workloads.traces import load_trace

    policies = [p.strip() for p in policy.split(",") if p.strip()]
    from edgewise.serving.policies import POLICY_NAMES

    for p in policies:
        if p not in POLICY_NAMES:
            raise SpecError(f"--policy: unknown policy {p!r} (known: {', '.join(POLICY_NAMES)})")
    series = load_trace(trace, time_col, value_col)
    fl = _pick_flavor(flavors, flavor)
    kb = KnowledgeBase.open()
    n_max = replicas_that_fit(fl)
    results = []
    with RaySession(ingress=ingress), stdout_to_stderr():
        console.print(f"probing one {model} replica in flavor {fl.name} through HTTP ...")
        cap = probe_capacity(
            model,
            fl,
            slo_ms=slo_ms,
            percentile=percentile,
            max_replicas=n_max,
            port=port,
            seed=seed,
            ingress=ingress,
        )
        peak = peak_rps or 0.7 * cap.option.capacity_rps * n_max
        segment = select_segment(series, start, hours, speedup, peak)
        for p in policies:
            console.print(
                f"[bold]{p}[/]: {hours:g} trace hours from {segment.start} at x{speedup:g} "
                f"({segment.duration_s:.0f} s), peak {peak:.1f} rps, capacity "
                f"{cap.option.capacity_rps:.1f} rps per replica, up to {n_max} of {fl.name}"
            )
            inputs = {"trace": trace, "hours": hours, "flavor": fl.name, "peak_rps": peak}
            results.append(
                replay_policy(
                    segment,
                    p,
                    model,
                    fl,
                    cap.option,
                    slo_ms=slo_ms,
                    percentile=percentile,
                    seed=seed,
                    kb=kb,
                    port=port,
                    inputs=inputs,
                    ingress=ingress,
                )
            )
    out = plot_replay(results, slo_ms, plot)
    if as_json:
        typer.echo(json.dumps({r.policy: r.to_dict() for r in results} | {"plot": str(out)}))
        return
    table = Table(title=f"replay of {trace}: {hours:g} h from {segment.start}, x{speedup:g}")
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
    app.command("serve")(serve)
    app.command("replay")(replay)
