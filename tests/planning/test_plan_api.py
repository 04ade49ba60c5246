"""The capacity and plan use cases called as Python functions (``edgewise.api``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from edgewise.api.capacity import CapacityReport, SavedProfile, capacity
from edgewise.api.plan import ServicePlan, plan
from edgewise.errors import SpecError
from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.serving.capacity import capacity_rps
from edgewise.serving.profiles import FlavorProfile, MissingProfileError, save_profile

FLAVORS = """
flavors:
  - {name: small, cpus: 0.5, price_per_hour: 0.025, max_replicas: 10}
  - {name: large, cpus: 2.0, price_per_hour: 0.096, max_replicas: 4}
"""
SERVICE = """
name: classify
variants:
  - {model: mobilenet_v2, accuracy: 0.72}
slo: {latency_ms: 100, percentile: 99}
"""
MEAN_MS = {"small": 30.0, "large": 8.0}
CPUS = {"small": 0.5, "large": 2.0}


def profile(flavor: str, slo_ms: float = 100.0, mean_ms: float | None = None) -> FlavorProfile:
    service = np.random.default_rng(0).gamma(16.0, (mean_ms or MEAN_MS[flavor]) / 16.0, 300)
    return FlavorProfile(
        model="mobilenet_v2",
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


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, str]:
    flavors = tmp_path / "flavors.yaml"
    flavors.write_text(FLAVORS)
    service = tmp_path / "service.yaml"
    service.write_text(SERVICE)
    return service, flavors, f"sqlite:///{tmp_path / 'kb.db'}"


def test_plan_returns_the_stored_decision(files: tuple[Path, Path, str]) -> None:
    service, flavors, url = files
    kb = KnowledgeBase.open(url)
    for flavor in MEAN_MS:
        save_profile(kb, profile(flavor), host="test-host")
    decided = plan(service=service, flavors=flavors, rate_rps=50.0, kb=url)
    assert isinstance(decided, ServicePlan)
    assert decided.method == "exact" and decided.rate_rps == 50.0
    assert decided.result.capacity_rps >= 50.0 and decided.forecast is None
    assert {o.flavor for o in decided.options} == {"small", "large"}
    with KnowledgeBase.open(url).snapshot() as s:
        (row,) = s.scalars(select(m.Plan)).all()
    assert row.id == decided.id and row.kind == "serving"
    assert row.decision == json.loads(json.dumps(decided.as_dict()))
    assert row.inputs == decided.inputs_dict() and row.inputs["rate_rps"] == 50.0
    assert list(decided.as_dict()) == [
        "counts",
        "cost_per_hour",
        "capacity_rps",
        "rate_rps",
        "headroom",
        "replicas",
        "method",
    ]
    # Nothing went to the default knowledge base.
    with KnowledgeBase.open().snapshot() as s:
        assert s.scalars(select(m.Plan)).all() == []


def test_plan_heuristic_and_missing_profile(files: tuple[Path, Path, str]) -> None:
    service, flavors, url = files
    kb = KnowledgeBase.open(url)
    save_profile(kb, profile("small"), host="test-host")
    with pytest.raises(MissingProfileError, match="mobilenet_v2 in large"):
        plan(service=service, flavors=flavors, rate_rps=5.0, kb=url)
    save_profile(kb, profile("large"), host="test-host")
    decided = plan(service=service, flavors=flavors, rate_rps=5.0, exact=False, kb=url)
    assert decided.method == "heuristic" and decided.as_dict()["method"] == "heuristic"
    with pytest.raises(SpecError, match="exactly one"):
        plan(service=service, flavors=flavors, kb=url)


def test_capacity_report_json_and_infeasible_reason() -> None:
    tight = [SavedProfile(i, profile(f, slo_ms=5.0)) for i, f in enumerate(MEAN_MS, 1)]
    assert all(s.profile.capacity_rps == 0 for s in tight)
    report = CapacityReport("mobilenet_v2", 5.0, 99.0, tuple(tight))
    reason = report.no_flavor_meets()
    assert reason is not None and "\n" not in reason
    assert "cannot be met by mobilenet_v2 in any flavor" in reason and "even in large" in reason
    out = report.as_dict()
    assert list(out) == ["model", "slo_ms", "percentile", "flavors"]
    row = out["flavors"][0]
    assert list(row) == [
        "id",
        "model",
        "flavor",
        "cpus",
        "service_ms",
        "capacity_rps",
        "validation",
    ]
    assert row["id"] == 1 and row["validation"] == {} and "samples" not in row["service_ms"]
    assert row["service_ms"]["n"] == 300
    ok = CapacityReport("mobilenet_v2", 100.0, 99.0, (SavedProfile(3, profile("large")),))
    assert ok.no_flavor_meets() is None and ok.isolated


def test_capacity_rejects_an_unknown_flavor_before_measuring(tmp_path: Path) -> None:
    flavors = tmp_path / "flavors.yaml"
    flavors.write_text(FLAVORS)
    with pytest.raises(SpecError, match="no flavor named 'huge'; known: large, small"):
        capacity(model="digits_cnn", flavors=flavors, slo_ms=50.0, only_flavors=["huge"])
