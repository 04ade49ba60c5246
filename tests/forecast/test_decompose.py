"""MSTL decomposition: statsforecast's algorithm, with the STL inner loop count chosen."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgewise.forecast import MSTL
from edgewise.forecast.decompose import mstl_decompose, repeat_last_season
from edgewise.forecast.stats import default_stl_kwargs

from .conftest import periodic_series

SEASONS = (24, 168)


def _series() -> np.ndarray:
    rng = np.random.default_rng(3)
    daily = periodic_series(6 * 168, 24, noise=4.0, seed=2)
    weekly = 20.0 * (np.arange(6 * 168) % 168 >= 120)  # a quieter weekend
    return daily - weekly + np.cumsum(rng.normal(0.0, 0.5, 6 * 168)) + 40.0


def test_five_inner_iterations_reproduce_statsforecast_mstl() -> None:
    from statsforecast.mstl import mstl

    y = _series()
    kwargs = default_stl_kwargs(SEASONS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = mstl(y, list(SEASONS), stl_kwargs=kwargs)
    ours = mstl_decompose(y, SEASONS, inner_iter=5, stl_kwargs=kwargs)
    np.testing.assert_allclose(ours.seasonal[0], theirs["seasonal24"], atol=1e-9)
    np.testing.assert_allclose(ours.seasonal[1], theirs["seasonal168"], atol=1e-9)
    np.testing.assert_allclose(ours.trend, theirs["trend"], atol=1e-9)
    adjusted = (theirs["trend"] + theirs["remainder"]).to_numpy()
    np.testing.assert_allclose(ours.adjusted, adjusted, atol=1e-9)


def test_two_inner_iterations_decompose_the_same_series_closely() -> None:
    y = _series()
    kwargs = default_stl_kwargs(SEASONS)
    five = mstl_decompose(y, SEASONS, inner_iter=5, stl_kwargs=kwargs)
    two = mstl_decompose(y, SEASONS, inner_iter=2, stl_kwargs=kwargs)
    assert np.max(np.abs(two.adjusted - five.adjusted)) < 0.05 * float(np.std(y))
    np.testing.assert_allclose(two.seasonal.sum(axis=0) + two.adjusted, y, atol=1e-9)


def test_seasonal_forecast_repeats_each_components_last_season() -> None:
    y = _series()
    dec = mstl_decompose(y, SEASONS)
    h = 30
    expected = np.tile(dec.seasonal[0][-24:], 2)[:h] + dec.seasonal[1][-168:][:h]
    np.testing.assert_allclose(dec.seasonal_forecast(h), expected)
    assert repeat_last_season(np.arange(10.0), 4, 6).tolist() == [6, 7, 8, 9, 6, 7]


def test_mstl_forecast_is_the_adjusted_series_last_value_plus_the_seasons() -> None:
    y = _series()
    model = MSTL(SEASONS).fit(y)
    res = model.predict(24, level=(90,))
    dec = model.decomposition_
    np.testing.assert_allclose(res.mean, dec.adjusted[-1] + dec.seasonal_forecast(24))
    assert np.all(res.lower[90] < res.mean) and np.all(res.upper[90] > res.mean)


@pytest.mark.parametrize(
    ("seasons", "kwargs"),
    [((1,), {}), ((24,), {"inner_iter": 0}), ((24,), {"iterate": 0})],
)
def test_bad_settings_are_refused(seasons: tuple[int, ...], kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        mstl_decompose(_series(), seasons, **kwargs)
