"""statsforecast models behind the edgewise contract: MSTL, AutoETS, seasonal smoothing.

MSTL splits the series into one seasonal component per season length (LOESS, via
statsmodels' STL) plus trend and remainder, forecasts the seasonally adjusted part with
a simple trend model and adds the seasonal components back. Its cost is the
decompositions: with statsmodels' default LOESS steps one fit of eight weeks of hourly
data takes about 250 ms here; evaluating the LOESS fits every few points
(``*_jump``, as R's ``stl`` does, every quarter season for the trend) brings it to
about 15 ms at the same accuracy, and R's two STL inner iterations instead of
statsmodels' five to about 6 ms (:mod:`edgewise.forecast.decompose`). AutoETS picks an exponential-smoothing model by AICc; statsforecast supports
its seasonality only up to 24 steps, longer seasons give a non-seasonal model.
:class:`SeasonalES` smooths each phase of the season exponentially (statsforecast
``SeasonalExponentialSmoothingOptimized``): between the seasonal naive (weight 1 on the
last season) and a seasonal mean, with the weight fitted; about a millisecond a fit.

Pure computation: numpy in, numpy out.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgewise.forecast.base import BaseForecaster
from edgewise.forecast.decompose import mstl_decompose
from edgewise.forecast.intervals import empirical_bounds

__all__ = ["MSTL", "AutoETS", "SeasonalES", "default_stl_kwargs"]

_ETS_MAX_SEASON = 24


def default_stl_kwargs(season_lengths: Sequence[int]) -> dict[str, int]:
    """LOESS step sizes for :func:`~edgewise.forecast.decompose.mstl_decompose`.

    The seasonal smoother keeps a step of 2 (R's ``ceiling(s.window / 10)`` for its
    seasonal windows of 11 and 15); the trend and low-pass smoothers, whose windows are
    about 1.7 and 1 times the longest season, are evaluated every quarter of the longest
    season and interpolated in between, in every season's STL. On the hourly traces
    (seasons 24 and 168) that took 27 % less time than every eighth of a season, with
    the same or a lower MAE and coverage within a point; the shorter seasons' STLs are
    smoothed again by the longest one's within each MSTL pass.
    """
    jump = max(1, math.ceil(max(season_lengths) / 4))
    return {"seasonal_jump": 2, "trend_jump": jump, "low_pass_jump": jump}


def _trend_model(trend: str) -> Any:
    from statsforecast.models import AutoETS as SfAutoETS
    from statsforecast.models import Naive, SimpleExponentialSmoothingOptimized

    if trend == "naive":
        return Naive()
    if trend == "ses":
        return SimpleExponentialSmoothingOptimized()
    if trend == "ets":
        return SfAutoETS(model="ZZN")
    raise ValueError(f"trend must be 'naive', 'ses' or 'ets', got {trend!r}")


def _predict_quietly(
    model: Any, h: int, levels: tuple[int, ...]
) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """A fitted statsforecast model's forecast with intervals, its warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.predict(h=h, level=list(levels) or None)
    return _unpack(out, levels)


def _unpack(
    out: dict[str, np.ndarray], levels: tuple[int, ...]
) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
    mean = np.asarray(out["mean"], dtype=float)
    lower = {lv: np.asarray(out[f"lo-{lv}"], dtype=float) for lv in levels}
    upper = {lv: np.asarray(out[f"hi-{lv}"], dtype=float) for lv in levels}
    return mean, lower, upper


