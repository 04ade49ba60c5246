"""Drift trigger: decide whether the deployed model needs an update.

Two statistics, both on the deployed model's outputs:

* ``accuracy`` on labelled feedback (the drifted split's labelled test samples): update
  when it falls below the threshold;
* ``ks``: the two-sample Kolmogorov–Smirnov statistic between the model's top-class
  confidence on a reference split (the base test split it was validated on) and on the
  current inputs (no labels needed): update when it exceeds the threshold.

:func:`decide` is pure (statistic in, decision out); :func:`measure` runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

Metric = Literal["accuracy", "ks"]
DEFAULT_THRESHOLDS: dict[str, float] = {"accuracy": 0.9, "ks": 0.2}


@dataclass(frozen=True)
class DriftDecision:
    """Whether to update, on which statistic, and a one-line reason."""

    update: bool
    metric: str
    statistic: float
    threshold: float
    reason: str


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample KS statistic (max distance between the empirical CDFs), from scipy."""
    from scipy.stats import ks_2samp

    a = np.asarray(reference, dtype=float).ravel()
    b = np.asarray(current, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("KS statistic needs two non-empty samples")
    return float(ks_2samp(a, b).statistic)


def decide(metric: Metric, statistic: float, threshold: float | None = None) -> DriftDecision:
    """Update when accuracy < threshold, or when the KS statistic > threshold."""
    if metric not in DEFAULT_THRESHOLDS:
        raise ValueError(f"unknown drift metric {metric!r}; choose accuracy or ks")
    thr = DEFAULT_THRESHOLDS[metric] if threshold is None else float(threshold)
    if metric == "accuracy":
        update = statistic < thr
        reason = (
            f"accuracy on labelled feedback {statistic:.3f} "
            f"{'<' if update else '>='} threshold {thr:.3f}"
        )
    else:
        update = statistic > thr
        reason = (
            f"KS statistic of top-class confidence vs the reference split {statistic:.3f} "
            f"{'>' if update else '<='} threshold {thr:.3f}"
        )
    verdict = "update" if update else "no update"
    return DriftDecision(update, metric, float(statistic), thr, f"{verdict}: {reason}")


def confidences(module: Any, x: Any, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Top-class softmax confidence and predicted class of ``module`` on ``x``."""
    import torch

    from edgewise.workloads.zoo import logits_of

    was = module.training
    module.eval()
    conf, pred = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            p = torch.softmax(logits_of(module(x[i : i + batch])), dim=1)
            c, k = p.max(dim=1)
            conf.append(c.numpy())
            pred.append(k.numpy())
    module.train(was)
    return np.concatenate(conf), np.concatenate(pred)


def measure(model: str, weights: Path, data: str, drift: str, seed: int, metric: Metric) -> float:
    """The statistic of the deployed ``weights`` on the drifted split's test samples."""
    import torch

    from edgewise.retrain.trainer import _num_classes, build_module, load_task

    task = load_task(data, drift, seed)
    module = build_module(model, seed, _num_classes(task))
    module.load_state_dict(torch.load(weights, map_location="cpu"))
    x, y = task.drift_test
    conf, pred = confidences(module, x)
    if metric == "accuracy":
        return float((pred == y.numpy()).mean())
    ref, _ = confidences(module, task.base_test[0])
    return ks_statistic(ref, conf)
