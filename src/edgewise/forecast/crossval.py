"""Rolling-origin evaluation: forecasts made at past origins, never seeing what follows.

Window ``w`` forecasts ``horizon`` steps from origin ``o_w`` using only ``y[:o_w]``.
With the default step (the horizon) the windows tile the last ``n_windows * horizon``
points of the series, so their errors form one contiguous error series, which error
compensation (:mod:`edgewise.forecast.compensate`) reads as "the last few errors".
Pure computation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgewise.forecast.base import BaseForecaster

__all__ = ["rolling_forecasts", "window_actuals", "window_origins"]


def window_origins(n: int, horizon: int, n_windows: int, step: int | None = None) -> np.ndarray:
    """Origins of ``n_windows`` windows ``step`` apart, the last one ending at ``n``."""
    step = horizon if step is None else step
    if horizon < 1 or n_windows < 1 or step < 1:
        raise ValueError("horizon, n_windows and step must be at least 1")
    last = n - horizon
    return np.array([last - (n_windows - 1 - w) * step for w in range(n_windows)], dtype=int)


def rolling_forecasts(
    make: Callable[[], BaseForecaster],
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    max_train: int | None = None,
) -> np.ndarray:
    """Point forecasts from each origin, shape ``(len(origins), horizon)``.

    Parameters
    ----------
    make : callable
        Returns a fresh unfitted forecaster.
    y : numpy.ndarray
        The series.
    origins : numpy.ndarray
        Window origins (indices into ``y``); window ``w`` is fit on ``y[:origins[w]]``.
    horizon : int
        Steps forecast from each origin.
    max_train : int, optional
        Fit on at most the last ``max_train`` points before each origin.
    """
    out = np.empty((len(origins), horizon))
    for w, o in enumerate(origins):
        start = 0 if max_train is None else max(0, int(o) - max_train)
        out[w] = make().fit(y[start : int(o)]).predict(horizon).mean
    return out


def window_actuals(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The values each window forecast, shape ``(len(origins), horizon)``."""
    return np.stack([y[int(o) : int(o) + horizon] for o in origins])
