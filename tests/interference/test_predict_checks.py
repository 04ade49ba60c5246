"""Validation before work, and intervals only where the model's runs support them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgewise.errors import SpecError, UnknownNameError
from edgewise.interference.footprint import parse_stressor
from edgewise.interference.predictor import (
    INTERVAL_RANGE_FACTOR,
    TrainingSupport,
    interval_supported,
)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("stress:", "names no resource"),
        ("stress:,", "names no resource"),
        ("stress:cpu=", "no value for cpu"),
        ("stress:=0.5", "names no resource"),
        ("stress:cpu=x", "is not a number"),
        ("stress:gpu2=0.5", "unknown resource"),
        ("stress:cpu=1.5", "must lie in"),
    ],
)
def test_a_stress_spec_without_a_resource_is_an_error_naming_it(spec: str, says: str) -> None:
    with pytest.raises(SpecError, match=says) as err:
        parse_stressor(spec)
    assert repr(spec) in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, UnknownNameError)  # what callers caught before


class _NoProcess:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process started: {args[:1]}")


def _kb(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kb.sqlite'}"


def test_predict_checks_its_inputs_before_reading_a_model(tmp_path: Path) -> None:
    from edgewise.api.profile import predict

    with pytest.raises(SpecError, match=r"bad stressor 'stress:'"):
        predict(app="digits_cnn", neighbours=["stress:"], kb=_kb(tmp_path))
    with pytest.raises(UnknownNameError) as err:
        predict(app="no_such_model", kb=_kb(tmp_path))
    msg = str(err.value)
    assert "edgewise profile no_such_model" not in msg
    assert "digits_cnn" in msg and "nothing profiled yet" in msg
    with pytest.raises(UnknownNameError, match=r"run `edgewise profile digits_cnn` first"):
        predict(app="digits_cnn", kb=_kb(tmp_path))


@pytest.mark.parametrize("app", ["no_such_model", "no_such_model@20rps", "cmd:/no/such/program"])
def test_profile_names_an_unknown_app_before_any_process_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app: str
) -> None:
    from edgewise.api.profile import profile

    monkeypatch.setattr(subprocess, "Popen", _NoProcess)
    with pytest.raises(UnknownNameError, match=r"unknown app|command not found"):
        profile(app=app, budget=2, load=0.2, kb=_kb(tmp_path))


def test_interval_support_bounds() -> None:
    s = TrainingSupport(runs=10, clean_runs=8, low_ms=10.0, high_ms=40.0)
    assert interval_supported(9.0, 45.0, s)
    assert not interval_supported(0.0, 20.0, s)  # the [0.00, ...] of the issue
    assert not interval_supported(12.0, 40.0 * INTERVAL_RANGE_FACTOR * 1.01, s)
    assert not interval_supported(10.0 / INTERVAL_RANGE_FACTOR * 0.99, 20.0, s)
    assert not interval_supported(12.0, float("inf"), s)
    assert interval_supported(24.0, 90.0, s, scale=2.0)  # the band moves with the drift
    runs = [
        {"latency": {"p50": 10.0, "p99": 30.0}, "flags": ["solo"]},
        {"latency": {"p50": 20.0, "p99": 50.0}, "flags": ["foreign_cpu=0.90"]},
    ]
    assert TrainingSupport.of_runs(runs) == TrainingSupport(2, 1, 10.0, 50.0)
    assert TrainingSupport.of_runs([]) is None


def _campaign(kb_url: str, sigma: float) -> None:
    """A campaign over fakes: every stressed run disturbed by foreign load once, and
    latencies scattered by ``sigma`` (log scale) around a slowdown of 1 + cpu."""
    from edgewise.interference.campaign import CampaignConfig, CampaignRunner, Measured
    from edgewise.kb import KnowledgeBase

    class FakeTarget:
        name, kind, params = "fake@1rps", "command", {"argv": ["true"]}

        def start(self) -> None: ...

        def close(self) -> None: ...

    rng = np.random.default_rng(0)
    calls = [0]

    def measure(target: object, design: dict[str, float], **kw: object) -> Measured:
        calls[0] += 1
        lat = 10.0 * (1 + design.get("cpu", 0.0)) * float(np.exp(rng.normal(0, sigma)))
        return Measured(
            dict(design),
            {"cpu": design.get("cpu", 0.0), "target_cpu": 0.1},
            {"p50": lat, "p95": 1.2 * lat, "p99": 1.5 * lat, "mean": lat, "n": 10},
            0.9 if calls[0] % 2 == 0 else 0.0,
            {},
        )

    cfg = CampaignConfig(
        name="fake",
        budget=8,
        solo_runs=1,
        space={"cpu": (0.0, 0.9)},
        surrogates=("gp",),
        curve_step=2,
    )
    CampaignRunner(KnowledgeBase.open(kb_url), FakeTarget(), cfg, measure=measure).run()


def test_an_interval_the_runs_cannot_support_is_reported_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from edgewise.api.profile import predict
    from edgewise.cli.main import app

    healthy, disturbed = _kb(tmp_path / "a"), _kb(tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _campaign(healthy, sigma=0.01)
    _campaign(disturbed, sigma=3.0)

    ok = predict(app="fake@1rps", neighbours=["stress:cpu=0.5"], kb=healthy).as_dict()
    assert ok["interval_note"] is None and ok["clean_runs"] == 1
    assert ok["lower"]["p50"] <= ok["p50"] <= ok["upper"]["p50"]

    bad = predict(app="fake@1rps", neighbours=["stress:cpu=0.5"], kb=disturbed).as_dict()
    assert bad["lower"] == dict.fromkeys(("p50", "p95", "p99"))
    assert bad["upper"] == dict.fromkeys(("p50", "p95", "p99"))
    assert bad["clean_runs"] == 1 and bad["p50"] > 0
    assert bad["interval_note"].startswith("not enough clean runs (1 of 9)")
    assert json.loads(json.dumps(bad)) == bad

    monkeypatch.setenv("EDGEWISE_HOME", str(tmp_path))
    monkeypatch.setenv("EDGEWISE_DB_URL", disturbed)
    out = CliRunner().invoke(app, ["predict", "fake@1rps", "--with", "stress:cpu=0.5"])
    assert out.exit_code == 0, out.output
    assert "p50: " in out.output and "[not enough clean runs: 1]" in out.output
    as_json = CliRunner().invoke(
        app, ["predict", "fake@1rps", "--with", "stress:cpu=0.5", "--json"]
    )
    doc = json.loads(as_json.stdout)
    assert doc["lower"]["p99"] is None and "not enough clean runs" in doc["interval_note"]
    empty = CliRunner().invoke(app, ["predict", "fake@1rps", "--with", "stress:"])
    assert empty.exit_code == 2 and "bad stressor 'stress:'" in empty.output
