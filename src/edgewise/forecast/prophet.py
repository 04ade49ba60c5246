"""Prophet, an optional comparison (the Barista code used it); never required.

:func:`make_prophet` returns ``None`` when the ``prophet`` package is not importable.
Prophet's own uncertainty sampling draws from numpy's global random state, so it is
switched off and intervals come from the in-sample residuals instead.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from edgewise.forecast.base import BaseForecaster
from edgewise.forecast.intervals import empirical_bounds

__all__ = ["ProphetForecaster", "make_prophet", "prophet_available"]

_ANCHOR = pd.Timestamp("2001-01-01")  # a Monday; only relative time matters


def prophet_available() -> bool:
    """Whether ``import prophet`` would succeed."""
    return importlib.util.find_spec("prophet") is not None


class ProphetForecaster(BaseForecaster):
    """Prophet on an equally spaced series.

    Parameters
    ----------
    freq : str
        pandas frequency of the series (``'h'``, ``'D'``, ``'min'``).
    season_lengths : sequence of int
        Used only for the minimum length (two of the longest season).
    """

    name = "prophet"

    def __init__(self, freq: str = "h", season_lengths: Sequence[int] = (24, 168)) -> None:
        self.freq = freq
        self.season_lengths = season_lengths

    def min_length(self) -> int:
        return 2 * max([*self.season_lengths, 2])

    def _fit(self, y: np.ndarray) -> None:
        from prophet import Prophet

        logging.getLogger("cmdstanpy").setLevel(logging.WARNING)
        ds = pd.date_range(_ANCHOR, periods=len(y), freq=self.freq)
        self.model_ = Prophet(uncertainty_samples=0).fit(pd.DataFrame({"ds": ds, "y": y}))
        fitted = self.model_.predict(pd.DataFrame({"ds": ds}))["yhat"].to_numpy(dtype=float)
        self.residuals_ = y - fitted
        self.end_ = ds[-1]

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        ds = pd.date_range(self.end_, periods=h + 1, freq=self.freq)[1:]
        mean = self.model_.predict(pd.DataFrame({"ds": ds}))["yhat"].to_numpy(dtype=float)
        lower, upper = empirical_bounds(mean, self.residuals_, levels)
        return mean, lower, upper


def make_prophet(
    freq: str = "h", season_lengths: Sequence[int] = (24, 168)
) -> ProphetForecaster | None:
    """A :class:`ProphetForecaster`, or ``None`` when Prophet is not installed."""
    if not prophet_available():
        return None
    return ProphetForecaster(freq=freq, season_lengths=tuple(season_lengths))
