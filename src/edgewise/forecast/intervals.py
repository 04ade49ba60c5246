"""Prediction intervals: empirical residual quantiles and split-conformal calibration.

Provisioning needs an *upper quantile* of demand that holds as often as it claims.
:class:`ConformalCalibrator` learns it from honest out-of-sample errors (rolling-origin
forecasts that never saw the values they predict): the signed errors, divided by the
forecast level (demand errors grow with demand), give a pool of scores whose quantiles,
with the split-conformal finite-sample correction, widen any new point forecast into a
calibrated interval. Pure numpy; no state outside the calibrator's fitted attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
from sklearn.exceptions import NotFittedError

from edgewise.stats import conformal_quantile

__all__ = ["ConformalCalibrator", "conformal_quantile", "empirical_bounds", "tail_probs"]


def tail_probs(level: int) -> tuple[float, float]:
    """Lower and upper quantile probabilities of a central ``level``% interval."""
    alpha = 1.0 - level / 100.0
    return alpha / 2.0, 1.0 - alpha / 2.0


def empirical_bounds(
    mean: np.ndarray,
    residuals: np.ndarray,
    levels: Sequence[int],
    growth: np.ndarray | None = None,
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Intervals ``mean + quantile(residuals) * growth`` for each level.

    Parameters
    ----------
    mean : numpy.ndarray
        Point forecast, shape ``(h,)``.
    residuals : numpy.ndarray
        In-sample one-period-ahead errors ``y - yhat`` of the method.
    levels : sequence of int
        Central interval levels in percent.
    growth : numpy.ndarray, optional
        Per-step widening factor (e.g. ``sqrt(periods ahead)``), default ones.
    """
    mean = np.asarray(mean, dtype=float)
    g = np.ones_like(mean) if growth is None else np.asarray(growth, dtype=float)
    res = np.asarray(residuals, dtype=float)
    lower: dict[int, np.ndarray] = {}
    upper: dict[int, np.ndarray] = {}
    for lv in levels:
        if res.size == 0:
            lower[lv], upper[lv] = mean.copy(), mean.copy()
            continue
        p_lo, p_hi = tail_probs(lv)
        lower[lv] = mean + float(np.quantile(res, p_lo)) * g
        upper[lv] = mean + float(np.quantile(res, p_hi)) * g
    return lower, upper


class ConformalCalibrator:
    """Split-conformal intervals from out-of-sample forecast errors.

    Scores are ``(y - yhat) / max(|yhat|, floor)``, pooled over windows and horizon
    steps, where ``floor = floor_fraction * mean(|y|)`` keeps near-zero forecasts (night
    hours) from exploding the ratio. Lower and upper tails are calibrated separately, so
    a skewed error distribution gives an asymmetric interval.

    Parameters
    ----------
    floor_fraction : float
        Floor of the normaliser as a fraction of the mean absolute actual value.
    """

    def __init__(self, floor_fraction: float = 0.1) -> None:
        self.floor_fraction = floor_fraction

    def fit(self, forecasts: np.ndarray, actuals: np.ndarray) -> Self:
        """Learn the score pool from matching arrays of forecasts and actual values."""
        f = np.asarray(forecasts, dtype=float).ravel()
        a = np.asarray(actuals, dtype=float).ravel()
        if f.shape != a.shape or f.size == 0:
            raise ValueError("forecasts and actuals must be non-empty and of equal shape")
        self.floor_ = max(self.floor_fraction * float(np.mean(np.abs(a))), 1e-9)
        self.scores_ = (a - f) / self._scale(f)
        return self

    def _scale(self, mean: np.ndarray) -> np.ndarray:
        return np.maximum(np.abs(mean), self.floor_)

    def bounds(
        self, mean: np.ndarray, levels: Sequence[int]
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Calibrated lower and upper bounds around ``mean`` for each level."""
        if not hasattr(self, "scores_"):
            raise NotFittedError("ConformalCalibrator is not fitted yet")
        mean = np.asarray(mean, dtype=float)
        scale = self._scale(mean)
        lower: dict[int, np.ndarray] = {}
        upper: dict[int, np.ndarray] = {}
        for lv in levels:
            p_lo, p_hi = tail_probs(lv)
            lower[lv] = mean + conformal_quantile(self.scores_, p_lo) * scale
            upper[lv] = mean + conformal_quantile(self.scores_, p_hi) * scale
        return lower, upper
