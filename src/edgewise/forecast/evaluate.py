"""Rolling-origin evaluation of a forecaster against seasonal naives, MSTL and Prophet.

From each origin every method is fit on the points before it and forecasts the next
``horizon`` points; :class:`OriginRecord` accumulates the errors, interval hits, the
chosen candidates and the fit+predict times (wall clock and process CPU time, which a
busy shared machine distorts less). The clock is the only effect here; the forecasts are
the forecasters' pure computation. :func:`edgewise.api.forecast.benchmark_forecast` is
the use case on top.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgewise.errors import TraceError
from edgewise.forecast.prophet import prophet_available
from edgewise.forecast.registry import make_forecaster

__all__ = ["OriginRecord", "check_origins", "comparisons", "evaluate_origin", "run_origins"]


@dataclass
class OriginRecord:
    """What the rolling-origin loop accumulates, one entry per origin."""

    errors: dict[str, list[np.ndarray]]
    times_ms: dict[str, list[float]]
    cpu_ms: list[float] = field(default_factory=list)  # process CPU: steadier on a busy host
    covered: list[np.ndarray] = field(default_factory=list)
    below_upper: list[np.ndarray] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    compensation: list[bool | None] = field(default_factory=list)
    compare: dict[str, str] = field(default_factory=dict)  # key -> forecaster name

    def mae(self, key: str) -> float:
        """Mean absolute error of ``key`` over every origin."""
        return float(np.mean(np.abs(np.concatenate(self.errors[key]))))

    def best_naive(self) -> str:
        """Key of the seasonal naive (``naive`` or ``naive_short``) with the lower MAE."""
        keys = [k for k in ("naive", "naive_short") if k in self.errors]
        return min(keys, key=self.mae)

    def ratio(self, key: str, base_key: str = "naive") -> float | None:
        """MAE of ``key`` over ``base_key``'s (``None``: not run, or a zero base)."""
        if key not in self.errors:
            return None
        base = self.mae(base_key)
        return self.mae(key) / base if base > 0 else None


def comparisons(season_lengths: tuple[int, ...]) -> dict[str, str]:
    """The baselines each origin is also forecast with: key -> forecaster name."""
    compare = {"naive": f"seasonal_naive_{season_lengths[-1]}", "mstl": "mstl"}
    if len(season_lengths) > 1:
        compare["naive_short"] = f"seasonal_naive_{season_lengths[0]}"
    if prophet_available():
        compare["prophet"] = "prophet"
    return compare


def evaluate_origin(
    record: OriginRecord,
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


def check_origins(n: int, *, train: int, horizon: int, origins: int, step: int) -> None:
    """Refuse sizes below 1, and a trace of ``n`` points too short for the origins."""
    if horizon < 1 or origins < 1 or train < 1 or step < 1:
        raise ValueError("horizon, origins, train and step must be at least 1")
    needed = train + horizon + (origins - 1) * step
    if n < needed:
        raise TraceError(
            f"trace too short for the benchmark: {n} points, train {train} + horizon {horizon} "
            f"+ {origins - 1} origins x step {step} needs {needed}"
        )


def run_origins(
    y: np.ndarray,
    *,
    season_lengths: tuple[int, ...],
    horizon: int,
    origins: int,
    train: int,
    step: int,
    method: str,
    level: int,
    seed: int,
    freq: str,
    progress: Callable[[int, int], None] | None = None,
) -> OriginRecord:
    """Evaluate ``method`` and the comparisons from ``origins`` origins ``step`` apart.

    The last origin ends ``horizon`` before the end of ``y``; each fit uses the ``train``
    points before its origin. ``progress(done, total)`` is called after each origin.
    """
    n = len(y)
    check_origins(n, train=train, horizon=horizon, origins=origins, step=step)
    compare = comparisons(season_lengths)
    keys = ["ours", *compare]
    record = OriginRecord(errors={k: [] for k in keys}, times_ms={k: [] for k in keys})
    record.compare = compare
    starts = [n - horizon - (origins - 1 - i) * step for i in range(origins)]
    for i, o in enumerate(starts):
        history, actual = y[o - train : o], y[o : o + horizon]
        evaluate_origin(record, history, actual, method, season_lengths, compare, level, seed, freq)
        if progress is not None:
            progress(i + 1, origins)
    return record
