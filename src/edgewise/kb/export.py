"""Export knowledge-base tables to CSV or Parquet files.

Rows are streamed in chunks from one read transaction, converted to typed pandas
columns (nullable integers and floats, UTC timestamps, strings), and written to a
temporary file that is renamed into place at the end, so an interrupted export never
leaves a truncated file behind. JSON columns are written as JSON text; binary columns
(the pickled models) as their size in bytes, in a column named ``<column>_bytes``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Select,
    Table,
    func,
    select,
)

from edgewise.errors import UnknownNameError
from edgewise.kb.models import UTCDateTime
from edgewise.kb.store import KnowledgeBase, resolve_table, table_names

ExportFormat = Literal["csv", "parquet"]
FORMATS: tuple[str, ...] = get_args(ExportFormat)

#: Called with (table name, rows written in this chunk) while exporting.
RowsCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class ExportResult:
    """One exported table: where it went and how many rows it holds."""

    table: str
    path: Path
    rows: int


def _kind(column_type: Any) -> str:
    """Export category of a column type: json, blob, time, int, float or text."""
    if isinstance(column_type, JSON):
        return "json"
    if isinstance(column_type, LargeBinary):
        return "blob"
    if isinstance(column_type, UTCDateTime | DateTime):
        return "time"
    if isinstance(column_type, Integer):
        return "int"
    if isinstance(column_type, Float):
        return "float"
    return "text"


def export_columns(table: Table) -> list[tuple[str, str, ColumnElement[Any]]]:
    """``(output name, kind, SQL expression)`` for each column of ``table``.

    ``kind`` is one of json, bytes, time, int, float, text. Binary columns become ``length(col)`` (computed in the database, so pickles are
    never loaded) under the name ``<col>_bytes``.
    """
    out: list[tuple[str, str, ColumnElement[Any]]] = []
    for column in table.columns:
        kind = _kind(column.type)
        if kind == "blob":
            name = f"{column.name}_bytes"
            out.append((name, "bytes", func.length(column).label(name)))
        else:
            out.append((column.name, kind, column))
    return out


def export_select(table: Table) -> Select[Any]:
    """The SELECT used by :func:`export_table` (rows in ``id`` order)."""
    return select(*(expr for _, _, expr in export_columns(table))).order_by(table.c.id)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, default=str)


def rows_to_frame(table: Table, rows: Iterable[Sequence[Any]]) -> pd.DataFrame:
    """Typed DataFrame of ``rows`` (as returned by :func:`export_select`)."""
    columns = export_columns(table)
    values: list[list[Any]] = [[] for _ in columns]
    for row in rows:
        for i, cell in enumerate(row):
            values[i].append(cell)
    data: dict[str, Any] = {}
    for (name, kind, _), col in zip(columns, values, strict=True):
        if kind == "json":
            data[name] = pd.array([_json_text(v) for v in col], dtype="string")
        elif kind == "time":
            data[name] = pd.Series(pd.to_datetime(pd.Series(col, dtype=object), utc=True))
            data[name] = data[name].astype("datetime64[us, UTC]")
        elif kind in ("int", "bytes"):
            data[name] = pd.array(col, dtype="Int64")
        elif kind == "float":
            data[name] = pd.array(col, dtype="Float64")
        else:
            data[name] = pd.array([None if v is None else str(v) for v in col], dtype="string")
    return pd.DataFrame(data)


def export_table(
    kb: KnowledgeBase,
    table: str,
    fmt: ExportFormat,
    out_dir: str | Path,
    *,
    chunk_rows: int = 50_000,
    on_rows: RowsCallback | None = None,
) -> ExportResult:
    """Write one table to ``out_dir/<table>.<fmt>``.

    Parameters
    ----------
    kb
        The knowledge base.
    table
        Table name (or ORM class name); see :func:`edgewise.kb.table_names`.
    fmt
        ``'csv'`` or ``'parquet'``.
    out_dir
        Directory to write to (created if missing).
    chunk_rows
        Rows fetched and written at a time.
    on_rows
        Progress callback ``(table, rows_in_chunk)``.

    Raises
    ------
    UnknownNameError
        For an unknown table or format.
    """
    if fmt not in FORMATS:
        raise UnknownNameError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    tbl = resolve_table(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{tbl.name}.{fmt}"
    tmp = out / f".{tbl.name}.{fmt}.{os.getpid()}.tmp"
    rows = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None

    def write(frame: pd.DataFrame, first: bool) -> None:
        nonlocal writer, schema
        if fmt == "csv":
            frame.to_csv(tmp, mode="w" if first else "a", header=first, index=False)
            return
        if schema is None:
            schema = pa.Schema.from_pandas(frame, preserve_index=False)
            writer = pq.ParquetWriter(tmp, schema)
        assert writer is not None
        writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))

    try:
        with kb.engine.connect() as conn:
            result = conn.execution_options(yield_per=chunk_rows).execute(export_select(tbl))
            for part in result.partitions():
                frame = rows_to_frame(tbl, part)
                write(frame, first=rows == 0)
                rows += len(frame)
                if on_rows is not None:
                    on_rows(tbl.name, len(frame))
        if rows == 0:  # an empty table still gets a file with the header / schema
            write(rows_to_frame(tbl, []), first=True)
        if writer is not None:
            writer.close()
            writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return ExportResult(table=tbl.name, path=path, rows=rows)


def export_tables(
    kb: KnowledgeBase,
    tables: str | Sequence[str],
    fmt: ExportFormat,
    out_dir: str | Path,
    *,
    on_rows: RowsCallback | None = None,
) -> list[ExportResult]:
    """Export several tables (``'all'`` for every table) to ``out_dir``."""
    if isinstance(tables, str):
        names: Sequence[str] = table_names() if tables.strip().lower() == "all" else [tables]
    else:
        names = tables
    resolved = [resolve_table(name).name for name in names]  # fail before writing anything
    return [export_table(kb, name, fmt, out_dir, on_rows=on_rows) for name in resolved]
