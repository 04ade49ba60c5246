"""``edgewise bench NAME --json``: the benchmark harnesses, one module each.

Each module in :mod:`edgewise.bench` exposes ``register_bench(bench_app)`` adding its
subcommand; every benchmark prints one JSON object with ``--json``.
"""

from __future__ import annotations

import importlib
import json

import typer

BENCH_MODULES: tuple[str, ...] = (
    "edgewise.cli.forecast",
    "edgewise.bench.plan",
    "edgewise.bench.interference",
    "edgewise.bench.serving",
    "edgewise.bench.serving_live",
    "edgewise.bench.retrain",
    "edgewise.bench.scale",
)


def _telemetry(
    seconds: float = typer.Option(30.0, help="How long to sample."),
    interval_s: float = typer.Option(1.0, "--interval", help="Sampling interval in seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Sampler overhead: CPU time the 1 Hz telemetry sampler costs, in % of one core."""
    from edgewise.bench.telemetry import run

    result = run(seconds=seconds, interval_s=interval_s)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for k, v in result.items():
            typer.echo(f"{k}: {v}")


def register(app: typer.Typer) -> None:
    bench_app = typer.Typer(
        help="Benchmarks (each prints one JSON object with --json).", no_args_is_help=True
    )
    bench_app.command("telemetry")(_telemetry)
    for name in BENCH_MODULES:
        module = importlib.import_module(name)
        module.register_bench(bench_app)
    app.add_typer(bench_app, name="bench")
