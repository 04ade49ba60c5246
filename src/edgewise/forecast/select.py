"""Automatic choice of forecaster by rolling-origin cross-validation on the series itself.

Every candidate forecasts the last ``n_windows`` horizons of the training series from
origins that never see what follows; the one with the lowest mean absolute error is
refit on the whole series. Ensembles (``'mstl+seasonal_median_4'``) cost nothing extra
to evaluate: their window forecasts are the means of their members'. The same windows
then calibrate the intervals (:class:`~edgewise.forecast.intervals.ConformalCalibrator`)
and train the Barista error compensation
(:class:`~edgewise.forecast.compensate.ErrorCompensator`), kept only where it helps.

Where a weekly seasonal naive forecast is best, it wins the selection: the choice
never trails the simple floor by more than the noise of the windows. Pure computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgewise.errors import TraceError
from edgewise.forecast.base import BaseForecaster
from edgewise.forecast.compensate import ErrorCompensator
from edgewise.forecast.crossval import rolling_forecasts, window_actuals, window_origins
from edgewise.forecast.intervals import ConformalCalibrator
from edgewise.forecast.registry import check_seasons, make_forecaster

__all__ = ["AutoForecaster", "default_candidates"]

_MIN_WINDOWS = 3
_AVERAGE_SEASONS = (3, 4, 6)


def default_candidates(season_lengths: Sequence[int]) -> tuple[str, ...]:
    """Seasonal naive per season, medians of 3/4/6 longest seasons, MSTL, MSTL+median.

    AutoETS is not among them: its model search took over a second a fit here (eight
    fits per selection) and it lost to the weekly naive on bike-share; pass
    ``candidates`` to include it.
    """
    seasons = check_seasons(season_lengths)
    names = [f"seasonal_naive_{s}" for s in seasons]
    names += [f"seasonal_median_{k}" for k in _AVERAGE_SEASONS]
    names += ["mstl"]
    names += [f"mstl+seasonal_median_{k}" for k in _AVERAGE_SEASONS]
    return tuple(names)


class AutoForecaster(BaseForecaster):
    """Pick the candidate with the lowest rolling-origin MAE; calibrate; compensate.

    Parameters
    ----------
    season_lengths : sequence of int
        Season lengths in steps.
    candidates : sequence of str, optional
        Names for :func:`~edgewise.forecast.registry.make_forecaster`; default
        :func:`default_candidates`. Candidates needing more history than the series
        leaves before the first window are skipped.
    n_windows : int
        Evaluation windows (fewer when the series is short, at least 3).
    horizon : int, optional
        Steps per window, the horizon the intervals are calibrated for; default the
        shortest season.
    compensate : bool
        Try Barista error compensation (kept only if it lowers held-out MAE).
    calibrate : bool
        Replace the chosen model's intervals by split-conformal ones.
    floor_fraction : float
        Floor of the conformal scores' normaliser as a fraction of the mean level (see
        :class:`~edgewise.forecast.intervals.ConformalCalibrator`).
    seed : int
        Seed of the error-compensation regressor.
    """

    name = "auto"

    def __init__(
        self,
        season_lengths: Sequence[int] = (24, 168),
        candidates: Sequence[str] | None = None,
        n_windows: int = 7,
        horizon: int | None = None,
        compensate: bool = True,
        calibrate: bool = True,
        floor_fraction: float = 0.02,
        seed: int = 0,
    ) -> None:
        self.season_lengths = season_lengths
        self.candidates = candidates
        self.n_windows = n_windows
        self.horizon = horizon
        self.compensate = compensate
        self.calibrate = calibrate
        self.floor_fraction = floor_fraction
        self.seed = seed

    # -- helpers ----------------------------------------------------------------------
    def _seasons(self) -> tuple[int, ...]:
        return check_seasons(self.season_lengths)

    def _horizon(self) -> int:
        h = self._seasons()[0] if self.horizon is None else int(self.horizon)
        if h < 1:
            raise ValueError(f"horizon must be at least 1, got {self.horizon}")
        return h

    def _candidate_names(self) -> tuple[str, ...]:
        if self.candidates is None:
            return default_candidates(self._seasons())
        if not self.candidates:
            raise ValueError("candidates must not be empty")
        return tuple(self.candidates)

    def _make(self, name: str) -> BaseForecaster:
        return make_forecaster(name, self._seasons(), seed=self.seed)

    def min_length(self) -> int:
        shortest = min(self._make(c).min_length() for c in self._candidate_names())
        return shortest + _MIN_WINDOWS * self._horizon()

    def describe(self) -> str:
        chosen = getattr(self, "chosen_", None)
        return f"auto({chosen})" if chosen else "auto"

    def _info(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen_,
            "cv_mae": self.cv_mae_,
            "n_windows": self.n_windows_,
            "compensation": self.compensator_.decision() if self.compensator_ else None,
            "calibrated": self.calibrator_ is not None,
        }

    # -- fit / predict ----------------------------------------------------------------
    def _fit(self, y: np.ndarray) -> None:
        horizon = self._horizon()
        names = self._candidate_names()
        shortest = min(self._make(c).min_length() for c in names)
        n_windows = min(int(self.n_windows), (len(y) - shortest) // horizon)
        if n_windows < _MIN_WINDOWS:  # guarded by min_length; kept for a clear message
            raise TraceError(f"series too short for {_MIN_WINDOWS} evaluation windows")
        origins = window_origins(len(y), horizon, n_windows)
        actuals = window_actuals(y, origins, horizon)

        member_cache: dict[str, np.ndarray] = {}

        def window_forecasts(member: str) -> np.ndarray:
            if member not in member_cache:
                member_cache[member] = rolling_forecasts(
                    lambda: self._make(member), y, origins, horizon
                )
            return member_cache[member]

        scores: dict[str, float] = {}
        forecasts: dict[str, np.ndarray] = {}
        for name in names:
            if self._make(name).min_length() > origins[0]:
                continue  # needs more history than the first window has
            members = [m.strip() for m in name.split("+")]
            f = np.mean([window_forecasts(m) for m in members], axis=0)
            if self.nonnegative_:
                f = np.clip(f, 0.0, None)
            forecasts[name] = f
            scores[name] = float(np.mean(np.abs(actuals - f)))
        chosen = min(scores, key=lambda k: scores[k])  # first of equals wins (list order)

        self.horizon_ = horizon
        self.n_windows_ = n_windows
        self.cv_mae_ = scores
        self.chosen_ = chosen
        self.model_ = self._make(chosen).fit(y)
        self.calibrator_ = (
            ConformalCalibrator(self.floor_fraction).fit(forecasts[chosen], actuals)
            if self.calibrate
            else None
        )
        self.compensator_ = (
            ErrorCompensator(seed=self.seed).fit(forecasts[chosen], actuals)
            if self.compensate
            else None
        )

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        res = self.model_.predict(h, levels)
        mean = res.mean if self.compensator_ is None else self.compensator_.adjust(res.mean)
        if self.calibrator_ is not None:
            lower, upper = self.calibrator_.bounds(mean, levels)
        else:
            shift = mean - res.mean
            lower = {lv: res.lower[lv] + shift for lv in levels}
            upper = {lv: res.upper[lv] + shift for lv in levels}
        return mean, lower, upper
