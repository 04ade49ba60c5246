"""Retrain benchmark use case: our plan against the equal and the proportional split.

:func:`benchmark_retrain` runs our plan against the equal and the
interference-oblivious proportional split on one emulated pool (and, with
``kill_at_step``, once more with a device killed), and reports speed, deadline misses,
accuracy and recovery (the runs: :mod:`edgewise.retrain.comparison`), with the profile
pillar's prediction of the apps' latency beside the measured one
(:func:`predict_background`). The heavy engines (torch, Ray) are imported inside the
calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.errors import EdgewiseError
from edgewise.retrain.comparison import RetrainBenchmark, compare_plans, training_stressor
from edgewise.retrain.jobs import DEFAULT_BATCH, DEFAULT_EPOCHS

if TYPE_CHECKING:
    from edgewise.config import DeviceSpec

__all__ = ["RetrainBenchmark", "benchmark_retrain", "predict_background"]

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; ``total == 0`` for a phase without a count."""


def benchmark_retrain(
    *,
    devices: str | Path,
    seed: int = 0,
    model: str = "digits_cnn",
    data: str = "digits",
    drift: str = "rotation",
    epochs: int = DEFAULT_EPOCHS,
    steps: int | None = None,
    global_batch: int = DEFAULT_BATCH,
    kill_at_step: int | None = None,
    kill_device: str | None = None,
    workdir: str | Path | None = None,
    timeline_path: str | Path | None = None,
    kb: str | None = None,
    progress: Progress | None = None,
) -> RetrainBenchmark:
    """Our retrain plan against the equal and proportional splits on an emulated pool.

    Parameters
    ----------
    devices : str or Path
        Devices YAML.
    seed, model, data, drift
        As for :func:`retrain`.
    epochs, steps, global_batch
        The job (``steps`` overrides ``epochs``: steps = ceil(epochs * |drift train| /
        batch)).
    kill_at_step, kill_device
        One more run of our plan with that device (``auto``: the plan's last) killed at
        that step; its per-device timeline goes to ``timeline_path`` (default
        ``$EDGEWISE_HOME/results/retrain-timeline-failure.png``).
    workdir : str or Path or None
        Where the runs' files go (default: a fresh temporary directory).
    kb : str or None
        Knowledge base URL (``None``: the default one); every run is recorded there as
        a ``TrainingJob`` with its checkpoints.
    progress : callable or None
        ``progress(phase, 0, 0)`` at each phase.

    Returns
    -------
    RetrainBenchmark
        Our plan re-balances shares online; the baselines keep their static shares.
    """
    from edgewise.config import load_devices
    from edgewise.kb import KnowledgeBase

    say = progress or (lambda _phase, _done, _total: None)
    knowledge = KnowledgeBase.open(kb)
    return compare_plans(
        load_devices(devices),
        str(devices),
        model=model,
        data=data,
        drift=drift,
        seed=seed,
        epochs=epochs,
        steps=steps,
        global_batch=global_batch,
        kill_at_step=kill_at_step,
        kill_device=kill_device,
        workdir=Path(workdir) if workdir else None,
        kb=knowledge,
        timeline_path=timeline_path,
        predict=lambda spec: predict_background(knowledge, spec.devices),
        say=lambda msg: say(msg, 0, 0),
    )


def predict_background(kb: Any, devices: Sequence[DeviceSpec]) -> dict[str, dict[str, Any]] | None:
    """Predicted background p99 per device and intensity from the profile pillar.

    ``None`` when the KB holds no interference model for an app (then the plan uses
    the direct measurement alone).
    """
    from edgewise.interference.predictor import Predictor
    from edgewise.retrain.profiler import candidate_intensities

    try:
        pred = Predictor(kb)
        out: dict[str, dict[str, Any]] = {}
        for d in devices:
            if d.background is None:
                continue
            app = f"{d.background.model}@{d.background.rate_rps:g}rps"
            out[d.name] = {}
            for threads, nice in candidate_intensities(d.cpus):
                lp = pred.predict(app, [training_stressor(threads, nice, d.cpus)])
                out[d.name][f"t{threads}n{nice}"] = {"p99": lp.p99, "source": lp.source}
        return out
    except (EdgewiseError, ImportError, KeyError, ValueError):
        return None
