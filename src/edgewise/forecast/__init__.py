"""Workload forecasting for provisioning: one estimator contract, many forecasters.

``make_forecaster(name, season_lengths)`` builds any of them; ``'auto'`` picks among
seasonal naive, seasonal medians, MSTL, AutoETS and their ensembles by rolling-origin
cross-validation, calibrates upper quantiles by split conformal prediction and applies
Barista-style error compensation where it helps. Everything here is pure computation
(numpy in, numpy out); loading traces and printing live in the CLI and benchmarks.
"""

from edgewise.forecast.base import BaseForecaster, Forecaster, ForecastResult, NotFittedError
from edgewise.forecast.compensate import CompensatedForecaster, ErrorCompensator
from edgewise.forecast.ensemble import Ensemble
from edgewise.forecast.frequency import infer_season_lengths, step_seconds
from edgewise.forecast.intervals import ConformalCalibrator
from edgewise.forecast.naive import SeasonalAverage, SeasonalNaive
from edgewise.forecast.prophet import make_prophet, prophet_available
from edgewise.forecast.registry import FORECASTER_NAMES, make_forecaster
from edgewise.forecast.select import AutoForecaster, default_candidates
from edgewise.forecast.stats import MSTL, AutoETS

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
    "SeasonalNaive",
    "default_candidates",
    "infer_season_lengths",
    "make_forecaster",
    "make_prophet",
    "prophet_available",
    "step_seconds",
]
