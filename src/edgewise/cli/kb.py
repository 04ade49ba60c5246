"""``edgewise kb``: list, show and export the knowledge base.

The commands only read the database (``export`` writes files, never rows); every
error a user can fix (unknown table, unreachable URL) is one line and exit code 2.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable
from sqlalchemy import select

from edgewise.errors import SpecError, UnknownNameError
from edgewise.kb import KnowledgeBase, resolve_table, table_names

kb_app = typer.Typer(
    help="Inspect and export the knowledge base (SQLite under $EDGEWISE_HOME or $EDGEWISE_DB_URL).",
    no_args_is_help=True,
)

_CELL_CHARS = 48


class ExportFormatChoice(StrEnum):
    """File formats of ``edgewise kb export``."""

    csv = "csv"
    parquet = "parquet"


def _db(ctx: typer.Context) -> str | None:
    obj = ctx.find_object(dict)
    return None if obj is None else obj.get("kb_url")


def _cell(value: Any, kind: str, *, full: bool = False) -> str:
    """Text of one cell: compact JSON, ISO timestamps, blob sizes."""
    if value is None:
        return ""
    if kind == "json":
        text = json.dumps(value, indent=2 if full else None, sort_keys=True, default=str)
    elif kind == "bytes":
        return f"{value} B"
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ", timespec="milliseconds" if full else "seconds")
    else:
        text = str(value)
    if not full and len(text) > _CELL_CHARS:
        text = text[: _CELL_CHARS - 1] + "…"
    return text


#: The ``--db`` option of every command that opens the knowledge base.
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy URL of the knowledge base (default: $EDGEWISE_DB_URL, "
        "else sqlite:///$EDGEWISE_HOME/kb.sqlite).",
        show_default=False,
    ),
]


@kb_app.callback()
def _kb(
    ctx: typer.Context,
    db: DbOption = None,
) -> None:
    """Inspect and export the knowledge base."""
    ctx.ensure_object(dict)["kb_url"] = db


@kb_app.command("list")
def list_tables(ctx: typer.Context) -> None:
    """List every table with its row count (works on an empty knowledge base)."""
    with KnowledgeBase.open(_db(ctx)) as kb:
        counts = kb.counts()
        version = kb.schema_version()
        url = kb.safe_url
    table = RichTable(caption=f"schema v{version}", caption_justify="left")
    table.add_column("table", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    for name, rows in counts.items():
        table.add_row(name, str(rows))
    console = Console()
    console.print(f"knowledge base: {url}", soft_wrap=True, highlight=False)
    console.print(table)


@kb_app.command("show")
def show(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help=f"Table to show: {', '.join(table_names())}.")],
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Show at most this many rows, newest first.")
    ] = 20,
    row_id: Annotated[
        int | None,
        typer.Option("--id", help="Show only the row with this id, every field in full."),
    ] = None,
) -> None:
    """Show the newest rows of TABLE (or one row with --id)."""
    from edgewise.kb.export import export_columns

    tbl = resolve_table(table)
    columns = export_columns(tbl)
    query = select(*(expr for _, _, expr in columns))
    if row_id is not None:
        query = query.where(tbl.c.id == row_id)
    else:
        query = query.order_by(tbl.c.id.desc()).limit(limit)
    kinds = [kind for _, kind, _ in columns]
    with KnowledgeBase.open(_db(ctx)) as kb, kb.snapshot() as session:
        rows = session.execute(query).all()
        total = kb.counts()[tbl.name]
    console = Console()
    if row_id is not None:
        if not rows:
            raise UnknownNameError(f"no row with id {row_id} in table {tbl.name}")
        detail = RichTable(title=f"{tbl.name} id={row_id}", title_justify="left", show_header=False)
        detail.add_column("field", style="bold")
        detail.add_column("value", overflow="fold")
        for (name, _, _), kind, value in zip(columns, kinds, rows[0], strict=True):
            detail.add_row(name, _cell(value, kind, full=True))
        console.print(detail)
        return
    title = f"{tbl.name}: newest {len(rows)} of {total} rows"
    grid = RichTable(
        title=title,
        title_justify="left",
        caption="--id N shows one row in full" if rows else None,
        caption_justify="left",
    )
    for name, kind, _ in columns:
        grid.add_column(
            name, no_wrap=True, justify="right" if kind in ("int", "float", "bytes") else "left"
        )
    cells = [[_cell(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows]
    for texts in cells:
        grid.add_row(*texts)
    widths = [
        max([cell_len(name), *(cell_len(texts[i]) for texts in cells)])
        for i, (name, _, _) in enumerate(columns)
    ]
    natural = sum(widths) + 3 * len(widths) + 1  # padding of 1 each side, borders
    if natural <= console.width or not rows:
        console.print(grid)
        return
    # Too wide for this terminal: one field/value block per row instead of a grid.
    console.print(title, highlight=False)
    for row in rows:
        record = RichTable(show_header=False, box=box.SIMPLE_HEAD, padding=(0, 1))
        record.add_column("field", style="bold", no_wrap=True)
        record.add_column("value", overflow="fold")
        for (name, _, _), kind, value in zip(columns, kinds, row, strict=True):
            record.add_row(name, _cell(value, kind))
        console.print(record)


@kb_app.command("export")
def export(
    ctx: typer.Context,
    table: Annotated[str, typer.Argument(help="A table name, or 'all' for every table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the files to.")],
    fmt: Annotated[
        ExportFormatChoice, typer.Option("--format", "-f", help="File format.")
    ] = ExportFormatChoice.csv,
) -> None:
    """Export TABLE (or 'all') to OUT/<table>.csv or .parquet.

    JSON columns are written as JSON text, binary columns as their size in bytes.
    """
    from edgewise.kb.export import export_tables

    names = list(table_names()) if table.strip().lower() == "all" else [resolve_table(table).name]
    with KnowledgeBase.open(_db(ctx)) as kb:
        counts = kb.counts()
        total = sum(counts[name] for name in names)
        progress = Progress(
            TextColumn("exporting {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        with progress:
            task = progress.add_task(f"{len(names)} table(s)", total=total)
            try:
                results = export_tables(
                    kb,
                    names,
                    fmt.value,
                    out,
                    on_rows=lambda _name, n: progress.advance(task, n),
                )
            except OSError as err:
                raise SpecError(f"--out {out}: cannot write there: {err.strerror or err}") from None
    console = Console()
    for result in results:
        console.print(f"{result.path}  {result.rows} rows")


def register(app: typer.Typer) -> None:
    """Add the ``kb`` command group to ``app``."""
    app.add_typer(kb_app, name="kb")
