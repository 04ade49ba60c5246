"""Fixtures of the report tests: a KB filled per the data contract, and Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgewise.kb import KnowledgeBase, save_model
from edgewise.kb import models as m
from edgewise.report import SECTIONS, ReportResult, write_report

GENERATED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def holdout_rows(rng: np.random.Generator, n: int = 8) -> list[dict[str, float]]:
    measured = rng.uniform(10.0, 40.0, size=n)
    predicted = measured * rng.uniform(0.85, 1.15, size=n)
    return [
        {
            "measured_p50": float(a),
            "predicted_p50": float(p),
            "lower_p50": float(p * 0.85),
            "upper_p50": float(p * 1.15),
            "measured_p99": float(a * 2.0),
            "predicted_p99": float(p * 2.1),
        }
        for a, p in zip(measured, predicted, strict=True)
    ]


def fill_kb(kb: KnowledgeBase, seed: int = 0, app: str = "mobilenet_v2@20rps") -> dict[str, Any]:
    """Write one of every row the report reads; return the raw values used."""
    rng = np.random.default_rng(seed)
    holdout = holdout_rows(rng)
    curve = [
        {"runs": r, "cv_median_ape": 0.4 / np.sqrt(r) * f, "strategy": s}
        for s, f in (("active", 1.0), ("lhs", 1.3))
        for r in (4, 8, 12, 16)
    ]
    save_model(
        kb,
        "surrogate",
        app,
        {"coef": [1.0, 2.0]},
        features=["cpu", "membw"],
        training_ids=list(range(12)),
        metrics={"p50": 0.08, "p99": 0.15, "holdout": holdout, "learning_curve": curve},
        meta={"campaign": "c1"},
    )
    mean = (100 + 30 * np.sin(np.arange(24) / 24 * 2 * np.pi)).tolist()
    actual = (np.array(mean) + rng.normal(0, 5, 24)).tolist()
    with kb.transaction() as s:
        wl = m.Workload(name=app, kind="zoo", params={"rps": 20})
        s.add(wl)
        s.flush()
        camp = m.Campaign(name="c1", target_workload_id=wl.id, status="done", config={})
        s.add(camp)
        s.flush()
        for i in range(12):
            cpu = float(i) / 11
            s.add(
                m.Run(
                    campaign_id=camp.id,
                    index=i,
                    design={"cpu": cpu},
                    achieved={"cpu": cpu},
                    latency={"p50": 10 + 20 * cpu, "p95": 20 + 30 * cpu, "p99": 25 + 50 * cpu},
                    status="failed" if i == 5 else ("flagged" if i == 3 else "ok"),
                    flags=[],
                )
            )
        s.add(
            m.Forecast(
                series="bikeshare",
                method="mstl",
                origin=datetime(2024, 6, 1, tzinfo=UTC),
                horizon=24,
                values={
                    "mean": mean,
                    "lower": {"90": [v - 15 for v in mean], "80": [v - 10 for v in mean]},
                    "upper": {"90": [v + 15 for v in mean], "80": [v + 10 for v in mean]},
                    "actual": actual,
                    "history": (100 + rng.normal(0, 8, 48)).tolist(),
                },
            )
        )
        t = list(range(120))
        rps = (20 + 10 * np.sin(np.arange(120) / 20)).tolist()
        for kind, policy, att, cost in (
            ("replay", "predictive", 0.995, 0.42),
            ("replay", "reactive", 0.95, 0.38),
            ("serving-sim", "predictive", 0.99, 0.40),
        ):
            replicas = [float(1 + int(r // 10)) for r in rps]
            s.add(
                m.Plan(
                    kind=kind,
                    inputs={
                        "policy": policy,
                        "trace": "bikeshare",
                        "start": "2024-06-01",
                        "hours": 24,
                        "speedup": 720,
                        "slo_ms": 150.0,
                    },
                    decision={
                        "summary": {"slo_attainment": att, "cost": cost, "scale_actions": 7},
                        "series": {
                            "t": t,
                            "true_rps": rps,
                            "replicas": replicas,
                            "cpus": [2 * r for r in replicas],
                            "p99_ms": [None if i == 10 else 80.0 + i % 30 for i in t],
                        },
                    },
                    cost=cost,
                )
            )
        for i in range(5):
            s.add(
                m.ScalingEvent(
                    run_key="replay-predictive", t=float(i), policy="predictive", action={"n": i}
                )
            )
        t0 = 1_700_000_000.0
        timeline = []
        for dev in ("dev-a", "dev-b", "dev-c"):
            for step in range(10):
                if dev == "dev-c" and step > 4:
                    break
                start = t0 + step * 2.0 + (6.0 if step > 4 else 0.0)
                timeline.append(
                    {"device": dev, "step": step, "t_start": start, "t_end": start + 1.6}
                )
        s.add(
            m.TrainingJob(
                name="retrain-digits",
                model="digits_cnn",
                status="done",
                config={},
                metrics={
                    "accuracy_before": 0.71,
                    "accuracy_after": 0.93,
                    "train_s": 32.0,
                    "timeline": timeline,
                    "failure": {
                        "device": "dev-c",
                        "t_kill": t0 + 9.7,
                        "t_detect": t0 + 11.2,
                        "t_resume": t0 + 15.7,
                    },
                    "background": {
                        "dev-a": {"p50_ms": 20, "p99_ms": 40, "deadline_ms": 50, "miss_rate": 0.0},
                        "dev-b": {
                            "p50_ms": 30,
                            "p99_ms": 48,
                            "deadline_ms": 50,
                            "miss_rate": 0.004,
                        },
                        "dev-c": {"p50_ms": 35, "p99_ms": 61, "deadline_ms": 50, "miss_rate": 0.03},
                    },
                },
            )
        )
    fill_served(kb)
    return {"holdout": holdout, "mean": mean, "actual": actual}


def fill_served(kb: KnowledgeBase) -> None:
    """A service that served digits:v1, rolled back a slow canary, promoted v2 and runs."""
    from datetime import timedelta

    from edgewise.kb.served import ServedChange, ServedModel, record_change

    v1, v2 = ServedModel("digits:v1", "digits", 1), ServedModel("digits:v2", "digits", 2)
    slow = ServedModel("/models/slow.pt", "/models/slow.pt")
    t0 = GENERATED - timedelta(hours=1)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    for change in (
        ServedChange("digits-svc", "serve started", at(0), v1),
        ServedChange(
            "digits-svc", "rollout rolled back", at(400), slow, at(380), "canary p99 over the SLO"
        ),
        ServedChange("digits-svc", "rollout promoted", at(900), v2, at(870)),
    ):
        record_change(kb, change)


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    """An empty knowledge base in a SQLite file under the test's tmp dir."""
    return KnowledgeBase.open(f"sqlite:///{tmp_path}/kb.sqlite")


