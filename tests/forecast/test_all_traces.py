"""``edgewise bench forecast --all-traces`` and the winner line of ``edgewise forecast``."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from edgewise.api.forecast import benchmark_all_traces
from edgewise.bench.forecast import run_all
from edgewise.cli.forecast import register_bench, winner_line
from edgewise.cli.main import make_app
from edgewise.errors import SpecError

runner = CliRunner()


def _bench_app() -> typer.Typer:
    bench = typer.Typer()
    register_bench(bench)
    app = make_app([])
    app.add_typer(bench, name="bench")
    return app


def test_all_traces_reports_each_trace_and_the_median_and_worst() -> None:
    out = run_all(["wikipedia", "pedestrians"], origins=2)
    assert [t["trace"] for t in out["traces"]] == ["wikipedia", "pedestrians"]
    ratios = [t["mae_ratio"] for t in out["traces"]]
    assert out["worst_mae_ratio"] == max(ratios)
    assert out["median_mae_ratio"] == pytest.approx(sum(ratios) / 2)
    coverages = [t["coverage_90"] for t in out["traces"]]
    assert out["worst_coverage_90"] in coverages
    assert abs(out["worst_coverage_90"] - 0.9) == max(abs(c - 0.9) for c in coverages)
    daily, hourly = out["traces"]
    assert daily["seasons"] == [7] and daily["horizon"] == 7 and daily["train"] == 56
    assert hourly["seasons"] == [24, 168] and hourly["step"] == 24 and hourly["train"] == 1344
    assert hourly["best_naive"] in ("seasonal_naive_24", "seasonal_naive_168")
    assert sum(hourly["chosen"].values()) == 2


def test_the_ratio_is_to_the_best_naive() -> None:
    res = benchmark_all_traces(traces=["wikipedia"], origins=2, method="seasonal_naive_7")
    assert res.results[0].mae_ratio_best_naive == pytest.approx(1.0)


def test_unknown_trace_is_one_line() -> None:
    with pytest.raises(SpecError, match="not a named trace"):
        benchmark_all_traces(traces=["nosuch"], origins=1)


def test_cli_all_traces_json_and_exclusive_options() -> None:
    app = _bench_app()
    result = runner.invoke(app, ["bench", "forecast", "--all-traces", "--origins", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"median_mae_ratio", "worst_mae_ratio", "worst_coverage_90"} <= set(out)
    assert {t["trace"] for t in out["traces"]} >= {"bikeshare", "electricity", "wikipedia"}
    both = runner.invoke(app, ["bench", "forecast", "--all-traces", "--trace", "bikeshare"])
    assert both.exit_code == 2 and "either --trace or --all-traces" in both.output
    neither = runner.invoke(app, ["bench", "forecast"])
    assert neither.exit_code == 2


def test_winner_line_names_the_choice_and_the_gain() -> None:
    info = {
        "chosen": "mstl",
        "cv_mae": {"mstl": 8.0, "seasonal_naive_168": 10.0, "seasonal_median_4": 9.0},
        "best_naive": "seasonal_naive_168",
        "gain_over_naive": 0.2,
        "n_windows": 7,
        "decision": "lowest backtest MAE",
    }
    line = winner_line(info)
    assert line.startswith("chosen: mstl")
    assert "20.0% below the best seasonal naive seasonal_naive_168" in line
    assert "runner-up seasonal_median_4 9" in line
    fallback = info | {
        "chosen": "seasonal_naive_168",
        "gain_over_naive": 0.0,
        "decision": "mstl beat seasonal_naive_168 by 3.0% (needs 15%): the naive is used",
    }
    assert "the naive is used" in winner_line(fallback)


def test_forecast_prints_the_winner() -> None:
    app = make_app(["forecast"])
    result = runner.invoke(app, ["forecast", "wikipedia", "--horizon", "7"])
    assert result.exit_code == 0, result.output
    assert "chosen: " in result.output and "windows" in result.output
