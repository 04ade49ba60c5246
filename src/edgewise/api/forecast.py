"""Forecast use cases: forecast a trace with intervals, and benchmark a forecaster on it.

:func:`forecast` fits one forecaster on the end of a trace and returns its forecast with
the future time stamps; :func:`benchmark_forecast` runs the rolling-origin evaluation
(from each of ``origins`` origins ``step`` apart, ending ``horizon`` before the end of
the trace, every method is fit on the ``train`` points before the origin and forecasts
``horizon`` steps) and reports the MAE of the chosen method over the seasonal naive with
the longest season, the same for MSTL and (when installed) Prophet, the share of actual
values inside the interval, and the median fit+predict time per origin (wall clock, and
the process CPU time, which a busy shared machine distorts less).
:func:`benchmark_all_traces` runs it on every named trace with the planner's settings and
reports each trace's MAE ratio to its best seasonal naive, with the median and the worst.

Loading the trace and the clock are the effects; the forecasts themselves are the
forecasters' pure computation. :func:`load_series` and :func:`resolve_seasons` are the
trace helpers every command reading a trace shares. The forecasters (statsforecast,
scikit-learn) are imported inside the calls, so that importing this module stays as
cheap as the CLI's start needs.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from edgewise.errors import SpecError, TraceError

if TYPE_CHECKING:
    from edgewise.forecast.base import ForecastResult

__all__ = [
    "TRAIN_SEASONS",
    "ForecastBenchmark",
    "TraceForecast",
    "TraceSetBenchmark",
    "benchmark_all_traces",
    "benchmark_forecast",
    "forecast",
    "future_index",
    "load_series",
    "resolve_seasons",
]

Progress = Callable[[str, int, int], None]

TRAIN_SEASONS = 8  # default history: eight longest seasons (8 weeks of hourly data)


def load_series(trace: str | Path, time_col: str | None, value_col: str | None) -> pd.Series:
    """Load a trace with :func:`edgewise.workloads.traces.load_trace`.

    A named trace (``bikeshare``) has fixed columns: naming them is accepted when they
    match, and is a :class:`TraceError` otherwise.

    Parameters
    ----------
    trace : str or Path
        A trace name (``'bikeshare'``) or a CSV path (plain or compressed).
    time_col, value_col : str, optional
        Columns of a CSV trace.

    Returns
    -------
    pandas.Series
        The values indexed by time.
    """
    from edgewise.workloads.traces import TRACE_NAMES, load_trace

    if isinstance(trace, str) and trace in TRACE_NAMES and not Path(trace).exists():
        series = load_trace(trace)
        for given, key in ((time_col, "time_col"), (value_col, "value_col")):
            if given is not None and given != series.attrs.get(key):
                raise TraceError(
                    f"{trace}: no column {given!r}; its columns are "
                    f"{series.attrs.get('time_col')}, {series.attrs.get('value_col')}"
                )
        return series
    return load_trace(trace, time_col, value_col)


def resolve_seasons(series: pd.Series, seasons: Sequence[int] | None) -> tuple[int, ...]:
    """The given season lengths, or those implied by the series' step.

    Parameters
    ----------
    series : pandas.Series
        A trace indexed by time.
    seasons : sequence of int, optional
        Season lengths in steps; ``None`` or empty infers them from the step.

    Returns
    -------
    tuple of int
        Checked season lengths, shortest first.
    """
    from edgewise.forecast import infer_season_lengths, step_seconds
    from edgewise.forecast.registry import check_seasons

    if seasons:
        return check_seasons(seasons)
    step = step_seconds(pd.DatetimeIndex(series.index))
    inferred = infer_season_lengths(step)
    if not inferred:
        raise TraceError(
            f"cannot infer a season from a step of {step:g} s; pass the season lengths"
        )
    return inferred


def future_index(index: pd.DatetimeIndex, h: int) -> pd.DatetimeIndex:
    """The ``h`` time stamps after the end of ``index``, at its step."""
    freq = index.freq or pd.tseries.frequencies.to_offset(pd.Timedelta(index[-1] - index[-2]))
    return pd.date_range(index[-1], periods=h + 1, freq=freq)[1:]


@dataclass(frozen=True)
class TraceForecast:
    """A forecast of the end of a trace.

    Parameters
    ----------
    trace : str
        The trace as given.
    history : pandas.Series
        The points the forecaster was fit on.
    future : pandas.DatetimeIndex
        Time stamps of the forecast steps.
    result : ForecastResult
        Point forecast and intervals.
    seasons : tuple of int
        Season lengths used.
    levels : tuple of int
        Interval levels in percent.
    """

    trace: str
    history: pd.Series
    future: pd.DatetimeIndex
    result: ForecastResult
    seasons: tuple[int, ...]
    levels: tuple[int, ...]
    actual: pd.Series | None = None
    """The held-out points the forecast covers (``holdout > 0``), else None."""
    fit_ms: float = float("nan")
    """Wall time of fit and predict."""
    stored_id: int | None = None
    """Id of the knowledge-base row when stored."""

    @property
    def mae_ratio(self) -> float | None:
        """MAE over the held-out points relative to the seasonal naive with the longest
        season (the same hours one season earlier); None without held-out points."""
        if self.actual is None:
            return None
        h, season = len(self.actual), self.seasons[-1]
        hist = self.history.to_numpy(dtype=float)
        start = len(hist) - season
        if start < 0 or h > season:
            return None
        naive = hist[start : start + h]
        actual = self.actual.to_numpy(dtype=float)
        mae_naive = float(np.abs(naive - actual).mean())
        mae = float(np.abs(np.asarray(self.result.mean, dtype=float) - actual).mean())
        return mae / mae_naive if mae_naive > 0 else None

    @property
    def horizon(self) -> int:
        """Number of forecast steps."""
        return len(self.future)

    @property
    def n_train(self) -> int:
        """Number of points the forecaster was fit on."""
        return len(self.history)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: method, time stamps, mean, intervals and the method's facts."""
        out = {
            "method": self.result.method,
            "time": [t.isoformat() for t in self.future],
            **self.result.to_json(),
        }
        out["info"] = self.result.info
        if self.actual is not None:
            out["actual"] = self.actual.to_numpy(dtype=float).tolist()
            out["mae_ratio_to_seasonal_naive"] = self.mae_ratio
        return out