@pytest.fixture
def filled(kb: KnowledgeBase) -> tuple[KnowledgeBase, dict[str, Any]]:
    """The knowledge base with one of every row the report reads, and the raw values."""
    return kb, fill_kb(kb)


_CHROMIUM: dict[str, str] = {}


def ensure_chromium() -> str:
    """Path of Debian's ``chromium``; installed once with apt-get when missing and root.

    Skips the calling test, with the reason, when it is missing and cannot be installed.
    """
    if "skip" in _CHROMIUM:
        pytest.skip(_CHROMIUM["skip"])
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if found:
        return found
    if os.geteuid() != 0:
        _CHROMIUM["skip"] = "chromium is missing and we are not root: apt-get install -y chromium"
        pytest.skip(_CHROMIUM["skip"])
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    try:
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            subprocess.run(
                ["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=300
            )
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        _CHROMIUM["skip"] = f"could not install chromium with apt-get: {err}"
        pytest.skip(_CHROMIUM["skip"])
    found = shutil.which("chromium")
    if done.returncode != 0 or not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        _CHROMIUM["skip"] = f"apt-get install chromium failed (exit {done.returncode}): {last}"
        pytest.skip(_CHROMIUM["skip"])
    return found


@dataclass(frozen=True)
class FilledReport:
    """A filled knowledge base, the raw values written, and its rendered report."""

    kb: KnowledgeBase
    raw: dict[str, Any]
    result: ReportResult
    html: str


@pytest.fixture(scope="session")
def filled_report(tmp_path_factory: pytest.TempPathFactory) -> FilledReport:
    """The report of a filled KB, rendered once for all the tests that only read it."""
    tmp = tmp_path_factory.mktemp("filled")
    kb = KnowledgeBase.open(f"sqlite:///{tmp}/kb.sqlite")
    raw = fill_kb(kb)
    seen: list[str] = []
    result = write_report(kb, tmp / "report", GENERATED, on_section=seen.append)
    assert seen == list(SECTIONS)
    return FilledReport(kb, raw, result, result.path.read_text(encoding="utf-8"))


@pytest.fixture
def chromium() -> str:
    """Path of the chromium binary (installed on first use where possible, else skip)."""
    return ensure_chromium()
