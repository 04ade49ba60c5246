"""Error compensation after Barista: learn the next relative error from the last few.

Barista corrected its Prophet forecasts with a gradient-boosted model whose inputs were
the last five relative errors and the forecast itself. Here the errors come from
rolling-origin windows that tile the end of the training series (see
:mod:`edgewise.forecast.crossval`): for the window starting at origin ``o``, the inputs
are the relative errors at ``o-5 .. o-1`` (known at ``o``), the forecast (scaled by the
series mean) and the step's position in the horizon; the target is the relative error
at that step. The correction is kept only when it lowers the mean absolute error on the
latest windows held out from its training: the decision and both errors are recorded.

:func:`relative_errors` and :func:`compensation_design` are pure numpy; the
:class:`ErrorCompensator` holds the learned model; :class:`CompensatedForecaster` wraps
any forecaster with it under the common contract.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.exceptions import NotFittedError

from edgewise.forecast.base import BaseForecaster
from edgewise.forecast.crossval import rolling_forecasts, window_actuals, window_origins

_MIN_TRAIN_WINDOWS = 4

__all__ = [
    "CompensatedForecaster",
    "ErrorCompensator",
    "compensation_design",
    "relative_errors",
]


def relative_errors(actual: np.ndarray, forecast: np.ndarray, floor: float) -> np.ndarray:
    """``(actual - forecast) / max(|forecast|, floor)``."""
    f = np.asarray(forecast, dtype=float)
    return (np.asarray(actual, dtype=float) - f) / np.maximum(np.abs(f), floor)


def _features(lags: np.ndarray, forecast: np.ndarray, level: float, horizon: int) -> np.ndarray:
    h = forecast.shape[0]
    steps = np.minimum(np.arange(h), horizon - 1) / max(horizon - 1, 1)
    return np.column_stack([np.tile(lags, (h, 1)), forecast / level, steps])


def compensation_design(
    forecasts: np.ndarray, actuals: np.ndarray, n_lags: int, floor: float, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows from contiguous windows.

    Parameters
    ----------
    forecasts, actuals : numpy.ndarray
        Shape ``(W, H)``; window ``w + 1`` starts where window ``w`` ends.
    n_lags : int
        Number of past relative errors used as inputs.
    floor, level : float
        Floor of the relative-error denominator; scale of the forecast input.

    Returns
    -------
    X, target, window
        Inputs ``(rows, n_lags + 2)``, relative-error targets and each row's window.
        Windows whose origin has fewer than ``n_lags`` earlier errors give no rows.
    """
    n_windows, horizon = forecasts.shape
    errors = relative_errors(actuals, forecasts, floor)
    flat = errors.ravel()
    xs, ts, ws = [], [], []
    for w in range(n_windows):
        start = w * horizon
        if start < n_lags:
            continue
        xs.append(_features(flat[start - n_lags : start], forecasts[w], level, horizon))
        ts.append(errors[w])
        ws.append(np.full(horizon, w))
    if not xs:
        return np.empty((0, n_lags + 2)), np.empty(0), np.empty(0, dtype=int)
    return np.vstack(xs), np.concatenate(ts), np.concatenate(ws)


