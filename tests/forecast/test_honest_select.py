"""Selection that must beat the best seasonal naive, and per-step calibrated intervals."""

from __future__ import annotations

import numpy as np

from edgewise.forecast import AutoForecaster
from edgewise.forecast.intervals import StepConformalCalibrator, step_spread
from edgewise.forecast.select import is_naive

from .conftest import periodic_series, seasonal_random_walk


def test_a_candidate_that_barely_beats_the_naive_is_not_chosen() -> None:
    y = seasonal_random_walk(168 * 8, 168, step=6.0, seed=2)
    strict = AutoForecaster((24, 168), min_gain=0.99).fit(y)
    assert is_naive(strict.chosen_), strict.cv_mae_
    assert strict.chosen_ == strict.best_naive_
    assert strict.gain_ == 0.0
    best = min(strict.cv_mae_, key=lambda k: strict.cv_mae_[k])
    if not is_naive(best):
        assert "the naive is used" in strict.decision_


def test_a_clear_winner_is_chosen_and_its_gain_reported() -> None:
    y = periodic_series(168 * 8, 168, noise=8.0, seed=4)
    auto = AutoForecaster((24, 168)).fit(y)
    assert not is_naive(auto.chosen_)
    res = auto.predict(24, level=(90,))
    info = res.info
    assert info["best_naive"] == "seasonal_naive_168"
    assert info["gain_over_naive"] >= 0.15
    naive_mae = auto.cv_mae_["seasonal_naive_168"]
    assert auto.cv_mae_[auto.chosen_] == np.float64((1 - info["gain_over_naive"]) * naive_mae)
    assert info["decision"] == "lowest backtest MAE"
    assert info["calibration_windows"] >= info["n_windows"]


def test_step_spread_has_mean_one_and_follows_the_errors() -> None:
    rel = np.tile(np.linspace(0.1, 1.0, 12), (10, 1))
    g = step_spread(rel)
    assert np.isclose(g.mean(), 1.0)
    assert g[-1] > g[0]
    assert np.allclose(step_spread(np.zeros((5, 4))), 1.0)


def test_step_calibrator_widens_the_steps_that_erred_more() -> None:
    rng = np.random.default_rng(5)
    f = np.full((60, 24), 100.0)
    sd = np.linspace(2.0, 20.0, 24)  # the error grows with the step
    a = f + rng.normal(0.0, 1.0, f.shape) * sd
    cal = StepConformalCalibrator().fit(f[:30], a[:30])
    lower, upper = cal.bounds(np.full(24, 100.0), (90,))
    width = upper[90] - lower[90]
    assert width[-1] > 1.8 * width[0]  # half of the per-step spread is pooled
    inside = (a[30:] >= lower[90]) & (a[30:] <= upper[90])
    assert 0.85 <= inside.mean() <= 0.97
    # steps beyond the calibrated horizon keep the last step's width
    lo, hi = cal.bounds(np.full(30, 100.0), (90,))
    assert np.isclose(hi[90][-1] - lo[90][-1], width[-1])
