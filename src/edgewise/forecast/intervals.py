"""Prediction intervals: empirical residual quantiles and split-conformal calibration.

Provisioning needs an *upper quantile* of demand that holds as often as it claims.
:class:`ConformalCalibrator` learns it from honest out-of-sample errors (rolling-origin
forecasts that never saw the values they predict): the signed errors, divided by the
forecast level (demand errors grow with demand), give a pool of scores whose quantiles,
with the split-conformal finite-sample correction, widen any new point forecast into a
calibrated interval. :class:`StepConformalCalibrator` does the same per horizon step:
the error of the step one hour ahead is not the error of the step a day ahead, nor is a
night hour's the error of a rush hour's. Pure numpy; no state outside the calibrator's fitted attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
from sklearn.exceptions import NotFittedError

from edgewise.stats import conformal_quantile

__all__ = [
    "ConformalCalibrator",
    "StepConformalCalibrator",
    "conformal_quantile",
    "empirical_bounds",
    "step_spread",
    "tail_probs",
]


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


def step_spread(rel_errors: np.ndarray, shrink: float = 0.5) -> np.ndarray:
    """Relative error spread per horizon step, mean 1, smoothed and shrunk towards 1.

    Parameters
    ----------
    rel_errors : numpy.ndarray
        Relative errors, shape ``(windows, horizon)``.
    shrink : float
        Weight of the pooled spread (1) against the per-step one; with few windows per
        step the per-step estimate is noisy, so half of it is pooled.

    Returns
    -------
    numpy.ndarray
        Shape ``(horizon,)``, positive, mean 1.
    """
    e = np.abs(np.asarray(rel_errors, dtype=float))
    per_step = e.mean(axis=0)
    if per_step.size >= 3:  # a 3-step moving average, edges repeated
        per_step = np.convolve(np.pad(per_step, 1, mode="edge"), np.ones(3) / 3.0, "valid")
    overall = float(per_step.mean())
    if not overall > 0:
        return np.ones(per_step.shape)
    raw = per_step / overall
    g = shrink + (1.0 - shrink) * raw
    return np.asarray(np.maximum(g, 0.05) / np.maximum(g, 0.05).mean())


class StepConformalCalibrator:
    """Split-conformal intervals calibrated per horizon step.

    A window's error at step ``j`` is scored as ``(y - yhat) / (max(|yhat|, floor) *
    g[j])``, where ``g`` (:func:`step_spread`) is the relative error spread of step
    ``j`` over the windows; the scores of every step are pooled for the conformal
    quantile, and each step's bound is widened by its own ``g[j]``. So a step that erred
    more in the backtest gets a wider interval, yet every step's quantile rests on all
    the windows' errors, not on the few of that step alone. Lower and upper tails are
    calibrated separately (the upper one is the planner's provisioning quantile).

    Parameters
    ----------
    floor_fraction : float
        Floor of the normaliser as a fraction of the mean absolute actual value.
    shrink : float
        See :func:`step_spread`.
    """

    def __init__(self, floor_fraction: float = 0.02, shrink: float = 0.5) -> None:
        self.floor_fraction = floor_fraction
        self.shrink = shrink

    def fit(self, forecasts: np.ndarray, actuals: np.ndarray) -> Self:
        """Learn the per-step spread and the score pool from ``(windows, horizon)`` arrays."""
        f = np.atleast_2d(np.asarray(forecasts, dtype=float))
        a = np.atleast_2d(np.asarray(actuals, dtype=float))
        if f.shape != a.shape or f.size == 0:
            raise ValueError("forecasts and actuals must be non-empty and of equal shape")
        self.floor_ = max(self.floor_fraction * float(np.mean(np.abs(a))), 1e-9)
        rel = (a - f) / np.maximum(np.abs(f), self.floor_)
        self.spread_ = step_spread(rel, self.shrink)
        self.scores_ = (rel / self.spread_).ravel()
        self.n_windows_ = int(f.shape[0])
        return self

    def _spread(self, h: int) -> np.ndarray:
        g = self.spread_
        return g[np.minimum(np.arange(h), g.shape[0] - 1)]

    def bounds(
        self, mean: np.ndarray, levels: Sequence[int]
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Calibrated lower and upper bounds around ``mean`` for each level.

        Steps beyond the calibrated horizon use the last step's spread.
        """
        if not hasattr(self, "scores_"):
            raise NotFittedError("StepConformalCalibrator is not fitted yet")
        mean = np.asarray(mean, dtype=float)
        scale = np.maximum(np.abs(mean), self.floor_) * self._spread(mean.shape[0])
        lower: dict[int, np.ndarray] = {}
        upper: dict[int, np.ndarray] = {}
        for lv in levels:
            p_lo, p_hi = tail_probs(lv)
            lower[lv] = mean + conformal_quantile(self.scores_, p_lo) * scale
            upper[lv] = mean + conformal_quantile(self.scores_, p_hi) * scale
        return lower, upper