def forecast(
    *,
    trace: str | Path,
    time_col: str | None = None,
    value_col: str | None = None,
    horizon: int | None = None,
    seasons: Sequence[int] | None = None,
    method: str = "auto",
    levels: Sequence[int] | None = None,
    train: int | None = None,
    seed: int = 0,
    holdout: int = 0,
    store: bool = False,
    kb: str | None = None,
) -> TraceForecast:
    """Forecast the steps after the end of a trace with prediction intervals.

    With ``holdout > 0`` the last ``holdout`` points are held out: the forecaster is fit
    on the points before them and forecasts them (``horizon`` defaults to ``holdout``),
    and the result carries them with its MAE against the seasonal naive.

    Parameters
    ----------
    trace : str or Path
        ``'bikeshare'`` or a CSV path (plain or compressed).
    time_col, value_col : str, optional
        Columns of a CSV trace.
    horizon : int, optional
        Steps to forecast; default one shortest season.
    seasons : sequence of int, optional
        Season lengths in steps; default inferred from the trace's step.
    method : str
        Forecaster name (:func:`edgewise.forecast.make_forecaster`).
    levels : sequence of int, optional
        Interval levels in percent; default ``(90,)``.
    train : int, optional
        Fit on the last ``train`` points; default :data:`TRAIN_SEASONS` longest seasons.
    seed : int
        Seed of the error compensation.
    holdout : int
        Points at the end of the trace to hold out and forecast (0: forecast the future).
    store, kb
        Store the forecast in the knowledge base ``kb`` (``None``: the default one), where
        ``edgewise report`` finds it.

    Returns
    -------
    TraceForecast
        The forecast with its history and time stamps.
    """
    from edgewise.forecast import make_forecaster
    from edgewise.forecast.base import check_levels

    try:
        checked_levels = check_levels(list(levels) if levels else [90])
    except ValueError as err:
        raise SpecError(f"--level: {err}") from None
    if holdout < 0:
        raise TraceError(f"--holdout must be 0 or more, got {holdout}")
    full = load_series(trace, time_col, value_col)
    season_lengths = resolve_seasons(full, seasons)
    if holdout >= len(full):
        raise TraceError(f"{trace}: --holdout {holdout} leaves no points to fit on")
    series = full.iloc[: len(full) - holdout] if holdout else full
    h = horizon or holdout or season_lengths[0]
    n_train = min(len(series), train or TRAIN_SEASONS * season_lengths[-1])
    history = series.iloc[-n_train:]
    freq = pd.DatetimeIndex(series.index).freqstr or "h"
    t0 = time.perf_counter()
    model = make_forecaster(method, season_lengths, horizon=h, seed=seed, freq=freq)
    res = model.fit(history.to_numpy(dtype=float)).predict(h, checked_levels)
    out = TraceForecast(
        trace=str(trace),
        history=history,
        future=future_index(pd.DatetimeIndex(series.index), h),
        result=res,
        seasons=season_lengths,
        levels=checked_levels,
        actual=full.iloc[len(series) : len(series) + h] if holdout else None,
        fit_ms=(time.perf_counter() - t0) * 1000.0,
    )
    return _store_forecast(out, kb) if store else out


