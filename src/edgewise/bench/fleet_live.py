"""``edgewise bench fleet-live``: the fleet served live on this host against the simulator.

The use case is :func:`edgewise.api.fleet_live.replay_fleet` (its docstring says how the
trace is built, planned, served and simulated); this module is the benchmark's command.
The fleet's nodes are emulated by this host's CPUs, so the default fleet
(``examples/fleet-live.yaml``: two services, two 1-CPU nodes) needs two CPUs. The
knowledge base given with ``--kb`` supplies the interference models the planner places
with and the capacity profiles both the planner and the simulator serve with
(``scripts/bench-all.sh`` profiles them first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["DEFAULT_FLEET", "fleet_live_command", "register_bench"]

#: The fleet served by default: ``examples/fleet-live.yaml`` in a checkout.
DEFAULT_FLEET = Path(__file__).resolve().parents[3] / "examples" / "fleet-live.yaml"


def fleet_live_command(
    fleet: Annotated[
        Path, typer.Option(help="fleet spec (services, nodes, flavors)", dir_okay=False)
    ] = DEFAULT_FLEET,
    kb: Annotated[
        str | None,
        typer.Option(help="knowledge base with the interference models and capacity profiles"),
    ] = None,
    trace: Annotated[str, typer.Option(help="'bikeshare' or a CSV file")] = "bikeshare",
    hours: Annotated[float, typer.Option(help="trace hours (a whole number of windows)")] = 8.0,
    speedup: Annotated[int, typer.Option(min=1, help="trace seconds per wall second")] = 240,
    window_s: Annotated[int, typer.Option(min=60, help="trace seconds per window")] = 7200,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Serve a fleet live (nodes emulated by CPUs) and simulate the same plans and trace."""
    from rich.console import Console
    from rich.progress import Progress as Bar

    from edgewise.api.fleet_replay import replay_fleet

    with Bar(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("planning", total=None)

        def cb(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        out = replay_fleet(
            fleet=fleet,
            trace=trace,
            hours=hours,
            speedup=speedup,
            window_s=window_s,
            seed=seed,
            kb=kb,
            progress=cb,
        ).as_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    _print(out)


def _print(out: dict[str, Any]) -> None:
    live, sim = out["live"], out["simulated"]
    for name, att in live["slo_attainment"].items():
        typer.echo(
            f"{name}: attainment live {100 * att:.2f} %, simulated "
            f"{100 * sim['slo_attainment'][name]:.2f} % ({out['attainment_gap_pt'][name]:+.2f} pt); "
            f"{live['requests'][name]} requests, p99 {live['p99_ms'][name]} ms"
        )
    typer.echo(
        f"node cost: live {live['cost']:.4f}, simulated {sim['cost']:.4f} "
        f"({100 * out['cost_gap']:+.1f} %); within tolerance: {out['within_tolerance']}"
    )
    for note in out["notes"]:
        typer.echo(f"note: {note}")


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``fleet-live`` subcommand to the ``edgewise bench`` group."""
    bench_app.command("fleet-live")(fleet_live_command)