class ErrorCompensator:
    """Gradient-boosted correction of forecasts from recent relative errors.

    Parameters
    ----------
    n_lags : int
        Past relative errors used as inputs (Barista: 5).
    validation_windows : int, optional
        Latest windows held out to decide whether to keep the correction; default a
        third of the usable windows, at least two. At least four more windows must be
        left to train on, or the correction is not tried.
    min_gain : float
        Relative MAE improvement on the held-out windows needed to keep it; it must
        also be better on more than half of the held-out windows.
    clip : float
        Relative errors are clipped to ``[-clip, clip]`` before learning, so that one
        burst over a near-zero forecast does not teach the model to double every peak.
    n_estimators, max_depth, learning_rate : int, int, float
        Size of the scikit-learn ``GradientBoostingRegressor``.
    floor_fraction : float
        Floor of the relative-error denominator as a fraction of the mean actual value.
    seed : int
        ``random_state`` of the regressor.
    """

    def __init__(
        self,
        n_lags: int = 5,
        validation_windows: int | None = None,
        min_gain: float = 0.05,
        clip: float = 1.0,
        n_estimators: int = 25,
        max_depth: int = 2,
        learning_rate: float = 0.2,
        floor_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.n_lags = n_lags
        self.validation_windows = validation_windows
        self.min_gain = min_gain
        self.clip = clip
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.floor_fraction = floor_fraction
        self.seed = seed

    def _regressor(self) -> Any:
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(
            loss="squared_error",
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            random_state=self.seed,
        )

    def fit(self, forecasts: np.ndarray, actuals: np.ndarray) -> Self:
        """Learn from contiguous windows of forecasts and actual values, shape ``(W, H)``."""
        f = np.asarray(forecasts, dtype=float)
        a = np.asarray(actuals, dtype=float)
        if f.ndim != 2 or f.shape != a.shape:
            raise ValueError("forecasts and actuals must be 2-D arrays of equal shape")
        self.horizon_ = int(f.shape[1])
        self.level_ = max(float(np.mean(np.abs(a))), 1e-9)
        self.floor_ = self.floor_fraction * self.level_
        flat_errors = relative_errors(a, f, self.floor_).ravel()
        self.last_errors_ = (
            np.clip(flat_errors[-self.n_lags :], -self.clip, self.clip)
            if flat_errors.size >= self.n_lags
            else None
        )
        X, target, window = compensation_design(f, a, self.n_lags, self.floor_, self.level_)
        target = np.clip(target, -self.clip, self.clip)
        X[:, : self.n_lags] = np.clip(X[:, : self.n_lags], -self.clip, self.clip)
        usable = np.unique(window)
        self.kept_ = False
        self.val_mae_raw_: float | None = None
        self.val_mae_corrected_: float | None = None
        n_val = self.validation_windows or max(2, len(usable) // 3)
        if len(usable) < n_val + _MIN_TRAIN_WINDOWS or self.last_errors_ is None:
            self.reason_ = f"too few windows ({len(usable)} usable) to train and validate"
            return self
        val = np.isin(window, usable[-n_val:])
        model = self._regressor().fit(X[~val], target[~val])
        raw_f = f[usable[-n_val:]].ravel()
        raw_a = a[usable[-n_val:]].ravel()
        corrected = raw_f + model.predict(X[val]) * np.maximum(np.abs(raw_f), self.floor_)
        raw_w = np.abs(raw_a - raw_f).reshape(n_val, -1).mean(axis=1)
        corr_w = np.abs(raw_a - corrected).reshape(n_val, -1).mean(axis=1)
        self.val_mae_raw_ = float(raw_w.mean())
        self.val_mae_corrected_ = float(corr_w.mean())
        # kept only if it helps overall by min_gain and in most held-out windows
        self.kept_ = bool(
            self.val_mae_corrected_ < (1.0 - self.min_gain) * self.val_mae_raw_
            and np.mean(corr_w < raw_w) > 0.5
        )
        self.reason_ = "lowers validation MAE" if self.kept_ else "does not lower validation MAE"
        if self.kept_:
            self.model_ = self._regressor().fit(X, target)
        return self

    def adjust(self, forecast: np.ndarray) -> np.ndarray:
        """Corrected forecast from the end of the fitted windows (unchanged if not kept)."""
        if not hasattr(self, "kept_"):
            raise NotFittedError("ErrorCompensator is not fitted yet")
        f = np.asarray(forecast, dtype=float)
        if not self.kept_ or self.last_errors_ is None:
            return f.copy()
        X = _features(self.last_errors_, f, self.level_, self.horizon_)
        return np.asarray(f + self.model_.predict(X) * np.maximum(np.abs(f), self.floor_))

    def decision(self) -> dict[str, Any]:
        """JSON-able record of the keep/drop decision."""
        if not hasattr(self, "kept_"):
            raise NotFittedError("ErrorCompensator is not fitted yet")
        return {
            "kept": bool(self.kept_),
            "reason": self.reason_,
            "val_mae_raw": self.val_mae_raw_,
            "val_mae_corrected": self.val_mae_corrected_,
        }


class CompensatedForecaster(BaseForecaster):
    """Any forecaster plus Barista-style error compensation, kept only where it helps.

    :meth:`fit` runs ``base`` from ``n_windows`` rolling origins that tile the end of
    the series (``horizon`` apart), trains an :class:`ErrorCompensator` on those
    out-of-sample errors, then fits ``base`` on the whole series. Intervals are the
    base model's, shifted with the corrected mean.

    Parameters
    ----------
    base : BaseForecaster
        Unfitted forecaster (copied, not modified).
    horizon : int
        Horizon of the evaluation windows.
    n_windows : int
        Number of evaluation windows.
    n_lags, seed : int
        Passed to :class:`ErrorCompensator`.
    """

    name = "compensated"

    def __init__(
        self,
        base: BaseForecaster,
        horizon: int = 24,
        n_windows: int = 12,
        n_lags: int = 5,
        seed: int = 0,
    ) -> None:
        self.base = base
        self.horizon = horizon
        self.n_windows = n_windows
        self.n_lags = n_lags
        self.seed = seed

    def min_length(self) -> int:
        return self.base.min_length() + int(self.n_windows) * int(self.horizon)

    def describe(self) -> str:
        return f"compensated({self.base.describe()})"

    def _info(self) -> dict[str, Any]:
        return {"compensation": self.compensator_.decision()}

    def _fit(self, y: np.ndarray) -> None:
        def make() -> BaseForecaster:
            return type(self.base)(**self.base.get_params())

        origins = window_origins(len(y), int(self.horizon), int(self.n_windows))
        forecasts = rolling_forecasts(make, y, origins, int(self.horizon))
        actuals = window_actuals(y, origins, int(self.horizon))
        self.compensator_ = ErrorCompensator(n_lags=self.n_lags, seed=self.seed).fit(
            forecasts, actuals
        )
        self.model_ = make().fit(y)

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        res = self.model_.predict(h, levels)
        mean = self.compensator_.adjust(res.mean)
        shift = mean - res.mean
        lower = {lv: res.lower[lv] + shift for lv in levels}
        upper = {lv: res.upper[lv] + shift for lv in levels}
        return mean, lower, upper
