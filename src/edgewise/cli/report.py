"""``edgewise report``: write the self-contained HTML report from the knowledge base."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgewise.cli.kb import DbOption


def report(
    out: Annotated[Path, typer.Option("--out", help="Directory to write index.html into.")] = Path(
        "report"
    ),
    db: DbOption = None,
) -> None:
    """Write OUT/index.html: a self-contained HTML report of every pillar in the KB."""
    from edgewise.kb import KnowledgeBase
    from edgewise.report import SECTIONS, write_report

    console = Console(stderr=True)
    with (
        KnowledgeBase.open(db) as kb,
        Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("rendering report sections", total=len(SECTIONS))
        result = write_report(
            kb,
            out,
            datetime.now(UTC),
            on_section=lambda key: progress.update(task, advance=1, description=f"rendered {key}"),
        )
    figures = ", ".join(f"{k} {n}" for k, n in result.figures.items())
    typer.echo(
        f"report written to {result.path} ({result.size_bytes / 1024:.0f} KiB; figures: {figures})"
    )


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report)
