"""``edgewise plan`` over capacity profiles stored in a temporary knowledge base."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.serving.capacity import capacity_rps
from edgewise.serving.profiles import FlavorProfile, save_profile

FLAVORS = """
flavors:
  - {name: small,  cpus: 0.5, price_per_hour: 0.025, max_replicas: 10}
  - {name: medium, cpus: 1.0, price_per_hour: 0.048, max_replicas: 10}
  - {name: large,  cpus: 2.0, price_per_hour: 0.096, max_replicas: 4}
"""
SERVICE = """
name: classify
variants:
  - {model: mobilenet_v2, accuracy: 0.72}
  - {model: resnet50, accuracy: 0.76}
min_accuracy: 0.70
slo: {latency_ms: 150, percentile: 99}
"""
# Mean service time (ms) of each model per flavor: resnet50 is ~3x slower.
MEAN_MS = {
    ("mobilenet_v2", "small"): 30.0,
    ("mobilenet_v2", "medium"): 15.0,
    ("mobilenet_v2", "large"): 8.0,
    ("resnet50", "small"): 95.0,
    ("resnet50", "medium"): 48.0,
    ("resnet50", "large"): 25.0,
}
CPUS = {"small": 0.5, "medium": 1.0, "large": 2.0}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(make_app(["plan"]), list(args))
    return result.exit_code, result.output


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    flavors = tmp_path / "flavors.yaml"
    flavors.write_text(FLAVORS)
    service = tmp_path / "service.yaml"
    service.write_text(SERVICE)
    return service, flavors


def store(keys: list[tuple[str, str]], slo_ms: float = 150.0) -> None:
    """Insert synthetic profiles (gamma service times, cv 0.25) as `edgewise capacity` would."""
    kb = KnowledgeBase.open()
    rng = np.random.default_rng(0)
    for model, flavor in keys:
        service = rng.gamma(16.0, MEAN_MS[(model, flavor)] / 16.0, 300)
        prof = FlavorProfile(
            model=model,
            flavor=flavor,
            cpus=CPUS[flavor],
            batch_size=1,
            threads=1,
            isolated=True,
            service_ms=service,
            slo_ms=slo_ms,
            percentile=99.0,
            capacity_rps=capacity_rps(service, slo_ms, 99.0),
        )
        save_profile(kb, prof, host="test-host")


def test_plan_from_kb_profiles(files: tuple[Path, Path]) -> None:
    service, flavors = files
    store(list(MEAN_MS), slo_ms=100.0)
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "120", "--json"
    )
    assert code == 0, out
    decision = json.loads(out)
    assert decision["rate_rps"] == 120 and decision["capacity_rps"] >= 120
    assert decision["method"] == "exact" and decision["cost_per_hour"] > 0
    # mobilenet_v2 is faster at the same price: resnet50 is never worth it here.
    assert {row["model"] for row in decision["counts"]} == {"mobilenet_v2"}
    with KnowledgeBase.open().snapshot() as s:
        plans = s.scalars(select(m.Plan)).all()
    assert len(plans) == 1 and plans[0].kind == "serving"
    assert plans[0].cost == pytest.approx(decision["cost_per_hour"])
    # Stored at a 100 ms SLO, planned at 150 ms: capacities were recomputed (larger).
    with KnowledgeBase.open().snapshot() as s:
        stored = {(r.model, r.flavor): r.capacity_rps for r in s.scalars(select(m.CapacityProfile))}
    for o in plans[0].inputs["options"]:
        before = stored[(o["model"], o["flavor"])]
        assert o["capacity_rps"] > before or o["capacity_rps"] == before == 0.0
    assert sum(o["capacity_rps"] > 0 for o in plans[0].inputs["options"]) >= 4

    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "120", "--heuristic"
    )
    assert code == 0, out
    assert "cost per hour" in out and "headroom" in out and "mobilenet_v2" in out


def test_min_accuracy_selects_the_accurate_variant(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    service, flavors = files
    service.write_text(SERVICE.replace("min_accuracy: 0.70", "min_accuracy: 0.75"))
    store(list(MEAN_MS))
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "40", "--json"
    )
    assert code == 0, out
    assert {row["model"] for row in json.loads(out)["counts"]} == {"resnet50"}


def test_rate_zero_is_an_empty_plan(files: tuple[Path, Path]) -> None:
    service, flavors = files
    store(list(MEAN_MS))
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "0", "--json"
    )
    assert code == 0, out
    assert json.loads(out)["replicas"] == 0


def test_missing_profile_names_the_command(files: tuple[Path, Path]) -> None:
    service, flavors = files
    store([k for k in MEAN_MS if k != ("resnet50", "large")])
    code, out = invoke("plan", "--service", str(service), "--flavors", str(flavors), "--rate", "10")
    assert code == 2
    line = out.strip()
    assert "\n" not in line
    assert "resnet50 in large" in line and "edgewise capacity resnet50" in line
    assert "--slo-ms 150" in line and "--measure" in line


def test_profile_at_other_cpus_counts_as_missing(files: tuple[Path, Path]) -> None:
    service, flavors = files
    store(list(MEAN_MS))
    flavors.write_text(FLAVORS.replace("cpus: 2.0", "cpus: 3.0"))
    code, out = invoke("plan", "--service", str(service), "--flavors", str(flavors), "--rate", "10")
    assert code == 2 and "in large" in out


def test_slo_no_flavor_can_meet(files: tuple[Path, Path]) -> None:
    service, flavors = files
    store(list(MEAN_MS))
    service.write_text(SERVICE.replace("latency_ms: 150", "latency_ms: 5"))
    code, out = invoke("plan", "--service", str(service), "--flavors", str(flavors), "--rate", "10")
    assert code == 2
    assert (
        "\n" not in out.strip() and "cannot be met by any flavor" in out and "lone request" in out
    )


def test_rate_above_limits(files: tuple[Path, Path]) -> None:
    service, flavors = files
    store(list(MEAN_MS))
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "100000"
    )
    assert code == 2
    assert "\n" not in out.strip() and "exceeds" in out and "replica limits allow" in out


def test_bad_flavor_file(files: tuple[Path, Path]) -> None:
    service, flavors = files
    flavors.write_text(FLAVORS.replace("price_per_hour: 0.025", "price_per_hour: -1"))
    code, out = invoke("plan", "--service", str(service), "--flavors", str(flavors), "--rate", "10")
    assert code == 2 and "price_per_hour" in out and "\n" not in out.strip()


def write_trace(path: Path, days: int = 21, peak: float = 360_000.0) -> Path:
    """Hourly request counts with a daily cycle peaking at ``peak`` requests per hour."""
    hours = np.arange(24 * days)
    rng = np.random.default_rng(3)
    shape = 0.55 + 0.45 * np.sin(2 * np.pi * (hours % 24 - 6) / 24)
    counts = np.round(peak * shape * rng.uniform(0.95, 1.0, hours.size))
    ts = np.datetime64("2024-03-04T00:00") + hours.astype("timedelta64[h]")
    lines = ["when,requests"] + [f"{t},{c:.0f}" for t, c in zip(ts, counts, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_for_a_forecast(files: tuple[Path, Path], tmp_path: Path) -> None:
    service, flavors = files
    store(list(MEAN_MS))
    trace = write_trace(tmp_path / "trace.csv")  # peak 360000/h = 100 rps
    args = ["plan", "--service", str(service), "--flavors", str(flavors)]
    args += ["--forecast", str(trace), "--time-col", "when", "--value-col", "requests"]
    args += ["--season", "24", "--horizon", "12"]
    result = CliRunner().invoke(make_app(["plan"]), [*args, "--json"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    fc = decision["forecast"]
    # Counts per hour are requests/s times 3600; the plan covers the upper bound's peak.
    assert fc["rps_per_unit"] == pytest.approx(1 / 3600)
    assert fc["level"] == 90 and fc["horizon"] == 12 and 0 <= fc["peak_step"] < 12
    assert fc["rate_rps"] >= fc["mean_peak_rps"] > 80.0 and fc["rate_rps"] < 130.0
    assert decision["rate_rps"] == pytest.approx(fc["rate_rps"])
    assert decision["capacity_rps"] >= fc["rate_rps"]
    assert "planning for" in result.output and "upper bound" in result.output

    # --peak-rps rescales the trace: past peak 360000/h -> 10 rps.
    code, out = invoke(*args, "--peak-rps", "10")
    assert code == 0, out
    assert "planning for" in out and "cost per hour" in out
    rate = float(out.split("planning for ")[1].split(" rps")[0])
    assert 8.0 < rate < 13.0


def test_rate_or_forecast_exactly_one(files: tuple[Path, Path], tmp_path: Path) -> None:
    service, flavors = files
    store(list(MEAN_MS))
    base = ["plan", "--service", str(service), "--flavors", str(flavors)]
    code, out = invoke(*base)
    assert code == 2 and "exactly one of --rate" in out
    trace = write_trace(tmp_path / "t.csv", days=3)
    code, out = invoke(*base, "--rate", "5", "--forecast", str(trace))
    assert code == 2 and "exactly one of --rate" in out
    bad = tmp_path / "bad.csv"
    rows = trace.read_text().splitlines()
    rows[5] = rows[5].split(",")[0] + ",-4"
    bad.write_text("\n".join(rows) + "\n")
    code, out = invoke(
        *base, "--forecast", str(bad), "--time-col", "when", "--value-col", "requests"
    )
    assert code == 2 and "\n" not in out.strip() and "negative" in out
