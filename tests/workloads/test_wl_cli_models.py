"""`edgewise models`: measured latencies for a subset of the zoo, one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edgewise.cli.main import make_app


def test_models_table_for_one_model() -> None:
    app = make_app(["models"])
    result = CliRunner().invoke(app, ["models", "--models", "digits_cnn", "--repeats", "3"])
    assert result.exit_code == 0, result.output
    assert "digits_cnn" in result.output
    assert "89,546" in result.output  # parameter count
    assert "batch 1" in result.output and "batch 8" in result.output


def test_models_json_has_positive_measured_latencies() -> None:
    app = make_app(["models"])
    args = ["models", "--models", "digits_cnn", "--repeats", "3", "--batch-sizes", "1,4"]
    result = CliRunner().invoke(app, [*args, "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["digits_cnn"]
    row = rows[0]
    assert row["params"] == 89_546 and row["threads"] == 1 and row["input"] == [1, 32, 32]
    for bs in ("1", "4"):
        lat = row["latency_ms"][bs]
        assert 0 < lat["p50"] <= lat["p95"]


def test_models_rejects_unknown_names_and_bad_sizes() -> None:
    app = make_app(["models"])
    result = CliRunner().invoke(app, ["models", "--models", "digits_cnn,alexnet"])
    assert result.exit_code == 2
    assert "unknown model 'alexnet'; known models: mobilenet_v2" in result.output
    result = CliRunner().invoke(app, ["models", "--batch-sizes", "1,x"])
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["models", "--batch-sizes", "0"])
    assert result.exit_code == 2
