"""Workload forecasting for provisioning: one estimator contract, many forecasters.

``make_forecaster(name, season_lengths)`` builds any of them; ``'auto'`` picks among
seasonal naives, seasonal medians, seasonal exponential smoothing, MSTL and their
combinations by a rolling-origin backtest on the series itself (never worse there than
the best seasonal naive), calibrates its intervals per horizon step by split conformal
prediction, and can apply Barista-style error compensation (off by default). Everything here is pure computation
(numpy in, numpy out); loading traces and printing live in the CLI and benchmarks.
"""

from edgewise.forecast.base import BaseForecaster, Forecaster, ForecastResult, NotFittedError
from edgewise.forecast.compensate import CompensatedForecaster, ErrorCompensator
from edgewise.forecast.ensemble import Ensemble
from edgewise.forecast.frequency import infer_season_lengths, step_seconds
from edgewise.forecast.intervals import ConformalCalibrator, StepConformalCalibrator
from edgewise.forecast.naive import SeasonalAverage, SeasonalNaive
from edgewise.forecast.prophet import make_prophet, prophet_available
from edgewise.forecast.registry import FORECASTER_NAMES, make_forecaster
from edgewise.forecast.select import AutoForecaster, default_candidates
from edgewise.forecast.stats import MSTL, AutoETS, SeasonalES

__all__ = [
    "FORECASTER_NAMES",
    "MSTL",
    "AutoETS",
    "AutoForecaster",
    "BaseForecaster",
    "CompensatedForecaster",
    "ConformalCalibrator",
    "Ensemble",
    "ErrorCompensator",
    "ForecastResult",
    "Forecaster",
    "NotFittedError",
    "SeasonalAverage",
    "SeasonalES",
    "SeasonalNaive",
    "StepConformalCalibrator",
    "default_candidates",
    "infer_season_lengths",
    "make_forecaster",
    "make_prophet",
    "prophet_available",
    "step_seconds",
]
