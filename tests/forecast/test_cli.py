"""``edgewise forecast`` and ``edgewise bench forecast`` on small CSV traces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from edgewise.bench.forecast import run
from edgewise.cli.forecast import register_bench
from edgewise.cli.main import make_app

from .conftest import periodic_series

runner = CliRunner()


def _write(path: Path, freq: str, values: np.ndarray) -> Path:
    times = pd.date_range("2024-01-01", periods=len(values), freq=freq)
    pd.DataFrame({"when": times, "requests": np.round(values, 2)}).to_csv(path, index=False)
    return path


@pytest.fixture
def hourly_csv(tmp_path: Path) -> Path:
    return _write(tmp_path / "hourly.csv", "h", periodic_series(24 * 21, 24, 3.0, seed=2))


def test_forecast_prints_table_and_plot(hourly_csv: Path, tmp_path: Path) -> None:
    app = make_app(["forecast"])
    png = tmp_path / "out" / "fc.png"
    result = runner.invoke(
        app,
        [
            "forecast",
            str(hourly_csv),
            "--time-col",
            "when",
            "--value-col",
            "requests",
            "--horizon",
            "6",
            "--season",
            "24",
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2024-01-22 00:00:00" in result.stdout  # first forecast step
    assert "lo 90%" in result.stdout and "auto(" in result.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_forecast_json_infers_seasons(hourly_csv: Path) -> None:
    app = make_app(["forecast"])
    result = runner.invoke(
        app,
        [
            "forecast",
            str(hourly_csv),
            "--method",
            "seasonal_naive_daily",
            "--json",
            "--level",
            "80",
            "--level",
            "95",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["mean"]) == 24 and set(out["upper"]) == {"80", "95"}
    assert out["method"] == "seasonal_naive(24)"


def test_forecast_errors_are_one_line(tmp_path: Path) -> None:
    app = make_app(["forecast"])
    values = periodic_series(60, 24, 1.0, seed=0)
    values[10] = -1.0
    bad = _write(tmp_path / "bad.csv", "h", values)
    result = runner.invoke(app, ["forecast", str(bad)])
    assert result.exit_code == 2
    assert "negative value" in result.output and len(result.output.strip().splitlines()) == 1

    short = _write(tmp_path / "short.csv", "h", periodic_series(100, 24, 1.0, seed=0))
    result = runner.invoke(app, ["forecast", str(short), "--season", "168"])
    assert result.exit_code == 2
    assert "too short" in result.output and len(result.output.strip().splitlines()) == 1

    result = runner.invoke(app, ["forecast", str(short), "--season", "a,b"])
    assert result.exit_code == 2 and "--season" in result.output

    result = runner.invoke(app, ["forecast", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "no trace" in result.output


def test_bench_on_daily_csv(tmp_path: Path) -> None:
    daily = _write(tmp_path / "daily.csv.gz", "D", periodic_series(364 + 7 + 21, 7, 4.0, seed=5))
    bench = typer.Typer()
    register_bench(bench)
    app = make_app([])
    app.add_typer(bench, name="bench")
    result = runner.invoke(
        app,
        [
            "bench",
            "forecast",
            "--trace",
            str(daily),
            "--time-col",
            "when",
            "--value-col",
            "requests",
            "--season",
            "7",
            "--horizon",
            "7",
            "--train",
            "364",
            "--origins",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["step"] == 7 and out["origins"] == 4 and len(out["chosen"]) == 4
    assert out["mae_ratio_prophet"] is None
    assert 0.0 <= out["coverage_90"] <= 1.0
    assert out["mae_ratio"] > 0 and out["mae_ratio_mstl"] > 0 and out["fit_predict_ms"] > 0

    result = runner.invoke(
        app, ["bench", "forecast", "--trace", str(daily), "--season", "7", "--train", "2000"]
    )
    assert result.exit_code == 2 and "too short for the benchmark" in result.output


def test_bench_run_matches_direct_computation(tmp_path: Path) -> None:
    daily = _write(tmp_path / "d.csv", "D", periodic_series(120, 7, 2.0, seed=6))
    out = run(daily, None, None, [7], 7, 2, 56, 0, method="seasonal_naive_7")
    assert out["mae_ratio"] == pytest.approx(1.0)  # the baseline against itself


def test_api_forecast_is_what_the_cli_prints(hourly_csv: Path) -> None:
    from edgewise.api.forecast import forecast

    fc = forecast(trace=hourly_csv, time_col="when", value_col="requests", horizon=6, train=240)
    assert fc.horizon == 6 and fc.n_train == 240 and fc.seasons[0] == 24
    assert str(fc.future[0]) == "2024-01-22 00:00:00" and fc.levels == (90,)
    app = make_app(["forecast"])
    args = ["forecast", str(hourly_csv), "--time-col", "when", "--value-col", "requests"]
    result = runner.invoke(app, [*args, "--horizon", "6", "--train", "240", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(fc.as_dict(), default=float))


def test_api_forecast_holds_out_scores_and_stores(tmp_path: Path) -> None:
    from edgewise.api.forecast import forecast
    from edgewise.kb import KnowledgeBase
    from edgewise.kb import models as m

    db = f"sqlite:///{tmp_path / 'kb.sqlite'}"
    fc = forecast(
        trace="bikeshare", seasons=(24, 168), holdout=24, train=24 * 7 * 4, store=True, kb=db
    )
    assert fc.actual is not None and len(fc.actual) == 24 == fc.horizon
    assert fc.future[0] == fc.actual.index[0]  # forecasts exactly the held-out day
    ratio = fc.mae_ratio
    assert ratio is not None and 0.0 < ratio < 5.0
    assert fc.stored_id is not None
    with KnowledgeBase.open(db) as kb, kb.transaction() as s:
        row = s.get(m.Forecast, fc.stored_id)
        assert row is not None and len(row.values["actual"]) == 24
