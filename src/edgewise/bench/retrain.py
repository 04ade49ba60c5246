"""``edgewise bench retrain``: our plan against the baselines on one emulated pool.

The benchmark is :func:`edgewise.api.retrain.benchmark_retrain` (the runs themselves:
:mod:`edgewise.retrain.comparison`); this module is its benchmark entry point,
returning the JSON-able dict that ``edgewise bench retrain --json`` prints (the first
plan's predicted background latency against the measured one included), and the
command that renders it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from edgewise.api.retrain import DEFAULT_BATCH, DEFAULT_EPOCHS, benchmark_retrain
from edgewise.retrain.jobs import base_weights, drift_accuracy

__all__ = ["SUMMARY_KEYS", "base_weights", "drift_accuracy", "register_bench", "run"]

SUMMARY_KEYS = (
    "speedup_vs_equal",
    "ratio_to_bound",
    "ratio_to_bound_in_run",
    "deadline_miss_rate",
    "baseline_deadline_miss_rate",
    "accuracy_before",
    "accuracy_after",
    "grad_max_abs_err",
    "speedup_vs_feasible_equal",
    "recovery_s",
    "steps_lost",
    "timeline_plot",
    "max_prediction_error",
)
"""The figures the command prints without ``--json`` (those present)."""


def run(
    devices_path: str | Path,
    seed: int = 0,
    model: str = "digits_cnn",
    data: str = "digits",
    epochs: int = DEFAULT_EPOCHS,
    kill_at_step: int | None = None,
    kill_device: str | None = None,
    drift: str = "rotation",
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    global_batch: int = DEFAULT_BATCH,
    steps: int | None = None,
    kb: str | None = None,
    timeline_path: str | Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its figures.

    Parameters are those of :func:`edgewise.api.retrain.benchmark_retrain`;
    ``progress(message)`` hears each phase.

    Returns
    -------
    dict
        :meth:`edgewise.retrain.comparison.RetrainBenchmark.as_dict`, with the first
        plan's largest background prediction error on top (``max_prediction_error``,
        ``None`` where an app had no interference model; the per-device figures are
        under ``background_prediction.devices``).
    """
    res = benchmark_retrain(
        devices=devices_path,
        seed=seed,
        model=model,
        data=data,
        drift=drift,
        epochs=epochs,
        steps=steps,
        global_batch=global_batch,
        kill_at_step=kill_at_step,
        kill_device=kill_device,
        workdir=workdir,
        timeline_path=timeline_path,
        kb=kb,
        progress=None if progress is None else (lambda phase, _done, _total: progress(phase)),
    ).as_dict()
    res["max_prediction_error"] = res["background_prediction"].get("max_prediction_error")
    return res


def retrain_cmd(
    devices: Path = typer.Option(..., "--devices", help="devices YAML"),
    seed: int = typer.Option(0, "--seed"),
    model: str = typer.Option("digits_cnn", "--model"),
    data: str = typer.Option("digits", "--data"),
    epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", min=1),
    steps: int | None = typer.Option(None, "--steps", min=1, help="overrides --epochs"),
    global_batch: int = typer.Option(DEFAULT_BATCH, "--global-batch", min=1),
    kill_at_step: int | None = typer.Option(None, "--kill-at-step", min=1),
    kill_device: str | None = typer.Option(None, "--kill-device", help="NAME or auto"),
    as_json: bool = typer.Option(False, "--json", help="print the figures as JSON"),
    timeline: Path | None = typer.Option(
        None,
        "--timeline",
        help="PNG of the killed run's per-device timeline "
        "(default: $EDGEWISE_HOME/results/retrain-timeline-failure.png)",
    ),
) -> None:
    """Our retrain plan vs equal / proportional / fastest baselines on an emulated pool."""
    from rich.console import Console

    err = Console(stderr=True)
    with err.status("benchmark starting") as status:
        res = run(
            devices,
            seed,
            model,
            data,
            epochs,
            kill_at_step,
            kill_device,
            progress=lambda m: status.update(m),
            global_batch=global_batch,
            steps=steps,
            timeline_path=timeline,
        )
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        for k in SUMMARY_KEYS:
            if k in res:
                typer.echo(f"{k}: {res[k]}")


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``retrain`` subcommand to the ``edgewise bench`` group."""
    bench_app.command("retrain")(retrain_cmd)
