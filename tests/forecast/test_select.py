"""Rolling-origin selection, error compensation and calibrated intervals."""

from __future__ import annotations

import numpy as np
import pytest

from edgewise.forecast import AutoForecaster, ConformalCalibrator, ErrorCompensator
from edgewise.forecast.crossval import window_origins
from edgewise.forecast.intervals import conformal_quantile

from .conftest import periodic_series, seasonal_random_walk


def test_window_origins_tile_the_end() -> None:
    np.testing.assert_array_equal(window_origins(100, 10, 3), [70, 80, 90])
    np.testing.assert_array_equal(window_origins(100, 10, 3, step=5), [80, 85, 90])


def test_selects_weekly_season_on_weekly_periodic_series() -> None:
    # exactly weekly-periodic + noise: the weekly naive beats the daily one, and the
    # default choice never does worse than the weekly naive in validation
    y = periodic_series(168 * 6, 168, noise=2.0, seed=3)
    naive_only = AutoForecaster(
        (24, 168), candidates=("seasonal_naive_24", "seasonal_naive_168"), n_windows=5
    ).fit(y)
    assert naive_only.chosen_ == "seasonal_naive_168"
    auto = AutoForecaster((24, 168), n_windows=5, compensate=False).fit(y)
    assert auto.chosen_ != "seasonal_naive_24"
    assert auto.cv_mae_[auto.chosen_] <= auto.cv_mae_["seasonal_naive_168"]


@pytest.mark.parametrize("seed", [0, 1])
def test_default_candidates_choose_weekly_naive_where_it_is_optimal(seed: int) -> None:
    y = seasonal_random_walk(168 * 8, 168, step=6.0, seed=seed)
    auto = AutoForecaster((24, 168), n_windows=5, compensate=False).fit(y)
    assert auto.chosen_ == "seasonal_naive_168", auto.cv_mae_
    res = auto.predict(24, level=(90,))
    assert res.info["chosen"] == "seasonal_naive_168"
    assert res.method == "auto(seasonal_naive_168)"


def test_median_of_weeks_beats_naive_when_noise_is_independent() -> None:
    y = periodic_series(168 * 8, 168, noise=8.0, seed=4)
    auto = AutoForecaster((24, 168), n_windows=5, compensate=False).fit(y)
    assert auto.cv_mae_[auto.chosen_] < auto.cv_mae_["seasonal_naive_168"]
    assert auto.chosen_ != "seasonal_naive_168"


def _biased_windows(seed: int, persistent: bool) -> tuple[np.ndarray, np.ndarray]:
    """24 windows of 12 steps; actual = forecast * (1 + bias) + noise."""
    rng = np.random.default_rng(seed)
    forecasts = 100.0 + 30.0 * np.sin(np.arange(24 * 12) / 3.0).reshape(24, 12)
    if persistent:  # bias follows the last window's errors: learnable from them
        bias = np.repeat(np.sign(np.sin(np.arange(24) / 2.0)) * 0.3, 12).reshape(24, 12)
    else:  # nothing to learn
        bias = np.zeros((24, 12))
    actuals = forecasts * (1.0 + bias) + rng.normal(0.0, 3.0, forecasts.shape)
    return forecasts, actuals


@pytest.mark.parametrize("seed", [0, 1])
def test_compensation_kept_only_when_it_helps(seed: int) -> None:
    f, a = _biased_windows(seed, persistent=True)
    comp = ErrorCompensator(seed=seed).fit(f, a)
    decision = comp.decision()
    assert decision["kept"], decision
    assert decision["val_mae_corrected"] < decision["val_mae_raw"]

    f, a = _biased_windows(seed, persistent=False)
    comp = ErrorCompensator(seed=seed).fit(f, a)
    assert not comp.decision()["kept"], comp.decision()
    np.testing.assert_array_equal(comp.adjust(f[-1]), f[-1])  # not kept: unchanged


def test_compensation_needs_enough_windows() -> None:
    f, a = _biased_windows(0, persistent=True)
    comp = ErrorCompensator().fit(f[:4], a[:4])
    assert not comp.kept_ and "too few windows" in comp.reason_


def test_conformal_quantile_finite_sample() -> None:
    scores = np.arange(1, 20, dtype=float)  # 19 scores
    assert conformal_quantile(scores, 0.95) == 19.0  # ceil(20 * .95) = 19th
    assert conformal_quantile(scores, 0.5) == 10.0
    assert conformal_quantile(scores, 0.05) == 1.0


def test_conformal_coverage_on_exchangeable_errors() -> None:
    rng = np.random.default_rng(7)
    f = rng.uniform(50, 150, size=(40, 24))
    a = f * (1 + rng.normal(0, 0.1, f.shape))
    cal = ConformalCalibrator().fit(f[:20], a[:20])
    lower, upper = cal.bounds(f[20:].ravel(), (90,))
    inside = (a[20:].ravel() >= lower[90]) & (a[20:].ravel() <= upper[90])
    assert 0.85 <= inside.mean() <= 0.95


def test_auto_interval_coverage_on_synthetic_series() -> None:
    y = periodic_series(24 * 60, 24, noise=6.0, seed=11)
    inside = []
    for origin in range(24 * 48, 24 * 60, 24):
        res = AutoForecaster((24,), n_windows=8, compensate=False).forecast(
            y[origin - 24 * 20 : origin], 24, level=(90,)
        )
        actual = y[origin : origin + 24]
        inside.append((actual >= res.lower[90]) & (actual <= res.upper[90]))
    coverage = float(np.mean(inside))
    assert 0.82 <= coverage <= 0.97, coverage
