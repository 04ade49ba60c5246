"""Forecasters by name: ``make_forecaster('mstl', (24, 168))``.

Names: ``seasonal_naive_daily`` (shortest season), ``seasonal_naive_weekly`` and
``seasonal_naive`` (longest season), ``seasonal_naive_<s>``, ``seasonal_median_<k>`` and
``seasonal_mean_<k>`` (the last ``k`` longest seasons), ``seasonal_es_<s>`` (each phase
of season ``s`` exponentially smoothed), ``mstl``, ``mstl_ets`` (AutoETS
trend), ``autoets``, ``auto`` (rolling-origin choice), ``prophet`` (optional), and
``a+b`` for the mean of two or more of these.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edgewise.errors import EnvironmentProblem, UnknownNameError
from edgewise.forecast.base import BaseForecaster
from edgewise.forecast.ensemble import Ensemble
from edgewise.forecast.naive import SeasonalAverage, SeasonalNaive
from edgewise.forecast.stats import MSTL, AutoETS, SeasonalES

__all__ = ["FORECASTER_NAMES", "check_seasons", "make_forecaster"]

FORECASTER_NAMES: tuple[str, ...] = (
    "auto",
    "seasonal_naive_daily",
    "seasonal_naive_weekly",
    "seasonal_naive_<s>",
    "seasonal_median_<k>",
    "seasonal_mean_<k>",
    "seasonal_es_<s>",
    "mstl",
    "mstl_ets",
    "autoets",
    "prophet",
)

_ETS_MAX_SEASON = 24


def check_seasons(season_lengths: Sequence[int]) -> tuple[int, ...]:
    """Season lengths as sorted unique ints above 1; ``ValueError`` if none is."""
    seasons = sorted({int(s) for s in season_lengths})
    if any(s < 1 for s in seasons):
        raise ValueError(f"season lengths must be positive, got {list(season_lengths)}")
    seasons = [s for s in seasons if s > 1]
    if not seasons:
        raise ValueError(f"need at least one season length above 1, got {list(season_lengths)}")
    return tuple(seasons)


def _base(name: str, seasons: tuple[int, ...], freq: str) -> BaseForecaster:
    if name == "seasonal_naive_daily":
        return SeasonalNaive(seasons[0])
    if name in ("seasonal_naive_weekly", "seasonal_naive"):
        return SeasonalNaive(seasons[-1])
    if m := re.fullmatch(r"seasonal_naive_(\d+)", name):
        return SeasonalNaive(int(m.group(1)))
    if m := re.fullmatch(r"seasonal_es_(\d+)", name):
        return SeasonalES(int(m.group(1)))
    if m := re.fullmatch(r"seasonal_(median|mean)_(\d+)", name):
        return SeasonalAverage(seasons[-1], int(m.group(2)), m.group(1))
    if name == "mstl":
        return MSTL(seasons)
    if name == "mstl_ets":
        return MSTL(seasons, trend="ets")
    if name == "autoets":
        short = [s for s in seasons if s <= _ETS_MAX_SEASON]
        return AutoETS(short[-1] if short else 1)
    if name == "prophet":
        from edgewise.forecast.prophet import make_prophet

        model = make_prophet(freq=freq, season_lengths=seasons)
        if model is None:
            raise EnvironmentProblem(
                "forecaster 'prophet' needs the optional package prophet (pip install prophet)"
            )
        return model
    raise UnknownNameError(f"unknown forecaster {name!r}; known: {', '.join(FORECASTER_NAMES)}")


def make_forecaster(
    name: str,
    season_lengths: Sequence[int] = (24, 168),
    *,
    horizon: int | None = None,
    seed: int = 0,
    freq: str = "h",
) -> BaseForecaster:
    """Build an unfitted forecaster by name.

    Parameters
    ----------
    name : str
        See the module docstring; ``'a+b'`` averages forecasters ``a`` and ``b``.
    season_lengths : sequence of int
        Season lengths in steps (hourly: ``(24, 168)``).
    horizon : int, optional
        Horizon the ``auto`` forecaster evaluates and calibrates for (default: the
        shortest season).
    seed : int
        Seed of the ``auto`` forecaster's error compensation.
    freq : str
        pandas frequency, used by Prophet only.

    Raises
    ------
    UnknownNameError
        For a name that is not a forecaster.
    EnvironmentProblem
        For ``prophet`` when Prophet is not installed.
    """
    seasons = check_seasons(season_lengths)
    if name == "auto":
        from edgewise.forecast.select import AutoForecaster

        return AutoForecaster(seasons, horizon=horizon, seed=seed)
    if "+" in name:
        return Ensemble([_base(part.strip(), seasons, freq) for part in name.split("+")])
    return _base(name, seasons, freq)
