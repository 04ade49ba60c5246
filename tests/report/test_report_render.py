"""The HTML report: figures per section, empty-KB sentences, escaping, robustness, CLI."""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.kb import KnowledgeBase, save_model
from edgewise.kb import models as m
from edgewise.report import SECTIONS, ReportResult, render_html, write_report
from edgewise.report.forecast import score
from edgewise.report.retrain import recovery
from edgewise.report.serving import MAX_PLOT_POINTS, bucket

GENERATED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sections_of(html: str) -> dict[str, str]:
    """The inner HTML of each ``<section id=...>``."""
    found = re.findall(r'<section id="([^"]+)">(.*?)</section>', html, flags=re.S)
    return dict(found)


def png_sizes(fragment: str) -> list[tuple[int, int]]:
    """Width and height of every ``<img>`` data URI in ``fragment`` (asserting PNG)."""
    sizes = []
    for src in re.findall(r'<img src="([^"]*)"', fragment):
        assert src.startswith("data:image/png;base64,"), src[:40]
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == PNG_SIGNATURE
        assert raw[12:16] == b"IHDR"
        sizes.append(struct.unpack(">II", raw[16:24]))
    return sizes


@dataclass(frozen=True)
class Rendered:
    result: ReportResult
    html: str
    raw: dict[str, Any]
    summary: dict[str, str]


@pytest.fixture
def rendered(filled_report: Any) -> Rendered:
    """The shared filled report and its summary table as ``{what: value}``."""
    html = filled_report.html
    rows = re.findall(
        r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td></tr>", sections_of(html)["summary"]
    )
    summary = {unescape(k): unescape(v) for k, v in rows}
    return Rendered(filled_report.result, html, filled_report.raw, summary)


def test_every_section_embeds_png_figures(rendered: Rendered) -> None:
    result, html = rendered.result, rendered.html
    assert result.path.name == "index.html" and result.size_bytes == len(html.encode())
    parts = sections_of(html)
    assert list(parts) == ["summary", *SECTIONS]
    for key in SECTIONS:
        sizes = png_sizes(parts[key])
        assert len(sizes) == result.figures[key] >= 1, key
        assert all(w > 100 and h > 100 for w, h in sizes)
    # Profile: held-out scatter, learning curve, campaign; serving: trade-off + 3 policies.
    assert result.figures == {
        "profile": 3,
        "forecast": 1,
        "serving": 4,
        "versions": 1,
        "retrain": 2,
    }
    assert 'class="empty"' not in html
    # Self-contained: no external resources, no script.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html.lower()
    assert "2025-03-01T12:00:00+00:00" in html


def test_summary_numbers_come_from_the_rows(rendered: Rendered) -> None:
    raw, summary = rendered.raw, rendered.summary
    measured = np.array([h["measured_p50"] for h in raw["holdout"]])
    predicted = np.array([h["predicted_p50"] for h in raw["holdout"]])
    ape = float(np.median(np.abs(predicted - measured) / measured))
    assert summary["mobilenet_v2@20rps: held-out median APE p50"] == f"{100 * ape:.1f} %"
    mean, actual = np.array(raw["mean"]), np.array(raw["actual"])
    inside = np.mean((actual >= mean - 15) & (actual <= mean + 15))
    assert summary["bikeshare / mstl: 90 % coverage"] == f"{100 * inside:.1f} %"
    assert summary["reactive (replay): attainment / cost"] == "95.00 % / 0.380"
    assert summary["retrain-digits: accuracy before -> after"] == "71.0 % -> 93.0 %"
    assert summary["retrain-digits: resumed after failure of dev-c"] == "6.00 s"
    assert summary["retrain-digits: background deadlines kept"] == "2 of 3 devices"
    assert summary["profiling runs (ok)"] == "10 in the 1 campaigns"
    assert summary["digits-svc: serving"] == "digits:v2"
    # The scaling events of the one run key are counted.
    assert "<td>replay-predictive</td><td>predictive</td><td>5</td>" in rendered.html


def test_empty_kb_says_which_command_fills_each_section(kb: KnowledgeBase, tmp_path: Path) -> None:
    result = write_report(kb, tmp_path / "empty", GENERATED)
    html = result.path.read_text(encoding="utf-8")
    assert "<img" not in html
    assert result.figures == dict.fromkeys(SECTIONS, 0)
    parts = sections_of(html)
    expected = {
        "summary": ["edgewise demo"],
        "profile": ["edgewise profile APP"],
        "forecast": ["edgewise demo"],
        "serving": ["edgewise replay", "edgewise serve"],
        "versions": ["edgewise serve", "edgewise rollout"],
        "retrain": ["edgewise retrain"],
    }
    for key, commands in expected.items():
        assert 'class="empty"' in parts[key], key
        for cmd in commands:
            assert f"<code>{cmd}</code>" in parts[key], (key, cmd)
    assert "No interference models in the knowledge base yet" in parts["profile"]
    assert "No training jobs in the knowledge base yet" in parts["retrain"]


def test_text_from_the_kb_is_escaped(kb: KnowledgeBase, tmp_path: Path) -> None:
    evil = '<script>alert("x")</script>&'
    save_model(
        kb,
        "surrogate",
        evil,
        {"w": 1},
        metrics={"learning_curve": [{"runs": 4, "cv_median_ape": 0.2, "strategy": evil}]},
    )
    with kb.transaction() as s:
        s.add(
            m.Forecast(series=evil, method="m<1>", origin="o&o", horizon=2, values={"mean": [1, 2]})
        )
    html, _ = render_html(kb, GENERATED)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in html
    assert "m&lt;1&gt;" in html and "o&amp;o" in html