def _store_forecast(fc: TraceForecast, kb: str | None) -> TraceForecast:
    """Write ``fc`` to the knowledge base's forecasts (with its last season of history)."""
    from dataclasses import replace

    from edgewise.kb import KnowledgeBase
    from edgewise.kb import models as m

    values = fc.result.to_json() | {
        "history": fc.history.iloc[-fc.seasons[-1] :].to_numpy(dtype=float).tolist()
    }
    if fc.actual is not None:
        values["actual"] = fc.actual.to_numpy(dtype=float).tolist()
    with KnowledgeBase.open(kb) as store, store.transaction() as session:
        row = m.Forecast(
            series=Path(fc.trace).name,
            method=fc.result.method,
            origin=str(fc.future[0]),
            horizon=fc.horizon,
            values=values,
        )
        session.add(row)
        session.flush()
        row_id = int(row.id)
    return replace(fc, stored_id=row_id)


@dataclass(frozen=True)
class ForecastBenchmark:
    """Results of the rolling-origin forecast benchmark (see the module docstring).

    ``as_dict()`` names the coverage keys after the level (``coverage_90``) and adds
    ``mae_ratio_seasonal_naive_<shortest>`` when the trace has two seasons or more.
    """

    trace: str
    n_points: int
    seasons: tuple[int, ...]
    horizon: int
    origins: int
    train: int
    step: int
    method: str
    baseline: str
    mae: float
    mae_baseline: float
    mae_ratio: float | None
    mae_ratio_mstl: float | None
    mae_ratio_prophet: float | None
    level: int
    coverage: float
    upper_coverage: float
    fit_predict_ms: float
    fit_predict_ms_max: float
    fit_predict_cpu_ms: float
    fit_predict_ms_mstl: float
    chosen: tuple[str, ...]
    compensation_kept: tuple[bool | None, ...]
    seed: int
    mae_ratio_short: float | None = None
    has_short_season: bool = False
    best_naive: str = ""  # the seasonal naive (one per season) with the lowest MAE
    mae_ratio_best_naive: float | None = None  # not in as_dict; all-traces' mae_ratio

    def as_dict(self) -> dict[str, Any]:
        """JSON-able results, keys in the benchmark's published order."""
        out: dict[str, Any] = {
            "trace": self.trace,
            "n_points": self.n_points,
            "seasons": list(self.seasons),
            "horizon": self.horizon,
            "origins": self.origins,
            "train": self.train,
            "step": self.step,
            "method": self.method,
            "baseline": self.baseline,
            "mae": self.mae,
            "mae_baseline": self.mae_baseline,
            "mae_ratio": self.mae_ratio,
            "mae_ratio_mstl": self.mae_ratio_mstl,
            "mae_ratio_prophet": self.mae_ratio_prophet,
            f"coverage_{self.level}": self.coverage,
            f"upper_coverage_{self.level}": self.upper_coverage,
            "fit_predict_ms": self.fit_predict_ms,
            "fit_predict_ms_max": self.fit_predict_ms_max,
            "fit_predict_cpu_ms": self.fit_predict_cpu_ms,
            "fit_predict_ms_mstl": self.fit_predict_ms_mstl,
            "chosen": list(self.chosen),
            "compensation_kept": list(self.compensation_kept),
            "seed": self.seed,
        }
        if self.has_short_season:
            out[f"mae_ratio_seasonal_naive_{self.seasons[0]}"] = self.mae_ratio_short
        return out


