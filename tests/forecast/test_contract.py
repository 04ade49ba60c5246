"""One contract suite, every forecaster (scikit-learn's parametrize_with_checks habit)."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from edgewise.errors import TraceError
from edgewise.forecast import (
    MSTL,
    AutoETS,
    AutoForecaster,
    BaseForecaster,
    CompensatedForecaster,
    Ensemble,
    Forecaster,
    ForecastResult,
    NotFittedError,
    SeasonalAverage,
    SeasonalNaive,
    make_forecaster,
)

from .conftest import periodic_series

PERIOD = 12
Y = periodic_series(PERIOD * 24, PERIOD, noise=3.0, seed=1)

FACTORIES: dict[str, Callable[[], BaseForecaster]] = {
    "seasonal_naive": lambda: SeasonalNaive(PERIOD),
    "seasonal_average": lambda: SeasonalAverage(PERIOD, 3, "median"),
    "seasonal_mean": lambda: SeasonalAverage(PERIOD, 2, "mean"),
    "mstl": lambda: MSTL((PERIOD,)),
    "mstl_two_seasons": lambda: MSTL((4, PERIOD), trend="ses"),
    "autoets": lambda: AutoETS(PERIOD, model="ANA"),
    "ensemble": lambda: Ensemble([SeasonalNaive(PERIOD), MSTL((PERIOD,))]),
    "by_name_ensemble": lambda: make_forecaster("mstl+seasonal_median_3", (PERIOD,)),
    "compensated": lambda: CompensatedForecaster(
        SeasonalNaive(PERIOD), horizon=PERIOD, n_windows=9
    ),
    "auto": lambda: AutoForecaster((PERIOD,), n_windows=5),
}


def check_forecaster(make: Callable[[], BaseForecaster], y: np.ndarray) -> None:
    """The contract every forecaster keeps."""
    est = make()
    assert isinstance(est, Forecaster)
    # __init__ only stores parameters
    assert not [a for a in vars(est) if a.endswith("_")]
    assert set(est.get_params()) == set(vars(est))
    with pytest.raises(NotFittedError):
        est.predict(3)

    make().fit(y)  # warm-up: first-time imports may touch global state; fits must not
    np_state = np.random.get_state()[1].copy()  # type: ignore[index]
    py_state = random.getstate()
    assert est.fit(y) is est
    res = est.predict(PERIOD + 5, level=(80, 95))
    assert np.array_equal(np.random.get_state()[1], np_state)  # type: ignore[index]
    assert random.getstate() == py_state
    assert [a for a in vars(est) if a.endswith("_")]

    assert isinstance(res, ForecastResult)
    assert res.mean.shape == (PERIOD + 5,)
    assert res.levels == (80, 95)
    for lv in (80, 95):
        assert res.lower[lv].shape == res.upper[lv].shape == res.mean.shape
        assert np.all(res.lower[lv] <= res.mean + 1e-9)
        assert np.all(res.mean <= res.upper[lv] + 1e-9)
    assert np.all(res.lower[95] <= res.lower[80] + 1e-9)
    assert np.all(res.upper[80] <= res.upper[95] + 1e-9)
    assert np.all(np.isfinite(res.mean))
    assert np.all(res.mean >= 0)  # non-negative data, non-negative forecasts

    # stateless forecast == fit().predict(), on a fresh clone
    again = make().forecast(y, 7, level=(90,))
    ref = make().fit(y).predict(7, level=(90,))
    np.testing.assert_allclose(again.mean, ref.mean)
    np.testing.assert_allclose(again.upper[90], ref.upper[90])
    # refitting is deterministic
    np.testing.assert_allclose(make().fit(y).predict(PERIOD + 5).mean, res.mean)
    # no levels -> no intervals
    assert est.predict(2).levels == ()
    with pytest.raises(ValueError):
        est.predict(0)
    with pytest.raises(ValueError):
        est.predict(2, level=(150,))
    # a series too short is one TraceError line
    with pytest.raises(TraceError, match="too short"):
        make().fit(y[: est.min_length() - 1])


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_check_forecaster(name: str) -> None:
    check_forecaster(FACTORIES[name], Y)


def test_seasonal_naive_repeats_last_season() -> None:
    y = np.arange(30, dtype=float)
    res = SeasonalNaive(7).fit(y).predict(10)
    np.testing.assert_array_equal(res.mean, np.r_[y[-7:], y[-7:-4]])


def test_seasonal_median_ignores_one_odd_season() -> None:
    base = np.tile(np.arange(6, dtype=float), 5)
    base[-6:] += 100.0  # last season is unusual
    res = SeasonalAverage(6, 3, "median").fit(base).predict(6)
    np.testing.assert_array_equal(res.mean, np.arange(6, dtype=float))


def test_nan_and_shape_are_trace_errors() -> None:
    with pytest.raises(TraceError, match="not a finite number"):
        SeasonalNaive(2).fit(np.array([1.0, np.nan, 2.0, 3.0, 4.0]))
    with pytest.raises(TraceError, match="one-dimensional"):
        SeasonalNaive(2).fit(np.ones((4, 2)))


def test_forecast_result_json_and_validation() -> None:
    res = ForecastResult(np.ones(2), {90: np.zeros(2)}, {90: np.full(2, 2.0)})
    assert res.to_json() == {
        "mean": [1.0, 1.0],
        "lower": {"90": [0.0, 0.0]},
        "upper": {"90": [2.0, 2.0]},
    }
    with pytest.raises(ValueError):
        ForecastResult(np.ones(2), {90: np.zeros(3)}, {90: np.zeros(3)})


def test_make_forecaster_names() -> None:
    from edgewise.errors import EnvironmentProblem, UnknownNameError
    from edgewise.forecast import prophet_available

    assert make_forecaster("seasonal_naive_daily", (24, 168)).get_params() == {"season": 24}
    assert make_forecaster("seasonal_naive_weekly", (24, 168)).get_params() == {"season": 168}
    assert isinstance(make_forecaster("auto", (7,)), AutoForecaster)
    with pytest.raises(UnknownNameError, match="unknown forecaster"):
        make_forecaster("lstm", (24,))
    with pytest.raises(ValueError):
        make_forecaster("mstl", (1,))
    if not prophet_available():
        with pytest.raises(EnvironmentProblem, match="prophet"):
            make_forecaster("prophet", (24,))
