"""``edgewise bench NAME --json``: the benchmark harnesses, one module each.

Each module named in :data:`BENCH_MODULES` exposes ``register_bench(bench_app)`` adding
its subcommand; every benchmark prints one JSON object with ``--json``. The modules are
loaded by name: the CLI registers the benchmark commands but imports nothing of
:mod:`edgewise.bench` itself (the layer contracts in ``pyproject.toml``).
"""

from __future__ import annotations

import importlib

import typer

BENCH_MODULES: tuple[str, ...] = (
    "edgewise.bench.telemetry",
    "edgewise.cli.forecast",
    "edgewise.bench.plan",
    "edgewise.bench.interference",
    "edgewise.bench.serving",
    "edgewise.bench.serving_live",
    "edgewise.bench.rollout",
    "edgewise.bench.fleet",
    "edgewise.bench.fleet_live",
    "edgewise.bench.retrain",
    "edgewise.bench.scale",
)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command group, with every benchmark's subcommand, to ``app``."""
    bench_app = typer.Typer(
        help="Benchmarks (each prints one JSON object with --json).", no_args_is_help=True
    )
    for name in BENCH_MODULES:
        module = importlib.import_module(name)
        module.register_bench(bench_app)
    app.add_typer(bench_app, name="bench")
