"""`edgewise replay` for real: Ray Serve, the live controller and the open-loop load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.serving.replay import select_segment
from edgewise.workloads.traces import load_trace


def test_select_segment_scales_peak_and_keeps_history() -> None:
    series = load_trace("bikeshare")
    seg = select_segment(series, "2019-08-20 00:00", 24, 1440, peak_rps=30.0)
    assert abs(seg.rates_rps.max() - 30.0) < 1e-9
    assert seg.history_rps.size == 24 * 7 * 5 and seg.wall_bin_s == 2.5
    assert seg.per_second().size == 60


@pytest.mark.parametrize(
    ("start", "hours", "fragment"),
    [("2031-01-01", 2, "outside the trace"), ("2019-08-31 20:00", 10, "run past the end")],
)
def test_select_segment_rejects_bad_ranges(start: str, hours: float, fragment: str) -> None:
    from edgewise.errors import TraceError

    with pytest.raises(TraceError, match=fragment):
        select_segment(load_trace("bikeshare"), start, hours, 60, 10.0)


@pytest.mark.slow
def test_replay_cli_runs_live_and_stores_results(tmp_path: Path) -> None:
    plot = tmp_path / "replay.png"
    res = CliRunner().invoke(
        make_app(["serve"]),
        [
            "replay",
            "--hours",
            "2",
            "--speedup",
            "720",
            "--policy",
            "hpa",
            "--model",
            "digits_cnn",
            "--slo-ms",
            "100",
            "--port",
            "0",
            "--plot",
            str(plot),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["hpa"]["requests"] > 0 and 0.0 <= out["hpa"]["slo_attainment"] <= 1.0
    assert out["hpa"]["cost"] > 0 and plot.stat().st_size > 10_000
    with KnowledgeBase.open().snapshot() as s:
        row = s.scalars(select(m.Plan).where(m.Plan.kind == "replay")).one()
        assert row.inputs["policy"] == "hpa" and row.decision["series"]["replicas"]
