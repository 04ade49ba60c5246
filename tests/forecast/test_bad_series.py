"""Bad input to the forecaster: a fallback that says what it did, or one line; never NaN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.errors import TraceError
from edgewise.forecast import AutoForecaster
from edgewise.forecast.guards import is_constant, level_shift_at_end, short_series_note

runner = CliRunner()


def _daily_weekly(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    pattern = 100 + 50 * np.sin(2 * np.pi * t / 24) + 20 * np.sin(2 * np.pi * t / 168)
    return np.asarray(pattern + rng.normal(0.0, 3.0, n))


def _finite(res: object) -> bool:
    arrays = [res.mean, *res.lower.values(), *res.upper.values()]  # type: ignore[attr-defined]
    return all(np.isfinite(a).all() for a in arrays)


def test_shorter_than_two_longest_seasons_tries_what_fits_and_says_so() -> None:
    model = AutoForecaster((24, 168), horizon=24).fit(_daily_weekly(300))
    res = model.predict(24, level=(90,))
    assert _finite(res) and model.chosen_ == "seasonal_naive_24"
    assert "shorter than two longest seasons (336)" in res.info["notes"][0]
    assert "seasons 24" in res.info["notes"][0]


def test_too_short_for_any_backtest_is_one_line() -> None:
    with pytest.raises(TraceError, match="series too short: 100 points, auto needs"):
        AutoForecaster((24, 168), horizon=24).fit(_daily_weekly(100))


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_constant_series_forecasts_its_value(value: float) -> None:
    model = AutoForecaster((24, 168), horizon=24).fit(np.full(1344, value))
    res = model.predict(24, level=(90,))
    assert _finite(res)
    np.testing.assert_array_equal(res.mean, value)
    np.testing.assert_array_equal(res.upper[90], value)
    assert res.info["decision"].startswith("constant series")
    assert is_constant(np.full(3, value)) and not is_constant(np.arange(3.0))


def test_level_shift_at_the_end_follows_the_new_level() -> None:
    y = _daily_weekly(1344)
    y[-44:] *= 3.0
    model = AutoForecaster((24, 168), horizon=24).fit(y)
    res = model.predict(24, level=(90,))
    assert _finite(res) and model.chosen_ == "seasonal_naive_24"
    assert res.info["decision"] == "level shift at the end"
    assert "level shift at the end" in res.info["notes"][0]
    assert res.mean.mean() > 2.0 * _daily_weekly(1344)[-24:].mean()


def test_outage_at_the_end_is_a_shift_and_no_nan() -> None:
    y = _daily_weekly(1344)
    y[-30:] = 0.0
    ratio = level_shift_at_end(y, 24, 168)
    assert ratio is not None and ratio < 0.2
    res = AutoForecaster((24, 168), horizon=24).forecast(y, 24, level=(90,))
    assert _finite(res)


def test_no_shift_on_a_regular_series_or_one_seen_before() -> None:
    y = _daily_weekly(1344)
    assert level_shift_at_end(y, 24, 168) is None
    y[500:524] *= 3.0  # the same jump happened before: a precedent, not a shift
    y[-24:] *= 2.5
    assert level_shift_at_end(y, 24, 168) is None
    assert level_shift_at_end(y[:100], 24, 168) is None  # too short to tell
    assert short_series_note(400, (24, 168)) is None


def test_a_long_gap_in_a_csv_is_one_line(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=24 * 40, freq="h")
    keep = np.r_[0 : 24 * 10, 24 * 20 : 24 * 40]  # ten days missing
    path = tmp_path / "gap.csv"
    pd.DataFrame({"when": times[keep], "requests": _daily_weekly(24 * 40)[keep]}).to_csv(
        path, index=False
    )
    result = runner.invoke(make_app(["forecast"]), ["forecast", str(path)])
    assert result.exit_code == 2
    assert "gap in the time index: 240 missing" in result.output
    assert len(result.output.strip().splitlines()) == 1
