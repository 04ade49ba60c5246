"""Automatic choice of forecaster by a rolling-origin backtest on the series itself.

Every candidate forecasts ``horizon`` steps from origins ``step`` apart at the end of
the training series, never seeing what follows (the horizon and step the planner
uses). The candidates are the seasonal naives (one per season), seasonal medians,
seasonal exponential smoothing, MSTL, fixed combinations and the mean of the two best
single candidates; they are ranked by mean absolute error on the latest ``n_windows``
windows. The winner must beat the best seasonal naive by ``min_gain`` in that
backtest, and still beat it with its own best window left out, or the best seasonal
naive is used: on a trace nobody tuned for, a model that only ties the floor in the
backtest tends to trail it afterwards.

The chosen model's errors on up to ``calibration_windows`` windows calibrate its
intervals per horizon step
(:class:`~edgewise.forecast.intervals.StepConformalCalibrator`). The cheap candidates
are backtested on all of them anyway; an MSTL-based choice is backtested on the extra
ones only once chosen (each is one more MSTL fit of about 6 ms).

Bad input falls back and says so in ``info['notes']`` and ``info['decision']`` (see
:mod:`edgewise.forecast.guards`): a constant series forecasts its value; a series
shorter than two longest seasons tries only the candidates it has history for; a level
shift at the very end switches to the shortest season's naive, which follows the new
level. Pure computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgewise.errors import TraceError
from edgewise.forecast.base import BaseForecaster
from edgewise.forecast.compensate import ErrorCompensator
from edgewise.forecast.crossval import rolling_forecasts, window_actuals, window_origins
from edgewise.forecast.guards import is_constant, level_shift_at_end, short_series_note
from edgewise.forecast.intervals import StepConformalCalibrator
from edgewise.forecast.registry import check_seasons, make_forecaster

__all__ = ["AutoForecaster", "Backtest", "default_candidates", "is_naive"]

_MIN_WINDOWS = 3
_AVERAGE_SEASONS = (3, 4, 6)
_MSTL_CAL_WINDOWS = 14  # an MSTL-based choice is calibrated on at most this many windows


def default_candidates(season_lengths: Sequence[int]) -> tuple[str, ...]:
    """Seasonal naive per season, medians of 3/4/6 longest seasons, seasonal ES, MSTL,
    MSTL+median.

    AutoETS and AutoTheta are not among them: their model search took 0.25 to 3 s a fit
    of eight weeks of hourly data here, beyond the planner's budget for a whole
    selection; pass ``candidates`` to include ``autoets``.
    """
    seasons = check_seasons(season_lengths)
    names = [f"seasonal_naive_{s}" for s in seasons]
    names += [f"seasonal_median_{k}" for k in _AVERAGE_SEASONS]
    names += [f"seasonal_es_{seasons[-1]}"]
    names += ["mstl"]
    names += [f"mstl+seasonal_median_{k}" for k in _AVERAGE_SEASONS]
    return tuple(names)


def is_naive(name: str) -> bool:
    """Whether a candidate name is a plain seasonal naive."""
    return name.startswith("seasonal_naive") and "+" not in name


def _members(name: str) -> list[str]:
    return [m.strip() for m in name.split("+")]


class Backtest:
    """Rolling-origin window forecasts of candidate members, computed as needed.

    Window forecasts are cached per member (an ensemble's are the mean of its members'),
    and rows are computed only when asked for, so that an expensive member backtested on
    the selection windows is extended to the calibration windows only when chosen.

    Parameters
    ----------
    make : callable
        ``make(member)`` returns a fresh unfitted forecaster.
    y : numpy.ndarray
        The series.
    origins : numpy.ndarray
        All window origins, oldest first.
    horizon : int
        Steps per window.
    """

    def __init__(self, make: Any, y: np.ndarray, origins: np.ndarray, horizon: int) -> None:
        self.make = make
        self.y = y
        self.origins = origins
        self.horizon = horizon
        self.actuals = window_actuals(y, origins, horizon)
        self._cache: dict[str, np.ndarray] = {}

    def first_row(self, name: str) -> int:
        """First window whose origin leaves every member of ``name`` enough history."""
        need = max(self.make(m).min_length() for m in _members(name))
        ok = np.flatnonzero(self.origins >= need)
        return int(ok[0]) if ok.size else len(self.origins)

    def member(self, member: str, rows: range) -> np.ndarray:
        """Forecasts of ``member`` for window ``rows`` (computing those not cached)."""
        cached = self._cache.get(member)
        if cached is None:
            cached = np.full((len(self.origins), self.horizon), np.nan)
            self._cache[member] = cached
        todo = [r for r in rows if np.isnan(cached[r, 0])]
        if todo:
            idx = np.array(todo)
            cached[idx] = rolling_forecasts(
                lambda: self.make(member), self.y, self.origins[idx], self.horizon
            )
        return cached[rows.start : rows.stop]

    def forecasts(self, name: str, rows: range, nonnegative: bool) -> np.ndarray:
        """Forecasts of candidate ``name`` (mean of its members) for window ``rows``."""
        f = np.mean([self.member(m, rows) for m in _members(name)], axis=0)
        return np.clip(f, 0.0, None) if nonnegative else f


class AutoForecaster(BaseForecaster):
    """Pick by rolling-origin backtest, never worse than the best seasonal naive; calibrate.

    Parameters
    ----------
    season_lengths : sequence of int
        Season lengths in steps.
    candidates : sequence of str, optional
        Names for :func:`~edgewise.forecast.registry.make_forecaster`; default
        :func:`default_candidates` plus the mean of the two best single candidates.
        Candidates needing more history than the series leaves before the first
        selection window are skipped.
    n_windows : int
        Selection windows (fewer when the series is short, at least 3).
    horizon : int, optional
        Steps per window, the horizon the intervals are calibrated for; default the
        shortest season.
    compensate : bool
        Try Barista error compensation (kept only if it lowers held-out MAE). Off by
        default: its correction moves the mean away from the errors the intervals were
        calibrated on, and its fit took a quarter of the selection's time.
    calibrate : bool
        Replace the chosen model's intervals by per-step split-conformal ones.
    floor_fraction : float
        Floor of the conformal scores' normaliser as a fraction of the mean level.
    seed : int
        Seed of the error-compensation regressor.
    step : int, optional
        Steps between window origins (the planner's re-planning period); default the
        horizon.
    calibration_windows : int
        Windows the chosen model's intervals are calibrated on (at most; at least
        ``n_windows``).
    min_gain : float
        Relative backtest MAE gain over the best seasonal naive a candidate needs to be
        chosen instead of it.
    """

    name = "auto"

    def __init__(
        self,
        season_lengths: Sequence[int] = (24, 168),
        candidates: Sequence[str] | None = None,
        n_windows: int = 7,
        horizon: int | None = None,
        compensate: bool = False,
        calibrate: bool = True,
        floor_fraction: float = 0.02,
        seed: int = 0,
        step: int | None = None,
        calibration_windows: int = 14,
        min_gain: float = 0.15,
    ) -> None:
        self.season_lengths = season_lengths
        self.candidates = candidates
        self.n_windows = n_windows
        self.horizon = horizon
        self.compensate = compensate
        self.calibrate = calibrate
        self.floor_fraction = floor_fraction
        self.seed = seed
        self.step = step
        self.calibration_windows = calibration_windows
        self.min_gain = min_gain

    # -- helpers ----------------------------------------------------------------------
    def _seasons(self) -> tuple[int, ...]:
        return check_seasons(self.season_lengths)

    def _horizon(self) -> int:
        h = self._seasons()[0] if self.horizon is None else int(self.horizon)
        if h < 1:
            raise ValueError(f"horizon must be at least 1, got {self.horizon}")
        return h

    def _step(self) -> int:
        step = self._horizon() if self.step is None else int(self.step)
        if step < 1:
            raise ValueError(f"step must be at least 1, got {self.step}")
        return step

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
        return shortest + self._horizon() + (_MIN_WINDOWS - 1) * self._step()

    def describe(self) -> str:
        chosen = getattr(self, "chosen_", None)
        return f"auto({chosen})" if chosen else "auto"

    def _info(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen_,
            "cv_mae": self.cv_mae_,
            "n_windows": self.n_windows_,
            "best_naive": self.best_naive_,
            "gain_over_naive": self.gain_,
            "decision": self.decision_,
            "notes": list(self.notes_),
            "calibration_windows": self.calibration_windows_,
            "compensation": self.compensator_.decision() if self.compensator_ else None,
            "calibrated": self.calibrator_ is not None,
        }

    # -- fit / predict ----------------------------------------------------------------
    def _windows(self, n: int) -> tuple[np.ndarray, int]:
        """All window origins (calibration windows) and how many are for selection."""
        horizon, step = self._horizon(), self._step()
        shortest = min(self._make(c).min_length() for c in self._candidate_names())
        room = (n - horizon - shortest) // step + 1
        n_sel = min(int(self.n_windows), room)
        if n_sel < _MIN_WINDOWS:  # guarded by min_length; kept for a clear message
            raise TraceError(f"series too short for {_MIN_WINDOWS} evaluation windows")
        n_cal = max(n_sel, min(int(self.calibration_windows), room))
        return window_origins(n, horizon, n_cal, step), n_sel

    def _score(self, bt: Backtest, sel: range) -> dict[str, np.ndarray]:
        """Per-window backtest MAE of every candidate with history for all selection windows."""
        actual = bt.actuals[sel.start : sel.stop]
        scores: dict[str, np.ndarray] = {}
        for name in self._candidate_names():
            if bt.first_row(name) > sel.start:
                continue  # needs more history than the first window has
            f = bt.forecasts(name, sel, self.nonnegative_)
            scores[name] = np.abs(actual - f).mean(axis=1)
        singles = [k for k in scores if "+" not in k and not is_naive(k)]
        if self.candidates is None and len(singles) >= 2:
            a, b = sorted(singles, key=lambda k: float(scores[k].mean()))[:2]
            if f"{a}+{b}" not in scores and f"{b}+{a}" not in scores:
                f = bt.forecasts(f"{a}+{b}", sel, self.nonnegative_)
                scores[f"{a}+{b}"] = np.abs(actual - f).mean(axis=1)
        return scores

    def _decide(self, window_mae: dict[str, np.ndarray]) -> None:
        """The lowest backtest MAE, unless it does not clearly beat the best naive.

        Clearly: by ``min_gain`` in mean, and still ahead with its best window left out
        (a mean won by one lucky window does not carry over to the next days).
        """
        scores = {k: float(v.mean()) for k, v in window_mae.items()}
        best = min(scores, key=lambda k: scores[k])  # first of equals wins (list order)
        naives = [k for k in scores if is_naive(k)]
        self.best_naive_ = min(naives, key=lambda k: scores[k]) if naives else None
        self.chosen_, self.decision_, self.gain_ = best, "lowest backtest MAE", None
        if self.best_naive_ is None:
            return
        naive = self.best_naive_
        base = scores[naive]
        self.gain_ = 1.0 - scores[best] / base if base > 0 else 0.0
        if is_naive(best):
            return
        advantage = window_mae[naive] - window_mae[best]
        robust = float(advantage.sum() - advantage.max()) > 0
        if self.gain_ < float(self.min_gain) or not robust:
            why = "" if robust else ", and not without its best window"
            self.decision_ = (
                f"{best} beat {naive} by {self.gain_:.1%}{why} (needs "
                f"{float(self.min_gain):.0%}): the naive is used"
            )
            self.chosen_, self.gain_ = naive, 0.0

    def _fit_constant(self, y: np.ndarray) -> None:
        """A constant series: forecast its value, with zero-width intervals."""
        self.chosen_ = self.best_naive_ = f"seasonal_naive_{self._seasons()[0]}"
        self.decision_ = f"constant series (every value {y[0]:g}): that value is forecast"
        self.gain_, self.cv_mae_ = 0.0, dict[str, float]()
        self.horizon_, self.n_windows_, self.calibration_windows_ = self._horizon(), 0, 0
        self.model_ = self._make(self.chosen_).fit(y)
        self.calibrator_: StepConformalCalibrator | None = None
        self.compensator_: ErrorCompensator | None = None

    def _follow_shift(self, y: np.ndarray, window_mae: dict[str, np.ndarray]) -> None:
        """After a level shift at the end, the shortest season's naive follows it."""
        seasons = self._seasons()
        shift = level_shift_at_end(y, seasons[0], seasons[-1])
        naive = f"seasonal_naive_{seasons[0]}"
        if shift is None or naive not in window_mae or self.chosen_ == naive:
            return
        self.notes_.append(
            f"level shift at the end: the last {seasons[0]} points are {shift:.2f}x the "
            f"level one season before; {naive} is used instead of {self.chosen_}"
        )
        self.chosen_, self.decision_, self.gain_ = naive, "level shift at the end", None

    def _fit(self, y: np.ndarray) -> None:
        self.notes_: list[str] = []
        note = short_series_note(len(y), self._seasons())
        if note:
            self.notes_.append(note)
        if is_constant(y):
            self._fit_constant(y)
            return
        horizon = self._horizon()
        origins, n_sel = self._windows(len(y))
        bt = Backtest(self._make, y, origins, horizon)
        sel = range(len(origins) - n_sel, len(origins))
        window_mae = self._score(bt, sel)
        self._decide(window_mae)
        self._follow_shift(y, window_mae)
        chosen = self.chosen_
        first = bt.first_row(chosen)
        if "mstl" in chosen:  # each extra window is one more MSTL fit
            first = max(first, len(origins) - max(n_sel, _MSTL_CAL_WINDOWS))
        cal = range(first, len(origins))
        forecasts = bt.forecasts(chosen, cal, self.nonnegative_)
        actuals = bt.actuals[cal.start : cal.stop]

        self.horizon_ = horizon
        self.n_windows_ = n_sel
        self.calibration_windows_ = len(cal)
        self.cv_mae_ = {k: float(v.mean()) for k, v in window_mae.items()}
        self.model_ = self._make(chosen).fit(y)
        self.calibrator_ = (
            StepConformalCalibrator(self.floor_fraction).fit(forecasts, actuals)
            if self.calibrate
            else None
        )
        tiled = self._step() == horizon
        self.compensator_ = (
            ErrorCompensator(seed=self.seed).fit(forecasts, actuals)
            if self.compensate and tiled
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
