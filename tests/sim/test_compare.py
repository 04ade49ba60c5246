"""Comparisons of simulated runs: the worst trace of a multi-trace bench, and its CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from edgewise.sim.compare import compare_ours, worst_trace


def _report(ratio: float | None, attainment: float = 0.999) -> dict[str, Any]:
    out: dict[str, Any] = {"slo_attainment": attainment, "policies": {}}
    if ratio is not None:
        out["cost_ratio_vs_oracle"] = ratio
    return out


def test_worst_trace_is_the_highest_cost_over_the_oracle() -> None:
    reports = {"a": _report(1.02), "b": _report(1.07), "c": _report(1.04)}
    assert worst_trace(reports) == "b"
    assert worst_trace({"a": _report(1.03), "b": _report(1.03)}) == "a"  # ties: first


def test_worst_trace_without_an_oracle_is_the_lowest_attainment() -> None:
    reports = {"a": _report(None, 0.999), "b": _report(None, 0.98), "c": _report(1.01)}
    assert worst_trace(reports) == "c"  # a ratio ranks before none
    del reports["c"]
    assert worst_trace(reports) == "b"
    only_hpa = {"policies": {"hpa": {"slo_attainment": 0.97}}}
    assert worst_trace({"a": _report(None, 0.99), "h": only_hpa}) == "h"
    with pytest.raises(ValueError, match="no trace"):
        worst_trace({})


def test_compare_ours_reports_attainment_against_the_oracle_in_points() -> None:
    per_policy = {
        "edgewise": {"slo_attainment": 0.9985, "cost": 10.5},
        "oracle": {"slo_attainment": 0.9990, "cost": 10.0},
    }
    out: dict[str, Any] = {}
    compare_ours(out, per_policy, None)
    assert out["cost_ratio_vs_oracle"] == pytest.approx(1.05)
    assert out["attainment_vs_oracle_pt"] == pytest.approx(-0.05)
    assert "cost_ratio_vs_hpa" not in out


def _csv(tmp_path: Path, name: str, amplitude: float) -> Path:
    hours = pd.date_range("2024-01-01", periods=24 * 17, freq="h")
    phase = np.sin((hours.hour.to_numpy() - 6) / 24 * 2 * np.pi)
    rate = 10 + amplitude * np.clip(phase, 0, None)
    path = tmp_path / f"{name}.csv"
    pd.DataFrame({"when": hours.astype(str), "requests": rate}).to_csv(path, index=False)
    return path


def _bench() -> typer.Typer:
    from edgewise.bench.serving import register_bench

    bench = typer.Typer()
    register_bench(bench)

    @bench.callback()
    def _root() -> None:
        """bench"""

    return bench


def test_bench_serving_runs_several_traces_with_the_worst_on_top(tmp_path: Path) -> None:
    traces = [str(_csv(tmp_path, "flat", 5.0)), str(_csv(tmp_path, "peaky", 90.0))]
    args = ["serving", "--traces", ",".join(traces), "--days", "0.1", "--max-replicas", "20"]
    res = CliRunner().invoke(_bench(), [*args, "--policies", "edgewise,oracle", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out["traces"]) == traces
    worst = out["worst_trace"]
    assert worst in traces
    ratios = {t: r["cost_ratio_vs_oracle"] for t, r in out["traces"].items()}
    assert ratios[worst] == max(ratios.values())
    # The top level is the worst trace's report, with every key a single run has.
    for key in ("trace", "cost_ratio_vs_oracle", "slo_attainment", "policies", "flavors"):
        assert out[key] == out["traces"][worst][key]
    assert out["trace"] == worst
    assert "attainment_vs_oracle_pt" in out


def test_bench_serving_refuses_an_empty_or_unknown_trace_before_simulating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgewise.bench.serving as bench_serving

    simulated: list[str] = []
    monkeypatch.setattr(bench_serving, "run", lambda **kw: simulated.append(kw["trace"]))
    res = CliRunner().invoke(_bench(), ["serving", "--traces", " , ", "--json"])
    assert res.exit_code != 0
    assert "no trace named" in str(res.exception)
    good = str(_csv(tmp_path, "good", 50.0))
    missing = str(tmp_path / "missing.csv")
    res = CliRunner().invoke(_bench(), ["serving", "--traces", f"{good},{missing}", "--json"])
    assert res.exit_code != 0
    assert "missing.csv" in str(res.exception)
    assert simulated == []
