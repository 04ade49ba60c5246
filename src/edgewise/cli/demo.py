"""``edgewise demo``: the whole system end to end on embedded defaults.

Parses the seed, calls :func:`edgewise.demo.run_demo` and prints its summary.
"""

from __future__ import annotations

import typer

__all__ = ["demo", "register"]


def demo(seed: int = typer.Option(0, help="Seed of every random choice.")) -> None:
    """Profile, serve, then train, serve, re-train and roll out your model (local Ray, SQLite)."""
    from edgewise.demo import print_summary, run_demo

    print_summary(run_demo(seed=seed))


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``edgewise`` app."""
    app.command("demo")(demo)
