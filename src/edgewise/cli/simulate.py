"""``edgewise simulate serving``: one autoscaling policy over a trace, on a virtual clock.

Parses the options, calls :func:`edgewise.api.simulate.simulate_serving` and renders the
result (a line, JSON, and optionally a plot of the per-minute series).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgewise.errors import UnknownNameError

if TYPE_CHECKING:
    from edgewise.sim.scoring import MinuteSeries

__all__ = ["plot_series", "register", "serving_command"]


def serving_command(
    trace: Annotated[str, typer.Option(help="'bikeshare' or a CSV file")] = "bikeshare",
    time_col: Annotated[str | None, typer.Option(help="time column of a CSV")] = None,
    value_col: Annotated[str | None, typer.Option(help="value column of a CSV")] = None,
    days: Annotated[float, typer.Option(min=0.01, help="last N days of the trace")] = 14.0,
    policy: Annotated[
        str, typer.Option(help="edgewise, hpa, kpa, rayserve, static, oracle")
    ] = "edgewise",
    slo_ms: Annotated[float, typer.Option(min=0.001, help="latency SLO (ms)")] = 100.0,
    peak_rps: Annotated[
        float, typer.Option(min=0.001, help="scale the trace to this peak")
    ] = 200.0,
    startup_s: Annotated[int, typer.Option(min=0, help="replica start-up (s)")] = 60,
    seed: Annotated[int, typer.Option()] = 0,
    max_replicas: Annotated[int, typer.Option(min=1, help="most replicas of each flavor")] = 1000,
    plot: Annotated[Path | None, typer.Option(help="write a PNG of rate, replicas, p99")] = None,
    fleet: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help="a fleet spec (services and nodes): simulate every service on the shared "
            "nodes, ours against Ray's spread and first-fit packing",
        ),
    ] = None,
    kb: Annotated[str | None, typer.Option(help="knowledge-base URL (with --fleet)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Run one policy (its default setting) over the last DAYS of a trace, or a fleet."""
    from rich.console import Console
    from rich.progress import Progress

    from edgewise.api.simulate import simulate_serving
    from edgewise.serving.policies import POLICY_NAMES

    if fleet is not None:
        _simulate_fleet(fleet, trace, days, seed, kb, as_json)
        return
    if policy not in POLICY_NAMES:
        raise UnknownNameError(f"unknown policy {policy!r}; known: {', '.join(POLICY_NAMES)}")
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"simulating {policy}", total=1.0)
        sim = simulate_serving(
            trace=trace,
            time_col=time_col,
            value_col=value_col,
            days=days,
            policies=[policy],
            slo_ms=slo_ms,
            peak_rps=peak_rps,
            startup_s=startup_s,
            seed=seed,
            max_replicas=max_replicas,
            series=plot is not None,
            single_setting=True,
            progress=lambda _label, done, total: bar.update(task, completed=done / total),
        )
    runs = sim.policy(policy)
    label, res = runs.default
    if plot is not None and res.minutes is not None:
        plot_series(res.minutes, plot, f"{policy}: {days:g} days of {trace}, SLO {slo_ms:g} ms")
    if as_json:
        entry = {"setting": label, **res.to_dict()}
        typer.echo(json.dumps({"policy": policy, **entry}, indent=2))
        return
    typer.echo(
        f"{policy} ({label}): attainment {res.slo_attainment:.4%}, "
        f"cost {res.cost:.3f}, scale actions {res.scale_actions}, "
        f"vertical actions {res.vertical_actions}, reversals within 5 min "
        f"{res.reversals_5min}"
    )
    if plot is not None:
        typer.echo(f"plot: {plot}")


def plot_series(series: MinuteSeries, path: Path, title: str) -> None:
    """Rate, replicas, CPUs per replica and p99 per minute, stacked, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hours = np.asarray(series.minute, dtype=float) / 60.0
    p99 = np.array([np.nan if v is None else v for v in series.p99_ms], dtype=float)
    fig, axes = plt.subplots(4, 1, figsize=(11, 8), sharex=True)
    axes[0].plot(hours, series.rate_rps, lw=0.7)
    axes[0].set_ylabel("rate (rps)")
    axes[1].plot(hours, series.replicas, lw=0.7, color="tab:green")
    axes[1].set_ylabel("ready replicas")
    axes[2].plot(hours, series.cpus_per_replica, lw=0.7, color="tab:orange")
    axes[2].set_ylabel("CPUs / replica")
    axes[3].plot(hours, p99, lw=0.7, color="tab:red")
    axes[3].set_yscale("log")
    axes[3].set_ylabel("p99 (ms)")
    axes[3].set_xlabel("hours")
    axes[0].set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _simulate_fleet(
    fleet: Path, trace: str, days: float, seed: int, kb: str | None, as_json: bool
) -> None:
    """``simulate serving --fleet``: every service of the fleet, placed by each policy."""
    from rich.console import Console
    from rich.progress import Progress

    from edgewise.api.fleet import simulate_fleet
    from edgewise.api.fleet_table import fleet_table

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("planning", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        out = simulate_fleet(
            fleet=fleet, trace=trace, days=days, seed=seed, kb=kb, progress=report
        ).as_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    table, lines = fleet_table(out)
    Console().print(table)
    for line in lines:
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command group."""
    sim_app = typer.Typer(help="Simulate policies on a virtual clock.", no_args_is_help=True)
    app.add_typer(sim_app, name="simulate")
    sim_app.command("serving")(serving_command)
