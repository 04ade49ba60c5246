"""``edgewise demo``: the whole system end to end on embedded defaults."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(seed: int = typer.Option(0, help="Seed of every random choice.")) -> None:
        """Profile, serve and retrain end to end (local Ray, SQLite) with a summary."""
        from edgewise.demo import print_summary, run_demo

        print_summary(run_demo(seed=seed))
