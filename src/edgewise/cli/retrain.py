"""``edgewise retrain``: update a model on an emulated device pool under deadlines.

The model is a zoo name on a built-in data set, or the user's own (a registry entry or
a trainable path) on the user's own data (an image folder or an ``.npz``); then the
held-out accuracy before and after is printed, and a registry model's result is
registered as ``NAME:v(n+1)``.

Parses the options, calls :func:`edgewise.api.retrain.retrain` (drift check, pool,
profiles, plan, elastic training with the load-aware monitor, knowledge-base records)
and renders its progress on stderr and its result on stdout.

Where the devices are: emulated on this host (default), or, with ``--address``, the
Ray cluster's nodes that carry them (resource ``device-<name>`` or the device's
``labels``; see :mod:`edgewise.retrain.raypool`). Same code path otherwise.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from edgewise.api.retrain import RetrainedModel
    from edgewise.planning.retrain import RetrainPlan


class DriftKind(StrEnum):
    """How the re-training data drifted from the base split."""

    rotation = "rotation"
    noise = "noise"
    new_classes = "new_classes"


class DriftMetric(StrEnum):
    """What ``--when-drift`` tests: held-out accuracy, or the KS statistic of confidences."""

    accuracy = "accuracy"
    ks = "ks"


class _ProgressView:
    """Phases without a count as a spinner line, the counted one as a progress bar."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Any = None
        self._bar: Any = None
        self._task: Any = None
        self._phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        from rich.progress import Progress

        if total == 0:
            if self._status is None:
                self._status = self.console.status(phase)
                self._status.start()
            else:
                self._status.update(phase)
            return
        self._stop_status()
        if self._bar is None or phase != self._phase:
            self.close()
            self._bar = Progress(console=self.console)
            self._bar.start()
            self._task = self._bar.add_task(phase, total=total)
            self._phase = phase
        self._bar.update(self._task, completed=done)

    def on_plan(self, plan: RetrainPlan, source: str, key: str) -> None:
        """Say where the profiles came from and why each device got its part."""
        self._stop_status()
        self.console.print(f"profiles: {source} (pool {key})")
        for name, why in plan.explanation.items():
            self.console.print(f"{name}: {why}")

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        """Stop whatever is on screen."""
        self._stop_status()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def retrain(
    devices: Path = typer.Option(..., "--devices", help="devices YAML"),
    model: str = typer.Option(
        "digits_cnn",
        "--model",
        help="zoo model, registry NAME[:VERSION], or a trainable path (Hugging Face "
        "directory, or safetensors with an architecture)",
    ),
    data: str = typer.Option(
        "digits",
        "--data",
        help="built-in data set (digits, lfw), an image folder (one sub-folder per class) "
        "or an .npz with x and y",
    ),
    drift: DriftKind = typer.Option(
        DriftKind.rotation, "--drift", help="How a built-in data set drifted."
    ),
    epochs: int = typer.Option(60, "--epochs", min=1),
    steps: int | None = typer.Option(None, "--steps", min=1, help="overrides --epochs"),
    global_batch: int = typer.Option(1024, "--global-batch", min=1),
    seed: int = typer.Option(0, "--seed"),
    kill_at_step: int | None = typer.Option(None, "--kill-at-step", min=1),
    kill_device: str | None = typer.Option(None, "--kill-device"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint"),
    workdir: Path | None = typer.Option(None, "--workdir", help="job directory"),
    reprofile: bool = typer.Option(False, "--reprofile", help="ignore cached profiles"),
    load_aware: bool = typer.Option(
        True, "--load-aware/--no-load-aware", help="re-plan when background load changes"
    ),
    when_drift: bool = typer.Option(
        False, "--when-drift", help="update only if the deployed model has drifted"
    ),
    drift_metric: DriftMetric = typer.Option(
        DriftMetric.accuracy, "--drift-metric", help="What --when-drift tests."
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="accuracy below / KS above it triggers (0.9 / 0.2)"
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Ray cluster address (HOST:6379 or auto): devices are the nodes that carry them",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Plan devices, intensities and batch shares under deadlines, then train elastically.

    A registry model's result is registered as its next version (the new ref is printed).
    """
    from rich.console import Console

    from edgewise.api.retrain import retrain as retrain_model

    view = _ProgressView(Console(stderr=True))
    try:
        res = retrain_model(
            devices=devices,
            model=model,
            data=data,
            drift=drift.value,
            epochs=epochs,
            steps=steps,
            global_batch=global_batch,
            seed=seed,
            kill_at_step=kill_at_step,
            kill_device=kill_device,
            resume=resume,
            workdir=workdir,
            reprofile=reprofile,
            load_aware=load_aware,
            when_drift=when_drift,
            drift_metric=drift_metric.value,
            threshold=threshold,
            address=address,
            progress=view,
            on_plan=view.on_plan,
        )
    finally:
        view.close()
    if res.drift is not None:
        typer.echo(f"drift check: {res.drift.reason}")
    job = res.job
    if job is None:
        if as_json:
            typer.echo(json.dumps(res.as_dict()))
    elif as_json:
        typer.echo(json.dumps(job.as_dict(), indent=2, default=str))
    else:
        typer.echo(_summary(job))


def _summary(job: RetrainedModel) -> str:
    """One line: what was re-trained, where, the accuracy before and after, and the result."""
    where = f"re-trained {job.model} in {job.train_time_s:.1f} s on {', '.join(job.plan.devices)}"
    if job.data_fingerprint is None:
        return (
            f"{where}: drifted-split accuracy "
            f"{job.accuracy_before:.3f} -> {job.accuracy_after:.3f}; weights {job.weights}"
        )
    result = f"registered {job.registered}" if job.registered else f"saved {job.trained}"
    return (
        f"{where}: held-out accuracy {job.accuracy_before:.3f} -> "
        f"{job.accuracy_after:.3f}; {result}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``retrain`` command to ``app``."""
    app.command("retrain")(retrain)
