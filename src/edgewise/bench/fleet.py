"""``edgewise bench fleet``: several services on one pool, ours against interference-blind placement.

The use case is :func:`edgewise.api.fleet.simulate_fleet` (its docstring says how the
traces are built, planned and served); this module is the benchmark's entry point
(:func:`run`, the JSON-able report) and its command. The interference comes from the
knowledge base given with ``--kb``: it needs models of the fleet's zoo models (at
least :data:`MIN_INTERFERENCE_MODELS`, else one line and exit code 2; where one is
missing the planner falls back to solo capacity and every policy's ``notes`` say so).
``scripts/profile-fleet-kb.py`` profiles the fleet's models on the host into such a
knowledge base (``scripts/bench-all.sh`` runs it first); the tests use synthetic models
(``tests/fleet/make_fleet_kb.py``), which the report names in ``interference_synthetic``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from edgewise.api.fleet import POLICIES, Progress, simulate_fleet

__all__ = ["DEFAULT_FLEET", "MIN_INTERFERENCE_MODELS", "fleet_command", "register_bench", "run"]

#: Fewest of the fleet's models the knowledge base must hold interference models of.
MIN_INTERFERENCE_MODELS = 2
#: The fleet benchmarked by default: ``examples/fleet.yaml`` in a checkout.
DEFAULT_FLEET = Path(__file__).resolve().parents[3] / "examples" / "fleet.yaml"


def run(
    *,
    fleet: str | Path = DEFAULT_FLEET,
    trace: str = "bikeshare",
    days: float = 14.0,
    window_s: int = 3600,
    policies: tuple[str, ...] = POLICIES,
    seed: int = 0,
    kb: str | None = None,
    slowdown_error: float = 0.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Simulate the fleet with every policy; the benchmark's JSON.

    Parameters
    ----------
    fleet : path
        The fleet spec (default :data:`DEFAULT_FLEET`).
    trace, days, window_s, policies, seed, kb, slowdown_error, progress
        As :func:`edgewise.api.fleet.simulate_fleet`.

    Returns
    -------
    dict
        :meth:`edgewise.api.fleet.FleetSimulation.as_dict`.
    """
    return simulate_fleet(
        fleet=fleet,
        trace=trace,
        days=days,
        window_s=window_s,
        policies=policies,
        seed=seed,
        kb=kb,
        min_interference_models=MIN_INTERFERENCE_MODELS,
        slowdown_error=slowdown_error,
        progress=progress,
    ).as_dict()


def fleet_command(
    fleet: Annotated[
        Path, typer.Option(help="fleet spec (services, nodes, flavors)", dir_okay=False)
    ] = DEFAULT_FLEET,
    kb: Annotated[
        str | None,
        typer.Option(help="knowledge-base URL holding the interference models (default: yours)"),
    ] = None,
    trace: Annotated[str, typer.Option(help="'bikeshare' or a CSV file")] = "bikeshare",
    days: Annotated[float, typer.Option(min=0.01, help="days simulated")] = 14.0,
    window_s: Annotated[int, typer.Option(min=60, help="seconds per planning window")] = 3600,
    policies: Annotated[str, typer.Option(help="comma-separated")] = ",".join(POLICIES),
    seed: Annotated[int, typer.Option()] = 0,
    slowdown_error: Annotated[
        float,
        typer.Option(
            min=-0.99,
            help="true interference beyond the prediction (0.2: 20 percent worse than the model)",
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Simulate a fleet sharing nodes: ours against Ray's spread and first-fit packing."""
    from rich.console import Console
    from rich.progress import Progress as Bar

    names = tuple(p.strip() for p in policies.split(",") if p.strip())
    with Bar(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("planning", total=None)

        def cb(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        out = run(
            fleet=fleet,
            trace=trace,
            days=days,
            window_s=window_s,
            policies=names,
            seed=seed,
            kb=kb,
            slowdown_error=slowdown_error,
            progress=cb,
        )
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    _print_table(out)


def _print_table(out: dict[str, Any]) -> None:
    from rich.console import Console

    from edgewise.api.fleet_table import fleet_table

    table, lines = fleet_table(out)
    Console().print(table)
    for line in lines:
        typer.echo(line)


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``fleet`` subcommand to the ``edgewise bench`` group."""
    bench_app.command("fleet")(fleet_command)