class MSTL(BaseForecaster):
    """Multiple seasonal-trend decomposition by LOESS, then a trend model.

    The decomposition is :func:`~edgewise.forecast.decompose.mstl_decompose` (statsforecast's
    ``mstl`` with R's two STL inner iterations); the seasonally adjusted series is
    forecast by a statsforecast trend model, whose intervals are the model's, and each
    seasonal component by its last season (as statsforecast's ``MSTL``).

    Parameters
    ----------
    season_lengths : sequence of int
        Season lengths in steps, e.g. ``(24, 168)`` for hourly data; lengths of 1 are
        ignored.
    trend : {'naive', 'ses', 'ets'}
        Model of the seasonally adjusted series: last value, optimised simple
        exponential smoothing, or AutoETS without seasonality.
    stl_kwargs : dict, optional
        Passed to statsmodels' STL; default :func:`default_stl_kwargs`.
    max_train : int, optional
        Use only the last ``max_train`` points (cost grows with the length).
    inner_iter : int
        STL inner loop iterations (R's default 2; statsmodels' own default of 5 took
        twice the time for a forecast within a fraction of a percent).
    """

    name = "mstl"

    def __init__(
        self,
        season_lengths: Sequence[int] = (24, 168),
        trend: str = "naive",
        stl_kwargs: dict[str, Any] | None = None,
        max_train: int | None = None,
        inner_iter: int = 2,
    ) -> None:
        self.season_lengths = season_lengths
        self.trend = trend
        self.stl_kwargs = stl_kwargs
        self.max_train = max_train
        self.inner_iter = inner_iter

    def _seasons(self) -> list[int]:
        seasons = sorted({int(s) for s in self.season_lengths if int(s) > 1})
        if not seasons:
            raise ValueError(f"MSTL needs a season length above 1, got {self.season_lengths}")
        return seasons

    def min_length(self) -> int:
        return 2 * max(self._seasons()) + 1

    def describe(self) -> str:
        return f"mstl({','.join(map(str, self._seasons()))})"

    def _fit(self, y: np.ndarray) -> None:
        seasons = self._seasons()
        if self.max_train is not None:
            y = y[-max(int(self.max_train), self.min_length()) :]
        kwargs = default_stl_kwargs(seasons) if self.stl_kwargs is None else dict(self.stl_kwargs)
        self.decomposition_ = mstl_decompose(
            y, seasons, inner_iter=int(self.inner_iter), stl_kwargs=kwargs
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = _trend_model(self.trend).fit(y=self.decomposition_.adjusted)

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        mean, lower, upper = _predict_quietly(self.model_, h, levels)
        seasonal = self.decomposition_.seasonal_forecast(h)
        return (
            mean + seasonal,
            {lv: b + seasonal for lv, b in lower.items()},
            {lv: b + seasonal for lv, b in upper.items()},
        )


class AutoETS(BaseForecaster):
    """Exponential smoothing chosen by AICc (statsforecast ``AutoETS``).

    Parameters
    ----------
    season : int
        Season length in steps; above 24 statsforecast fits a non-seasonal model.
    model : str
        ETS specification (error, trend, season), ``'Z'`` = choose automatically.
    max_train : int, optional
        Use only the last ``max_train`` points (AutoETS is slow on long series).
    """

    name = "autoets"

    def __init__(self, season: int = 24, model: str = "ZZZ", max_train: int | None = None) -> None:
        self.season = season
        self.model = model
        self.max_train = max_train

    def _effective_season(self) -> int:
        s = int(self.season)
        return s if 1 <= s <= _ETS_MAX_SEASON else 1

    def min_length(self) -> int:
        return max(4, 2 * self._effective_season())

    def describe(self) -> str:
        return f"autoets({self._effective_season()})"

    def _info(self) -> dict[str, Any]:
        return {"season": self._effective_season()}

    def _fit(self, y: np.ndarray) -> None:
        from statsforecast.models import AutoETS as SfAutoETS

        if self.max_train is not None:
            y = y[-max(int(self.max_train), self.min_length()) :]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = SfAutoETS(season_length=self._effective_season(), model=self.model).fit(y)

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        return _predict_quietly(self.model_, h, levels)


class SeasonalES(BaseForecaster):
    """Exponential smoothing of each phase of a season, the weight fitted.

    Intervals come from the seasonal naive's in-sample errors widened with the square
    root of the seasons ahead (as :class:`~edgewise.forecast.naive.SeasonalNaive`).

    Parameters
    ----------
    season : int
        Season length in steps.
    """

    name = "seasonal_es"

    def __init__(self, season: int = 168) -> None:
        self.season = season

    def min_length(self) -> int:
        return 2 * int(self.season)

    def describe(self) -> str:
        return f"seasonal_es({self.season})"

    def _fit(self, y: np.ndarray) -> None:
        from statsforecast.models import SeasonalExponentialSmoothingOptimized

        s = int(self.season)
        if s < 1:
            raise ValueError(f"season must be at least 1, got {self.season}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = SeasonalExponentialSmoothingOptimized(season_length=s).fit(y)
        self.residuals_ = y[s:] - y[:-s]

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mean = np.asarray(self.model_.predict(h=h)["mean"], dtype=float)
        s = int(self.season)
        ahead = np.sqrt(np.arange(h) // s + 1.0)
        lower, upper = empirical_bounds(mean, self.residuals_, levels, ahead)
        return mean, lower, upper