def benchmark_forecast(
    *,
    trace: str | Path,
    time_col: str | None = None,
    value_col: str | None = None,
    seasons: Sequence[int] | None = None,
    horizon: int = 24,
    origins: int = 14,
    train: int = 1344,
    seed: int = 0,
    method: str = "auto",
    step: int | None = None,
    level: int = 90,
    progress: Progress | None = None,
) -> ForecastBenchmark:
    """Rolling-origin evaluation of ``method`` against seasonal naive, MSTL, Prophet.

    Parameters
    ----------
    trace, time_col, value_col
        The trace, as in :func:`forecast`.
    seasons : sequence of int, optional
        Season lengths in steps; default inferred from the trace's step.
    horizon : int
        Steps forecast from each origin.
    origins : int
        Number of forecast origins.
    train : int
        Points before each origin that each method is fit on.
    seed : int
        Seed of the forecaster (error compensation).
    method : str
        Forecaster name (:func:`edgewise.forecast.make_forecaster`).
    step : int, optional
        Distance between origins; default the shortest season.
    level : int
        Interval level whose coverage is reported (``coverage_<level>``).
    progress : callable, optional
        ``progress("origins", done, total)`` after each origin.

    Returns
    -------
    ForecastBenchmark
        The figures of the module docstring.
    """
    from edgewise.forecast.evaluate import run_origins

    series = load_series(trace, time_col, value_col)
    season_lengths = resolve_seasons(series, seasons)
    y = series.to_numpy(dtype=float)
    n = len(y)
    step = season_lengths[0] if step is None else int(step)
    record = run_origins(
        y,
        season_lengths=season_lengths,
        horizon=horizon,
        origins=origins,
        train=train,
        step=step,
        method=method,
        level=level,
        seed=seed,
        freq=pd.DatetimeIndex(series.index).freqstr or "h",
        progress=None if progress is None else (lambda d, t: progress("origins", d, t)),
    )
    compare = record.compare
    base = record.mae("naive")
    ratio = record.ratio
    return ForecastBenchmark(
        trace=str(trace),
        n_points=n,
        seasons=season_lengths,
        horizon=horizon,
        origins=origins,
        train=train,
        step=step,
        method=method,
        baseline=compare["naive"],
        mae=record.mae("ours"),
        mae_baseline=base,
        mae_ratio=ratio("ours"),
        mae_ratio_mstl=ratio("mstl"),
        mae_ratio_prophet=ratio("prophet"),
        level=level,
        coverage=float(np.mean(np.concatenate(record.covered))),
        upper_coverage=float(np.mean(np.concatenate(record.below_upper))),
        fit_predict_ms=float(np.median(record.times_ms["ours"])),
        fit_predict_ms_max=float(np.max(record.times_ms["ours"])),
        fit_predict_cpu_ms=float(np.median(record.cpu_ms)),
        fit_predict_ms_mstl=float(np.median(record.times_ms["mstl"])),
        chosen=tuple(record.chosen),
        compensation_kept=tuple(record.compensation),
        seed=seed,
        mae_ratio_short=ratio("naive_short"),
        has_short_season="naive_short" in compare,
        best_naive=compare[record.best_naive()],
        mae_ratio_best_naive=ratio("ours", record.best_naive()),
    )


