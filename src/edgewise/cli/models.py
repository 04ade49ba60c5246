"""``edgewise models``: the model zoo measured here, and the registry of your own models.

``edgewise models`` alone (or ``edgewise models zoo``) lists the zoo with parameter
counts and latencies measured on this host, as it always did; ``models add``, ``list``,
``show`` and ``export`` work on the registry (:mod:`edgewise.api.models`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgewise.cli.kb import DbOption
from edgewise.workloads._names import MODEL_NAMES

models_app = typer.Typer(
    help="The model zoo and the registry of your own models. Alone, `edgewise models` "
    "lists the zoo with latency measured here (the options below; same as `models zoo`).",
    no_args_is_help=False,
)


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


def _wide_console() -> Console:
    out = Console()
    if not out.is_terminal:  # a file or pipe: do not truncate the table to 80 columns
        out = Console(width=max(out.width, 120))
    return out


BatchSizes = Annotated[
    str, typer.Option("--batch-sizes", help="Comma-separated batch sizes to time.")
]
Threads = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="Intra-op threads (default: CPUs available)."),
]
Repeats = Annotated[
    int, typer.Option("--repeats", min=1, help="Timed calls per model and batch size.")
]
Warmup = Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls first.")]
ModelNames = Annotated[
    str | None,
    typer.Option("--models", help=f"Comma-separated subset of: {', '.join(MODEL_NAMES)}."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ZooJson = Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")]


def zoo(
    batch_sizes: BatchSizes = "1,8",
    threads: Threads = None,
    repeats: Repeats = 20,
    warmup: Warmup = 3,
    model_names: ModelNames = None,
    as_json: ZooJson = False,
) -> None:
    """List the model zoo with parameter counts and latency (p50, p95) measured on this host."""
    from edgewise.api.models import measure_zoo
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
        task = progress.add_task("measuring", total=len(names) * len(sizes))

        def _report(description: str, done: int, total: int) -> None:
            progress.update(task, description=description, completed=done)

        report = measure_zoo(
            names=names,
            batch_sizes=sizes,
            threads=n_threads,
            repeats=repeats,
            warmup=warmup,
            progress=_report,
        )
    rows = report.as_dict()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _wide_console().print(_table(rows, sizes, n_threads))


def models(
    ctx: typer.Context,
    batch_sizes: BatchSizes = "1,8",
    threads: Threads = None,
    repeats: Repeats = 20,
    warmup: Warmup = 3,
    model_names: ModelNames = None,
    as_json: ZooJson = False,
) -> None:
    """The model zoo and your registered models; alone, the zoo listing (as `models zoo`)."""
    if ctx.invoked_subcommand is None:
        zoo(batch_sizes, threads, repeats, warmup, model_names, as_json)


# ---------------------------------------------------------------------- registry


def _version_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "model",
        "format",
        "input",
        "task",
        "parent",
        "acc before → after",
        "registered",
    ):
        table.add_column(column, no_wrap=column != "parent")
    for row in rows:
        card = row["card"]
        before, after = row["accuracy_before"], row["accuracy_after"]
        accuracy = "" if before is None and after is None else f"{_pct(before)} → {_pct(after)}"
        table.add_row(
            row["ref"],
            row["format"],
            f"{card['input']['kind']} {'×'.join(str(d) for d in card['input']['shape'])}",
            card["task"],
            row["parent"] or "",
            accuracy,
            row["created_at"][:19].replace("T", " "),
        )
    return table


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def add(
    name: Annotated[str, typer.Argument(help="Registry name (letters, digits, _ and -).")],
    path: Annotated[
        Path,
        typer.Argument(
            help="Model file (.pt/.ts TorchScript, .pt2, .onnx, .safetensors) or a Hugging "
            "Face directory."
        ),
    ],
    card: Annotated[
        Path | None,
        typer.Option("--card", help="Model card YAML (default: <file>.card.yaml beside it)."),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Labels file, one label a line.")
    ] = None,
    input_spec: Annotated[
        str | None,
        typer.Option(
            "--input", help="Input when there is no card: KIND:SHAPE[:DTYPE], e.g. image:1x8x8."
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="classification, regression or other."),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch", help="Architecture of safetensors weights: a zoo name or pkg.module:fn."
        ),
    ] = None,
    as_json: AsJson = False,
    db: DbOption = None,
) -> None:
    """Register a model as the next version of NAME, after one checked forward pass."""
    from edgewise.api.models import add_model

    version = add_model(
        name=name,
        path=path,
        card_file=card,
        labels_file=labels,
        input_spec=input_spec,
        task=task,
        arch=arch,
        kb=db,
    )
    if as_json:
        typer.echo(json.dumps(version.as_dict(), indent=2))
    else:
        typer.echo(f"registered {version.ref} ({version.format}, sha256 {version.sha256[:12]})")


def list_versions(as_json: AsJson = False, db: DbOption = None) -> None:
    """List every registered model version with its lineage."""
    from edgewise.api.models import list_registered

    registered = list_registered(kb=db)
    if as_json:
        typer.echo(json.dumps(registered.as_dict(), indent=2))
        return
    rows = registered.as_dict()["models"]
    if not rows:
        typer.echo("no registered models; add one with `edgewise models add NAME PATH`")
        return
    _wide_console().print(_version_table(rows, "registered models"))


def show(
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME:vN.")],
    as_json: AsJson = False,
    db: DbOption = None,
) -> None:
    """Show one registered version: its card, content hash, stored path and lineage."""
    from edgewise.api.models import show_model

    row = show_model(ref=ref, kb=db).as_dict()
    if as_json:
        typer.echo(json.dumps(row, indent=2))
        return
    out = _wide_console()
    out.print(_version_table([row], row["ref"]))
    out.print(f"sha256: {row['sha256']}\npath: {row['path']}", soft_wrap=True, highlight=False)
    if row["data_fingerprint"]:
        out.print(f"data: {row['data_fingerprint']}", soft_wrap=True, highlight=False)
    labels = row["card"].get("labels")
    if labels:
        out.print(f"labels ({len(labels)}): {', '.join(labels)}", soft_wrap=True, highlight=False)


def export(
    ref: Annotated[str, typer.Argument(help="NAME (the latest version) or NAME:vN.")],
    out: Annotated[Path, typer.Option("--out", help="Target file or directory (must not exist).")],
    as_json: AsJson = False,
    db: DbOption = None,
) -> None:
    """Copy a registered version out of the registry, its card beside it."""
    from edgewise.api.models import export_model

    exported = export_model(ref=ref, out=out, kb=db)
    if as_json:
        typer.echo(json.dumps(exported.as_dict(), indent=2))
    else:
        typer.echo(f"exported {exported.ref} to {exported.path} (card {exported.card_path})")


models_app.callback(invoke_without_command=True)(models)
models_app.command("zoo")(zoo)
models_app.command("add")(add)
models_app.command("list")(list_versions)
models_app.command("show")(show)
models_app.command("export")(export)


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group (the zoo listing when alone) to the edgewise CLI."""
    app.add_typer(models_app, name="models")
