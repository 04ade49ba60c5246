"""Forecast use cases: forecast a trace with intervals, and benchmark a forecaster on it.

:func:`forecast` fits one forecaster on the end of a trace and returns its forecast with
the future time stamps; :func:`benchmark_forecast` runs the rolling-origin evaluation
(from each of ``origins`` origins ``step`` apart, ending ``horizon`` before the end of
the trace, every method is fit on the ``train`` points before the origin and forecasts
``horizon`` steps) and reports the MAE of the chosen method over the seasonal naive with
the longest season, the same for MSTL and (when installed) Prophet, the share of actual
values inside the interval, and the median fit+predict time per origin (wall clock, and
the process CPU time, which a busy shared machine distorts less).

Loading the trace and the clock are the effects; the forecasts themselves are the
forecasters' pure computation. :func:`load_series` and :func:`resolve_seasons` are the
trace helpers every command reading a trace shares. The forecasters (statsforecast,
scikit-learn) are imported inside the calls, so that importing this module stays as
cheap as the CLI's start needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


@dataclass
class _OriginRecord:
    """What the rolling-origin loop accumulates, one entry per origin."""

    errors: dict[str, list[np.ndarray]]
    times_ms: dict[str, list[float]]
    cpu_ms: list[float] = field(default_factory=list)  # process CPU: steadier on a busy host
    covered: list[np.ndarray] = field(default_factory=list)
    below_upper: list[np.ndarray] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    compensation: list[bool | None] = field(default_factory=list)

    def mae(self, key: str) -> float:
        """Mean absolute error of ``key`` over every origin."""
        return float(np.mean(np.abs(np.concatenate(self.errors[key]))))

    def ratio(self, key: str) -> float | None:
        """MAE of ``key`` over the seasonal naive's (``None``: not run, or a zero base)."""
        if key not in self.errors:
            return None
        base = self.mae("naive")
        return self.mae(key) / base if base > 0 else None


def _comparisons(season_lengths: tuple[int, ...]) -> dict[str, str]:
    """The baselines each origin is also forecast with: key -> forecaster name."""
    from edgewise.forecast.prophet import prophet_available

    compare = {"naive": f"seasonal_naive_{season_lengths[-1]}", "mstl": "mstl"}
    if len(season_lengths) > 1:
        compare["naive_short"] = f"seasonal_naive_{season_lengths[0]}"
    if prophet_available():
        compare["prophet"] = "prophet"
    return compare


def _evaluate_origin(
    record: _OriginRecord,
    history: np.ndarray,
    actual: np.ndarray,
    method: str,
    season_lengths: tuple[int, ...],
    compare: dict[str, str],
    level: int,
    seed: int,
    freq: str,
) -> None:
    """Fit ``method`` and every comparison on ``history``; record errors and times."""
    from edgewise.forecast import make_forecaster

    horizon = len(actual)
    model = make_forecaster(method, season_lengths, horizon=horizon, seed=seed, freq=freq)
    t0, c0 = time.perf_counter(), time.process_time()
    res = model.fit(history).predict(horizon, level=(level,))
    record.times_ms["ours"].append((time.perf_counter() - t0) * 1e3)
    record.cpu_ms.append((time.process_time() - c0) * 1e3)
    record.errors["ours"].append(actual - res.mean)
    record.covered.append((actual >= res.lower[level]) & (actual <= res.upper[level]))
    record.below_upper.append(actual <= res.upper[level])
    record.chosen.append(str(res.info.get("chosen", res.method)))
    decision = res.info.get("compensation")
    record.compensation.append(bool(decision["kept"]) if decision else None)
    for key, name in compare.items():
        other = make_forecaster(name, season_lengths, freq=freq)
        t0 = time.perf_counter()
        mean = other.fit(history).predict(horizon).mean
        record.times_ms[key].append((time.perf_counter() - t0) * 1e3)
        record.errors[key].append(actual - mean)


def _check_origins(n: int, *, train: int, horizon: int, origins: int, step: int) -> None:
    """Refuse sizes below 1, and a trace of ``n`` points too short for the origins."""
    if horizon < 1 or origins < 1 or train < 1 or step < 1:
        raise ValueError("horizon, origins, train and step must be at least 1")
    needed = train + horizon + (origins - 1) * step
    if n < needed:
        raise TraceError(
            f"trace too short for the benchmark: {n} points, train {train} + horizon {horizon} "
            f"+ {origins - 1} origins x step {step} needs {needed}"
        )


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
    series = load_series(trace, time_col, value_col)
    season_lengths = resolve_seasons(series, seasons)
    y = series.to_numpy(dtype=float)
    n = len(y)
    step = season_lengths[0] if step is None else int(step)
    _check_origins(n, train=train, horizon=horizon, origins=origins, step=step)
    freq = pd.DatetimeIndex(series.index).freqstr or "h"
    compare = _comparisons(season_lengths)
    keys = ["ours", *compare]
    record = _OriginRecord(errors={k: [] for k in keys}, times_ms={k: [] for k in keys})
    starts = [n - horizon - (origins - 1 - i) * step for i in range(origins)]
    for i, o in enumerate(starts):
        history, actual = y[o - train : o], y[o : o + horizon]
        _evaluate_origin(
            record, history, actual, method, season_lengths, compare, level, seed, freq
        )
        if progress is not None:
            progress("origins", i + 1, origins)

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
    )