def test_malformed_rows_become_notes_not_crashes(kb: KnowledgeBase, tmp_path: Path) -> None:
    save_model(kb, "surrogate", "app", {"w": 1}, metrics={"holdout": [{"measured_p50": None}]})
    save_model(kb, "surrogate", "bare", {"w": 1}, metrics={"p50": 0.1})
    with kb.transaction() as s:
        s.add(m.Forecast(series="s", method="m", origin="o", horizon=3, values={"mean": "oops"}))
        s.add(
            m.Plan(
                kind="replay",
                inputs={"policy": "p"},
                decision={"summary": {}, "series": {"t": [0, 1, 2], "replicas": [1, 2]}},
                cost=None,
            )
        )
        s.add(m.Plan(kind="serving", inputs={}, decision={}, cost=1.0))  # not a replay: ignored
        s.add(m.TrainingJob(name="j", model="x", status="failed", metrics={"timeline": 5}))
    result = write_report(kb, tmp_path / "bad", GENERATED)
    html = result.path.read_text(encoding="utf-8")
    assert result.figures == dict.fromkeys(SECTIONS, 0)
    assert "app v1: skipped, holdout has no measured_p50 values." in html
    assert "bare v1 stores no held-out evaluation or learning curve" in html
    assert "skipped, expected a list of numbers, got str." in html
    assert "decision.series.replicas has 2 points, t has 3." in html
    assert "j: skipped, metrics.timeline is not a list." in html


def test_forecast_score_and_recovery_are_exact() -> None:
    values = {
        "mean": [10.0, 10.0, 10.0, 10.0],
        "actual": [10.0, 12.0, 5.0, None],
        "lower": {"90": [9, 9, 9, 9], "50": [9.5] * 4},
        "upper": {"90": [11, 13, 11, 11], "50": [10.5] * 4},
    }
    sc = score(values)
    assert sc.mae == pytest.approx((0 + 2 + 5) / 3)
    assert sc.mape == pytest.approx((0 + 2 / 12 + 5 / 5) / 3)
    assert sc.level == "90" and sc.coverage == pytest.approx(2 / 3)
    assert score({"mean": [1.0]}).mae is None
    rec = recovery(
        {"failure": {"device": "d", "t_kill": 100.0, "t_detect": 101.5, "t_resume": 104}}
    )
    assert rec is not None and (rec.detect_s, rec.resume_s) == (1.5, 4.0)
    assert recovery({}) is None


def test_cli_writes_the_report_and_refuses_a_file_as_out(
    filled: tuple[KnowledgeBase, dict[str, Any]], tmp_path: Path
) -> None:
    kb, _ = filled
    app = make_app(["report"])
    runner = CliRunner()
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", "--out", str(out), "--db", kb.url])
    assert res.exit_code == 0, res.output
    assert "report written to" in res.output and "serving 4" in res.output
    assert png_sizes((out / "index.html").read_text(encoding="utf-8"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["report", "--out", str(blocker), "--db", kb.url])
    assert res.exit_code == 2
    assert "exists and is not a directory" in res.output
    assert "Traceback" not in res.output


def test_bucket_keeps_peaks_and_gaps() -> None:
    values = np.array([1.0, 5.0, np.nan, np.nan, 3.0])
    assert np.array_equal(bucket(values, 2, np.nanmax), [5.0, np.nan, 3.0], equal_nan=True)
    assert np.allclose(bucket(np.arange(6.0), 3, np.nanmean), [1.0, 4.0])


def test_long_serving_series_are_bucketed(kb: KnowledgeBase) -> None:
    n = 3 * MAX_PLOT_POINTS + 7
    p99 = np.full(n, 50.0)
    p99[1234] = 900.0  # one spike: must survive bucketing
    with kb.transaction() as s:
        s.add(
            m.Plan(
                kind="serving-sim",
                inputs={"policy": "long", "slo_ms": 100.0},
                decision={
                    "summary": {"slo_attainment": 0.9, "cost": 2.0},
                    "series": {"t": list(range(n)), "p99_ms": p99.tolist()},
                },
                cost=None,
            )
        )
    _, sections = render_html(kb, GENERATED)
    serving = next(s for s in sections if s.key == "serving")
    assert serving.figures == 2  # trade-off scatter + the policy
    assert bucket(p99, -(-n // MAX_PLOT_POINTS), np.nanmax).max() == 900.0


def test_the_versions_section_lists_each_interval_with_its_reasons(rendered: Rendered) -> None:
    part = sections_of(rendered.html)["versions"]
    rows = [
        [unescape(c) for c in re.findall(r"<td>([^<]*)</td>", row)]
        for row in re.findall(r"<tr>(<td>.*?)</tr>", part)
    ]
    assert [(r[0], r[1], r[4], r[5]) for r in rows] == [
        ("digits:v1", "serving", "serve started", "rollout promoted"),
        (
            "/models/slow.pt",
            "canary",
            "rollout started",
            "rollout rolled back: canary p99 over the SLO",
        ),
        ("digits:v2", "canary", "rollout started", "rollout promoted"),
        ("digits:v2", "serving", "rollout promoted", "-"),
    ]
    assert rows[-1][3] == "serving" and rows[0][3] == "2025-03-01T11:15:00+00:00"
    assert "digits-svc: 4 intervals of 3 versions; digits:v2 serving now." in unescape(part)