@dataclass(frozen=True)
class TraceSetBenchmark:
    """The forecast benchmark on every named trace (see :func:`benchmark_all_traces`).

    ``as_dict()`` puts ``median_mae_ratio``, ``worst_mae_ratio`` and
    ``worst_coverage_<level>`` (the coverage farthest from the nominal level) at the top,
    and one summary per trace under ``traces``, whose ``mae_ratio`` is the MAE over that
    of the trace's best seasonal naive.
    """

    results: tuple[ForecastBenchmark, ...]
    level: int
    origins: int

    @property
    def ratios(self) -> list[float]:
        """Each trace's MAE ratio to its best seasonal naive (where defined)."""
        return [r.mae_ratio_best_naive for r in self.results if r.mae_ratio_best_naive is not None]

    @property
    def worst_coverage(self) -> float:
        """The interval coverage farthest from the nominal level."""
        return max((r.coverage for r in self.results), key=lambda c: abs(c - self.level / 100))

    @staticmethod
    def _summary(r: ForecastBenchmark) -> dict[str, Any]:
        return {
            "trace": r.trace,
            "n_points": r.n_points,
            "seasons": list(r.seasons),
            "horizon": r.horizon,
            "step": r.step,
            "train": r.train,
            "best_naive": r.best_naive,
            "mae_ratio": r.mae_ratio_best_naive,
            "mae_ratio_mstl": _rebase(r.mae_ratio_mstl, r),
            f"coverage_{r.level}": r.coverage,
            f"upper_coverage_{r.level}": r.upper_coverage,
            "fit_predict_ms": r.fit_predict_ms,
            "fit_predict_cpu_ms": r.fit_predict_cpu_ms,
            "chosen": dict(Counter(r.chosen).most_common()),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the summary figures, then one entry per trace."""
        return {
            "origins": self.origins,
            "median_mae_ratio": float(np.median(self.ratios)) if self.ratios else None,
            "worst_mae_ratio": max(self.ratios) if self.ratios else None,
            f"worst_coverage_{self.level}": self.worst_coverage,
            "median_fit_predict_ms": float(np.median([r.fit_predict_ms for r in self.results])),
            "median_fit_predict_cpu_ms": float(
                np.median([r.fit_predict_cpu_ms for r in self.results])
            ),
            "traces": [self._summary(r) for r in self.results],
        }


def _rebase(ratio: float | None, r: ForecastBenchmark) -> float | None:
    """A ratio to the longest season's naive as one to the best naive (``r.best_naive``)."""
    known = None not in (ratio, r.mae_ratio, r.mae_ratio_best_naive) and r.mae > 0
    return ratio * r.mae_ratio_best_naive / r.mae_ratio if known else None  # type: ignore[operator]


def _relabel(progress: Progress, trace: str, _phase: str, done: int, total: int) -> None:
    progress(trace, done, total)


def benchmark_all_traces(
    *,
    traces: Sequence[str] | None = None,
    origins: int = 14,
    method: str = "auto",
    level: int = 90,
    seed: int = 0,
    progress: Progress | None = None,
) -> TraceSetBenchmark:
    """The rolling-origin benchmark on each named trace with the planner's settings.

    Each trace is evaluated with its inferred seasons, a horizon and a step of one
    shortest season (the planner's re-planning period) and :data:`TRAIN_SEASONS` longest
    seasons of history (8 weeks of hourly data, 8 weeks of daily data).

    Parameters
    ----------
    traces : sequence of str, optional
        Names of :data:`edgewise.workloads.traces.TRACE_NAMES`; default all of them.
    origins : int
        Forecast origins per trace.
    method : str
        Forecaster name (:func:`edgewise.forecast.make_forecaster`).
    level : int
        Interval level whose coverage is reported.
    seed : int
        Seed of the forecaster.
    progress : callable, optional
        ``progress(trace, done, total)`` after each origin of each trace.

    Returns
    -------
    TraceSetBenchmark
        Per-trace results and their median and worst figures.
    """
    from edgewise.workloads.traces import TRACE_NAMES

    names = list(TRACE_NAMES) if traces is None else list(traces)
    unknown = [t for t in names if t not in TRACE_NAMES]
    if unknown or not names:
        raise SpecError(
            f"--trace {', '.join(unknown) or '(none)'}: not a named trace; "
            f"known: {', '.join(TRACE_NAMES)}"
        )
    results = []
    for name in names:
        seasons = resolve_seasons(load_series(name, None, None), None)
        step, train = seasons[0], TRAIN_SEASONS * seasons[-1]
        tell = None if progress is None else functools.partial(_relabel, progress, name)
        results.append(
            benchmark_forecast(
                trace=name, seasons=seasons, horizon=step, step=step, origins=origins,
                train=train, seed=seed, method=method, level=level, progress=tell,
            )
        )  # fmt: skip
    return TraceSetBenchmark(results=tuple(results), level=level, origins=origins)
