"""Forecast benchmark: rolling-origin evaluation on the last part of a trace.

The evaluation is :func:`edgewise.api.forecast.benchmark_forecast` (its docstring says
what is reported); this module is its benchmark entry point, returning the JSON-able
dict that ``edgewise bench forecast --json`` prints; :func:`run_all` is the same on
every named trace (``--all-traces``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

from edgewise.api.forecast import benchmark_all_traces, benchmark_forecast

__all__ = ["run", "run_all"]

Progress = Callable[[int, int], None]


class MethodOptions(TypedDict, total=False):
    """The keyword-only options :func:`run` hands to the api as they are."""

    method: str
    step: int | None
    level: int


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
    progress: Progress | None = None,
    **options: Unpack[MethodOptions],
) -> dict[str, Any]:
    """Rolling-origin evaluation of a forecaster against seasonal naive, MSTL, Prophet.

    Parameters
    ----------
    trace, time_col, value_col, seasons, horizon, origins, train, seed
        As in :func:`edgewise.api.forecast.benchmark_forecast`, in its order, so that
        they may be given by position.
    progress : callable, optional
        ``progress(done, total)`` after each origin.
    **options
        ``method``, ``step``, ``level`` of
        :func:`edgewise.api.forecast.benchmark_forecast` (its defaults where left out).

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
        progress=None if progress is None else (lambda _phase, done, total: progress(done, total)),
        **options,
    ).as_dict()


def run_all(
    traces: Sequence[str] | None = None,
    origins: int = 14,
    method: str = "auto",
    seed: int = 0,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """The benchmark on every named trace (``edgewise bench forecast --all-traces``).

    Parameters
    ----------
    traces, origins, method, seed, progress
        As in :func:`edgewise.api.forecast.benchmark_all_traces`.

    Returns
    -------
    dict
        :meth:`edgewise.api.forecast.TraceSetBenchmark.as_dict`.
    """
    return benchmark_all_traces(
        traces=traces, origins=origins, method=method, seed=seed, progress=progress
    ).as_dict()
