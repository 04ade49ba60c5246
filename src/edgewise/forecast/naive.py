"""Seasonal baselines: the last season repeated, and the median of the last few seasons.

A weekly seasonal naive forecast is a strong floor for demand traces; the median of
the same hour over the last few weeks is a cheap, robust improvement on it (one odd
week, a holiday or a storm, no longer dictates next week). Intervals come from the
method's own in-sample errors, widened with the square root of the number of seasons
ahead. Pure numpy functions, thin estimator classes on top.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgewise.forecast.base import BaseForecaster
from edgewise.forecast.intervals import empirical_bounds

__all__ = ["SeasonalAverage", "SeasonalNaive", "seasonal_profile", "seasons_ahead"]


def seasons_ahead(h: int, season: int) -> np.ndarray:
    """How many seasons back the value used for each of ``h`` steps lies (1, 1, ..., 2, ...)."""
    return np.arange(h) // season + 1


def seasonal_profile(y: np.ndarray, season: int, n_seasons: int, statistic: str) -> np.ndarray:
    """Per-phase statistic over the last ``n_seasons`` full seasons, shape ``(season,)``.

    Phase 0 is the phase of the step right after the end of ``y``.
    """
    block = y[len(y) - n_seasons * season :].reshape(n_seasons, season)
    if statistic == "median":
        return np.asarray(np.median(block, axis=0))
    return np.asarray(block.mean(axis=0))


def _lagged_stat(y: np.ndarray, season: int, n_seasons: int, statistic: str) -> np.ndarray:
    """In-sample forecasts: the statistic of ``y[t - k*season]``, k = 1..n_seasons."""
    n = len(y)
    start = n_seasons * season
    lags = np.stack([y[start - k * season : n - k * season] for k in range(1, n_seasons + 1)])
    return np.asarray(np.median(lags, axis=0) if statistic == "median" else lags.mean(axis=0))


class SeasonalNaive(BaseForecaster):
    """Repeat the last season: ``yhat[t + j] = y[t + j - season * ceil(j / season)]``.

    Parameters
    ----------
    season : int
        Season length in steps (24 for daily seasonality of hourly data, 168 weekly).
    """

    name = "seasonal_naive"

    def __init__(self, season: int = 24) -> None:
        self.season = season

    def min_length(self) -> int:
        return 2 * int(self.season)

    def describe(self) -> str:
        return f"seasonal_naive({self.season})"

    def _fit(self, y: np.ndarray) -> None:
        s = int(self.season)
        if s < 1:
            raise ValueError(f"season must be at least 1, got {self.season}")
        self.last_season_ = y[-s:].copy()
        self.residuals_ = y[s:] - y[:-s]

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        s = int(self.season)
        mean = self.last_season_[np.arange(h) % s]
        lower, upper = empirical_bounds(mean, self.residuals_, levels, np.sqrt(seasons_ahead(h, s)))
        return mean, lower, upper


class SeasonalAverage(BaseForecaster):
    """Median (or mean) of the same phase over the last ``n_seasons`` seasons.

    Parameters
    ----------
    season : int
        Season length in steps.
    n_seasons : int
        How many past seasons to combine.
    statistic : {'median', 'mean'}
        How to combine them; the median shrugs off one unusual season.
    """

    name = "seasonal_average"

    def __init__(self, season: int = 168, n_seasons: int = 4, statistic: str = "median") -> None:
        self.season = season
        self.n_seasons = n_seasons
        self.statistic = statistic

    def min_length(self) -> int:
        return (int(self.n_seasons) + 1) * int(self.season)

    def describe(self) -> str:
        return f"seasonal_{self.statistic}({self.season}x{self.n_seasons})"

    def _info(self) -> dict[str, Any]:
        return {"season": self.season, "n_seasons": self.n_seasons}

    def _fit(self, y: np.ndarray) -> None:
        if self.statistic not in ("median", "mean"):
            raise ValueError(f"statistic must be 'median' or 'mean', got {self.statistic!r}")
        s, k = int(self.season), int(self.n_seasons)
        if s < 1 or k < 1:
            raise ValueError("season and n_seasons must be at least 1")
        self.profile_ = seasonal_profile(y, s, k, self.statistic)
        self.residuals_ = y[k * s :] - _lagged_stat(y, s, k, self.statistic)

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        s = int(self.season)
        mean = self.profile_[np.arange(h) % s]
        lower, upper = empirical_bounds(mean, self.residuals_, levels, np.sqrt(seasons_ahead(h, s)))
        return mean, lower, upper
