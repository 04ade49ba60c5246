"""``edgewise models``: the model zoo with parameter counts and latencies measured here."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgewise.workloads._names import MODEL_NAMES


def _parse_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"expected positive integers, got {text!r}")
    return values


def _host_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def measure_zoo(
    names: list[str],
    batch_sizes: list[int],
    threads: int,
    repeats: int,
    warmup: int,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Build each model and measure p50/p95 latency per batch size; one row per model."""
    from edgewise.stats import latency_summary
    from edgewise.workloads.runner import InferenceRunner
    from edgewise.workloads.zoo import build_model

    task = None
    if progress is not None:
        task = progress.add_task("measuring", total=len(names) * len(batch_sizes))
    rows: list[dict[str, Any]] = []
    for name in names:
        if progress is not None and task is not None:
            progress.update(task, description=f"building {name}")
        model = build_model(name)
        row: dict[str, Any] = {
            "model": name,
            "kind": model.kind,
            "params": model.param_count,
            "input": list(model.input_shape),
            "threads": threads,
            "latency_ms": {},
        }
        for bs in batch_sizes:
            if progress is not None and task is not None:
                progress.update(task, description=f"{name} batch {bs}")
            lat = InferenceRunner(model, batch_size=bs, threads=threads).measure(repeats, warmup)
            summary = latency_summary(lat)
            row["latency_ms"][str(bs)] = {"p50": summary["p50"], "p95": summary["p95"]}
            if progress is not None and task is not None:
                progress.advance(task)
        rows.append(row)
        del model
    return rows


def _table(rows: list[dict[str, Any]], batch_sizes: list[int], threads: int) -> Table:
    table = Table(title=f"model zoo: latency measured on this host, {threads} thread(s)")
    table.add_column("model", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("input", no_wrap=True)
    for bs in batch_sizes:
        table.add_column(f"batch {bs}\np50 / p95 ms", justify="right", no_wrap=True)
    for row in rows:
        cells = [row["model"], f"{row['params']:,}", "×".join(str(d) for d in row["input"])]
        for bs in batch_sizes:
            lat = row["latency_ms"][str(bs)]
            cells.append(f"{lat['p50']:.2f} / {lat['p95']:.2f}")
        table.add_row(*cells)
    return table


def models(
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes to time.")
    ] = "1,8",
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Intra-op threads (default: CPUs available)."),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, help="Timed calls per model and batch size.")
    ] = 20,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls first.")] = 3,
    model_names: Annotated[
        str | None,
        typer.Option("--models", help=f"Comma-separated subset of: {', '.join(MODEL_NAMES)}."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON rows instead of a table.")
    ] = False,
) -> None:
    """List the model zoo with parameter counts and latency (p50, p95) measured on this host."""
    from edgewise.workloads.zoo import check_model_name

    sizes = _parse_ints(batch_sizes, "--batch-sizes")
    names = (
        [check_model_name(n.strip()) for n in model_names.split(",") if n.strip()]
        if model_names
        else list(MODEL_NAMES)
    )
    n_threads = threads or _host_cpus()
    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        rows = measure_zoo(names, sizes, n_threads, repeats, warmup, progress)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        out = Console()
        if not out.is_terminal:  # a file or pipe: do not truncate the table to 80 columns
            out = Console(width=max(out.width, 120))
        out.print(_table(rows, sizes, n_threads))


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to the edgewise CLI."""
    app.command("models")(models)
