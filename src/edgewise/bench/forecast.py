"""Forecast benchmark: rolling-origin evaluation on the last part of a trace.

The evaluation is :func:`edgewise.api.forecast.benchmark_forecast` (its docstring says
what is reported); this module is its benchmark entry point, returning the JSON-able
dict that ``edgewise bench forecast --json`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgewise.api.forecast import benchmark_forecast

__all__ = ["run"]

Progress = Callable[[int, int], None]


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
        :meth:`edgewise.api.forecast.ForecastBenchmark.as_dict`.
    """
    return benchmark_forecast(
        trace=trace,
        time_col=time_col,
        value_col=value_col,
        seasons=seasons,
        horizon=horizon,
        origins=origins,
        train=train,
        seed=seed,
        method=method,
        step=step,
        level=level,
        progress=None if progress is None else (lambda _phase, done, total: progress(done, total)),
    ).as_dict()
