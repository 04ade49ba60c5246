"""Forecast benchmark: rolling-origin evaluation on the last part of a trace.

From each of ``origins`` origins ``step`` apart (default: the shortest season, one day
for hourly data), ending ``horizon`` before the end of the trace, every method is fit
on the ``train`` points before the origin and forecasts ``horizon`` steps. Reported:
MAE of the chosen method over the seasonal naive with the longest season
(``mae_ratio``), the same for MSTL and (when installed) Prophet, the share of actual
values inside the 90% interval, and the median fit+predict time per origin (wall
clock, and the process CPU time, which a busy shared machine distorts less).

Loading the trace and the wall clock are the effects; the evaluation itself is the
forecasters' pure computation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgewise.errors import TraceError
from edgewise.forecast import infer_season_lengths, make_forecaster, step_seconds
from edgewise.forecast.prophet import prophet_available
from edgewise.forecast.registry import check_seasons

__all__ = ["load_series", "resolve_seasons", "run"]

Progress = Callable[[int, int], None]


def load_series(trace: str | Path, time_col: str | None, value_col: str | None) -> pd.Series:
    """Load a trace with :func:`edgewise.workloads.traces.load_trace`.

    A named trace (``bikeshare``) has fixed columns: naming them is accepted when they
    match, and is a :class:`TraceError` otherwise.
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
    """The given season lengths, or those implied by the series' step."""
    if seasons:
        return check_seasons(seasons)
    inferred = infer_season_lengths(step_seconds(pd.DatetimeIndex(series.index)))
    if not inferred:
        raise TraceError(
            f"cannot infer a season from a step of {step_seconds(pd.DatetimeIndex(series.index)):g} s; "
            "pass the season lengths"
        )
    return inferred


def _mae(errors: list[np.ndarray]) -> float:
    return float(np.mean(np.abs(np.concatenate(errors))))


def run(
    trace: str | Path,
    time_col: str | None = None,
    value_col: str | None = None,
    seasons: Sequence[int] | None = None,
    horizon: int = 24,
    origins: int = 14,
    train: int = 1344,
    seed: int = 0,
    *,
    method: str = "auto",
    step: int | None = None,
    level: int = 90,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Rolling-origin evaluation of ``method`` against seasonal naive, MSTL, Prophet.

    Parameters
    ----------
    trace : str or Path
        ``'bikeshare'`` or a CSV path (plain or compressed).
    time_col, value_col : str, optional
        Columns of a CSV trace.
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
        ``progress(done, total)`` after each origin.

    Returns
    -------
    dict
        JSON-able results; see the module docstring.
    """
    series = load_series(trace, time_col, value_col)
    season_lengths = resolve_seasons(series, seasons)
    y = series.to_numpy(dtype=float)
    n = len(y)
    step = season_lengths[0] if step is None else int(step)
    if horizon < 1 or origins < 1 or train < 1 or step < 1:
        raise ValueError("horizon, origins, train and step must be at least 1")
    needed = train + horizon + (origins - 1) * step
    if n < needed:
        raise TraceError(
            f"trace too short for the benchmark: {n} points, train {train} + horizon {horizon} "
            f"+ {origins - 1} origins x step {step} needs {needed}"
        )
    freq = pd.DatetimeIndex(series.index).freqstr or "h"
    longest = season_lengths[-1]
    starts = [n - horizon - (origins - 1 - i) * step for i in range(origins)]
    compare: dict[str, str] = {"naive": f"seasonal_naive_{longest}", "mstl": "mstl"}
    if len(season_lengths) > 1:
        compare["naive_short"] = f"seasonal_naive_{season_lengths[0]}"
    if prophet_available():
        compare["prophet"] = "prophet"

    errors: dict[str, list[np.ndarray]] = {"ours": [], **{k: [] for k in compare}}
    times_ms: dict[str, list[float]] = {"ours": [], **{k: [] for k in compare}}
    cpu_ms: list[float] = []  # process CPU time: less sensitive to a shared, busy machine
    covered: list[np.ndarray] = []
    below_upper: list[np.ndarray] = []
    chosen: list[str] = []
    compensation: list[bool | None] = []
    for i, o in enumerate(starts):
        history = y[o - train : o]
        actual = y[o : o + horizon]
        model = make_forecaster(method, season_lengths, horizon=horizon, seed=seed, freq=freq)
        t0, c0 = time.perf_counter(), time.process_time()
        res = model.fit(history).predict(horizon, level=(level,))
        times_ms["ours"].append((time.perf_counter() - t0) * 1e3)
        cpu_ms.append((time.process_time() - c0) * 1e3)
        errors["ours"].append(actual - res.mean)
        covered.append((actual >= res.lower[level]) & (actual <= res.upper[level]))
        below_upper.append(actual <= res.upper[level])
        chosen.append(str(res.info.get("chosen", res.method)))
        decision = res.info.get("compensation")
        compensation.append(bool(decision["kept"]) if decision else None)
        for key, name in compare.items():
            other = make_forecaster(name, season_lengths, freq=freq)
            t0 = time.perf_counter()
            mean = other.fit(history).predict(horizon).mean
            times_ms[key].append((time.perf_counter() - t0) * 1e3)
            errors[key].append(actual - mean)
        if progress is not None:
            progress(i + 1, origins)

    mae = {k: _mae(v) for k, v in errors.items()}
    base = mae["naive"]

    def ratio(key: str) -> float | None:
        if key not in mae:
            return None
        return mae[key] / base if base > 0 else None

    out: dict[str, Any] = {
        "trace": str(trace),
        "n_points": n,
        "seasons": list(season_lengths),
        "horizon": horizon,
        "origins": origins,
        "train": train,
        "step": step,
        "method": method,
        "baseline": compare["naive"],
        "mae": mae["ours"],
        "mae_baseline": base,
        "mae_ratio": ratio("ours"),
        "mae_ratio_mstl": ratio("mstl"),
        "mae_ratio_prophet": ratio("prophet"),
        f"coverage_{level}": float(np.mean(np.concatenate(covered))),
        f"upper_coverage_{level}": float(np.mean(np.concatenate(below_upper))),
        "fit_predict_ms": float(np.median(times_ms["ours"])),
        "fit_predict_ms_max": float(np.max(times_ms["ours"])),
        "fit_predict_cpu_ms": float(np.median(cpu_ms)),
        "fit_predict_ms_mstl": float(np.median(times_ms["mstl"])),
        "chosen": chosen,
        "compensation_kept": compensation,
        "seed": seed,
    }
    if "naive_short" in mae:
        out[f"mae_ratio_seasonal_naive_{season_lengths[0]}"] = ratio("naive_short")
    return out
