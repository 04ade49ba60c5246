"""The forecaster contract and the forecast it returns.

Every forecaster follows the scikit-learn estimator habits: ``__init__`` only stores
parameters, :meth:`BaseForecaster.fit` learns state into attributes ending in ``_``
and returns ``self``, :meth:`BaseForecaster.predict` refuses an unfitted model, and
:meth:`BaseForecaster.forecast` is the stateless ``fit(y).predict(h, level)``.

Forecasters take and return plain numpy arrays (one equally spaced series, oldest
first). All of this is pure computation: no I/O, no clock, no global random state.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
from sklearn.exceptions import NotFittedError

from edgewise.errors import TraceError

__all__ = [
    "BaseForecaster",
    "ForecastResult",
    "Forecaster",
    "NotFittedError",
    "check_levels",
    "check_series",
]


@dataclass(frozen=True)
class ForecastResult:
    """A point forecast with prediction intervals.

    Parameters
    ----------
    mean : numpy.ndarray
        Point forecast, shape ``(h,)``.
    lower, upper : dict[int, numpy.ndarray]
        Lower and upper bounds of the central prediction interval for each level in
        percent (``{90: array(h)}``); ``upper[90]`` is the 95% upper quantile.
    method : str
        Name of the forecaster that produced it (for an automatic choice, the choice).
    info : dict
        Method-specific facts (selection scores, compensation decision...), JSON-able.
    """

    mean: np.ndarray
    lower: dict[int, np.ndarray] = field(default_factory=dict)
    upper: dict[int, np.ndarray] = field(default_factory=dict)
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=float)
        if mean.ndim != 1:
            raise ValueError(f"mean must be 1-D, got shape {mean.shape}")
        object.__setattr__(self, "mean", mean)
        if set(self.lower) != set(self.upper):
            raise ValueError("lower and upper must have the same levels")
        for side in ("lower", "upper"):
            checked: dict[int, np.ndarray] = {}
            for level, values in getattr(self, side).items():
                arr = np.asarray(values, dtype=float)
                if arr.shape != mean.shape:
                    raise ValueError(f"{side} bound at level {level} has shape {arr.shape}")
                checked[int(level)] = arr
            object.__setattr__(self, side, checked)

    @property
    def horizon(self) -> int:
        """Number of steps forecast."""
        return int(self.mean.shape[0])

    @property
    def levels(self) -> tuple[int, ...]:
        """Interval levels present, ascending."""
        return tuple(sorted(self.lower))

    def to_json(self) -> dict[str, Any]:
        """Plain dict ``{mean: [...], lower: {"90": [...]}, upper: {...}}`` (KB ``Forecast.values``)."""
        return {
            "mean": self.mean.tolist(),
            "lower": {str(k): v.tolist() for k, v in sorted(self.lower.items())},
            "upper": {str(k): v.tolist() for k, v in sorted(self.upper.items())},
        }


@runtime_checkable
class Forecaster(Protocol):
    """What every forecaster offers."""

    def fit(self, y: np.ndarray) -> Self: ...

    def predict(self, h: int, level: Sequence[int] = ()) -> ForecastResult: ...

    def forecast(self, y: np.ndarray, h: int, level: Sequence[int] = ()) -> ForecastResult: ...


def check_series(y: Any, min_length: int, what: str) -> np.ndarray:
    """Validate a series: 1-D, finite, at least ``min_length`` points.

    Raises
    ------
    TraceError
        One line saying why (too short for ``what`` names the need), for a person to act on.
    """
    arr = np.asarray(y, dtype=float)
    if arr.ndim != 1:
        raise TraceError(f"series must be one-dimensional, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise TraceError(f"series value {int(bad[0])} is not a finite number ({arr[bad[0]]})")
    if arr.shape[0] < min_length:
        raise TraceError(
            f"series too short: {arr.shape[0]} points, {what} needs at least {min_length}"
        )
    return arr


def check_levels(level: Sequence[int] | int | None) -> tuple[int, ...]:
    """Interval levels as sorted unique ints in (0, 100)."""
    if level is None:
        return ()
    levels = (level,) if isinstance(level, int | float) else tuple(level)
    out = []
    for lv in levels:
        if not float(lv).is_integer() or not 0 < lv < 100:
            raise ValueError(f"interval level must be an integer percent in (0, 100), got {lv}")
        out.append(int(lv))
    return tuple(sorted(set(out)))


class BaseForecaster:
    """Shared plumbing: validation, the fitted check, clipping, ``forecast``.

    Subclasses implement :meth:`_fit` (learn from a checked series), :meth:`_predict`
    (mean, lower, upper for checked arguments) and :meth:`min_length`.
    """

    name: str = "forecaster"

    # -- scikit-learn style parameters ------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (as stored)."""
        return {p: getattr(self, p) for p in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- contract ---------------------------------------------------------------------
    def min_length(self) -> int:
        """Fewest points :meth:`fit` accepts."""
        raise NotImplementedError

    def fit(self, y: np.ndarray) -> Self:
        """Learn from ``y`` (oldest first); returns ``self``."""
        arr = check_series(y, self.min_length(), self.describe())
        self.n_obs_ = int(arr.shape[0])
        self.nonnegative_ = bool(arr.min() >= 0)
        self._fit(arr)
        return self

    def predict(self, h: int, level: Sequence[int] = ()) -> ForecastResult:
        """Forecast ``h`` steps after the end of the fitted series.

        Parameters
        ----------
        h : int
            Horizon, at least 1.
        level : sequence of int
            Central interval levels in percent, e.g. ``(80, 90)``.
        """
        if not hasattr(self, "n_obs_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(y) first")
        if int(h) != h or h < 1:
            raise ValueError(f"horizon must be a positive integer, got {h}")
        levels = check_levels(level)
        mean, lower, upper = self._predict(int(h), levels)
        mean = np.asarray(mean, dtype=float)
        lower = {lv: np.minimum(np.asarray(lower[lv], dtype=float), mean) for lv in levels}
        upper = {lv: np.maximum(np.asarray(upper[lv], dtype=float), mean) for lv in levels}
        # nested levels: a wider level never gives a narrower interval
        for a, b in itertools.pairwise(levels):
            lower[b] = np.minimum(lower[b], lower[a])
            upper[b] = np.maximum(upper[b], upper[a])
        if self.nonnegative_:
            mean = np.clip(mean, 0.0, None)
            lower = {lv: np.clip(v, 0.0, None) for lv, v in lower.items()}
            upper = {lv: np.clip(v, 0.0, None) for lv, v in upper.items()}
        return ForecastResult(mean, lower, upper, method=self.describe(), info=self._info())

    def forecast(self, y: np.ndarray, h: int, level: Sequence[int] = ()) -> ForecastResult:
        """Stateless forecast, equal to ``fit(y).predict(h, level)``."""
        return self.fit(y).predict(h, level)

    # -- hooks ------------------------------------------------------------------------
    def describe(self) -> str:
        """Short name with the parameters that matter (``seasonal_naive(168)``)."""
        return self.name

    def _info(self) -> dict[str, Any]:
        return {}

    def _fit(self, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        raise NotImplementedError
