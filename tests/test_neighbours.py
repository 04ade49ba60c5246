"""Interference-aware capacity in ``capacity`` and ``plan``: declared neighbours, notes.

The knowledge base is the 0.1 release's file (interference models of mobilenet_v2@20rps
and resnet18@20rps, no footprints) with a footprint of resnet18@20rps added here, and
synthetic capacity profiles; nothing is measured.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgewise.api.capacity import capacity
from edgewise.api.colocation import (
    check_neighbours,
    derated_capacity_rps,
    neighbour_slowdown,
    observed,
)
from edgewise.api.plan import plan
from edgewise.cli.main import make_app
from edgewise.config import FlavorSpec, load_service
from edgewise.errors import InfeasibleError, SpecError, UnknownNameError
from edgewise.interference.footprint import store_footprint
from edgewise.kb import KnowledgeBase
from edgewise.serving.capacity import capacity_rps
from edgewise.serving.profiles import FlavorProfile, save_profile

RELEASE_KB = Path(__file__).parent / "fixtures" / "kb-release-0.1.sqlite"
FLAVORS = """
flavors:
  - {name: small,  cpus: 0.5, price_per_hour: 0.025, max_replicas: 20}
  - {name: medium, cpus: 1.0, price_per_hour: 0.048, max_replicas: 20}
  - {name: large,  cpus: 2.0, price_per_hour: 0.096, max_replicas: 20}
"""
SERVICE = """
name: classify
variants:
  - {model: mobilenet_v2, accuracy: 0.72}
  - {model: resnet50, accuracy: 0.76}
min_accuracy: 0.70
slo: {latency_ms: 150, percentile: 99}
"""
MEAN_MS = {"small": 40.0, "medium": 20.0, "large": 10.0}
CPUS = {"small": 0.5, "medium": 1.0, "large": 2.0}
SLOW = {"mobilenet_v2": 1.0, "resnet50": 3.0}


def flavor_profile(model: str, flavor: str, mean_ms: float, slo_ms: float = 150.0) -> FlavorProfile:
    """A synthetic profile: gamma service times (cv 0.25) around ``mean_ms``."""
    service = np.random.default_rng(0).gamma(16.0, mean_ms / 16.0, 300)
    return FlavorProfile(
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


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The release KB as this test's default one, with a footprint of resnet18@20rps."""
    db = tmp_path / "kb.sqlite"
    shutil.copyfile(RELEASE_KB, db)
    url = f"sqlite:///{db}"
    monkeypatch.setenv("EDGEWISE_DB_URL", url)
    store = KnowledgeBase.open(url)
    store_footprint(store, "resnet18@20rps", {"cpu": 0.6, "llc": 0.3, "membw": 0.2})
    return url


@pytest.fixture
def files(tmp_path: Path, kb: str) -> tuple[Path, Path]:
    """Service and flavors files, with every (variant, flavor) profiled in ``kb``."""
    (tmp_path / "flavors.yaml").write_text(FLAVORS)
    (tmp_path / "service.yaml").write_text(SERVICE)
    store = KnowledgeBase.open(kb)
    for model, slow in SLOW.items():
        for flavor, mean in MEAN_MS.items():
            save_profile(store, flavor_profile(model, flavor, mean * slow), host="test-host")
    return tmp_path / "service.yaml", tmp_path / "flavors.yaml"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(make_app(["plan"]), list(args))
    return result.exit_code, result.output


# --------------------------------------------------------------------------- the prediction


def test_slowdown_from_the_interference_model_and_its_origin(kb: str) -> None:
    got = neighbour_slowdown(app="mobilenet_v2", neighbours=[" stress:cpu=0.5 "], kb=kb)
    assert got.factor > 1.0 and not got.solo and got.neighbours == ("stress:cpu=0.5",)
    assert got.origin().startswith("interference model for mobilenet_v2")
    # a bare model neighbour is its profiled workload
    beside = neighbour_slowdown(app="mobilenet_v2", neighbours=["resnet18"], kb=kb)
    assert beside.neighbours == ("resnet18@20rps",) and not beside.solo
    assert beside.as_dict()["neighbours"] == ["resnet18@20rps"]


def test_no_interference_model_keeps_capacity_solo_and_says_so(kb: str) -> None:
    got = neighbour_slowdown(app="resnet50", neighbours=["stress:cpu=0.5"], kb=kb)
    assert got.factor == 1.0 and got.solo
    assert got.origin() == "solo: no interference model for resnet50"


def test_a_neighbour_never_profiled_is_left_out_with_a_note(kb: str) -> None:
    both = neighbour_slowdown(app="mobilenet_v2", neighbours=["stress:cpu=0.5", "vit_tiny"], kb=kb)
    alone = neighbour_slowdown(app="mobilenet_v2", neighbours=["stress:cpu=0.5"], kb=kb)
    assert both.factor == pytest.approx(alone.factor) and not both.solo
    assert "vit_tiny was never profiled" in both.origin()
    none = neighbour_slowdown(app="mobilenet_v2", neighbours=["vit_tiny"], kb=kb)
    assert none.solo and none.factor == 1.0 and "profiled none" in none.origin()


@pytest.mark.parametrize(
    ("spec", "error", "words"),
    [
        ("", SpecError, "an empty neighbour"),
        ("  ", SpecError, "an empty neighbour"),
        ("stress:", SpecError, "names no resource"),
        ("nosuch", UnknownNameError, "unknown model 'nosuch'"),
        ("nosuch@20rps", UnknownNameError, "unknown model 'nosuch'"),
    ],
)
def test_bad_neighbour_specs_are_one_line(spec: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words) as err:
        check_neighbours([spec])
    assert "\n" not in str(err.value)


def test_host_is_its_observed_utilisation_as_a_stress_mix() -> None:
    (seen,) = observed(["host"], window_s=0.05)
    assert seen.startswith("stress:cpu=")
    assert 0.0 <= float(seen.removeprefix("stress:cpu=")) <= 1.0
    assert observed(["stress:cpu=0.2"]) == ("stress:cpu=0.2",)


def test_derated_capacity_falls_with_the_slowdown() -> None:
    service = flavor_profile("mobilenet_v2", "small", 40.0).service_ms
    same = derated_capacity_rps(service, 1.0, slo_ms=150.0, percentile=99.0)
    slower = derated_capacity_rps(service, 1.5, slo_ms=150.0, percentile=99.0)
    assert 0 < slower < same
    assert derated_capacity_rps(service, 10.0, slo_ms=150.0, percentile=99.0) == 0.0


# --------------------------------------------------------------------------- plan


def test_plan_sizes_replicas_on_the_derated_capacity(files: tuple[Path, Path]) -> None:
    service, flavors = files
    alone = plan(service=service, flavors=flavors, rate_rps=200.0)
    beside = plan(service=service, flavors=flavors, rate_rps=200.0, neighbours=["stress:cpu=0.5"])
    assert alone.neighbours == () and "neighbours" not in alone.as_dict()
    by_model = {d.app: d for d in beside.slowdowns}
    assert by_model["mobilenet_v2"].factor > 1.0
    assert by_model["resnet50"].solo  # no interference model: planned solo, and said
    cap_alone = {o.key: o.capacity_rps for o in alone.options}
    for o in beside.options:
        if o.model == "mobilenet_v2" and cap_alone[o.key] > 0:
            assert o.capacity_rps < cap_alone[o.key]
        if o.model == "resnet50":
            assert o.capacity_rps == cap_alone[o.key]
    assert beside.result.cost_per_hour > alone.result.cost_per_hour
    out = beside.as_dict()
    assert out["neighbours"] == ["stress:cpu=0.5"]
    assert {row["model"] for row in out["slowdowns"]} == {"mobilenet_v2", "resnet50"}
    assert out["slowdowns"][1]["slowdown_source"] == "solo: no interference model for resnet50"
    assert beside.inputs_dict()["neighbours"] == ["stress:cpu=0.5"]


def test_a_flavor_too_small_is_left_out_with_a_note(files: tuple[Path, Path]) -> None:
    service, flavors = files
    # resnet50 in small: ~120 ms mean, p99 above 150 ms; mobilenet_v2 fits everywhere
    decided = plan(service=service, flavors=flavors, rate_rps=50.0)
    assert any(
        n.startswith("flavor small left out for resnet50: SLO p99 <= 150 ms") for n in decided.notes
    )
    assert all("\n" not in n for n in decided.notes)
    assert decided.as_dict()["notes"] == list(decided.notes)
    assert ("resnet50", "small") not in decided.result.counts


def test_no_flavor_fitting_next_to_the_neighbours_is_one_error(
    files: tuple[Path, Path],
) -> None:
    service, flavors = files
    # 20 ms at p99: only mobilenet_v2 in large meets it alone (p99 about 17 ms)
    service.write_text(SERVICE.replace("latency_ms: 150", "latency_ms: 20"))
    alone = plan(service=service, flavors=flavors, rate_rps=10.0)
    assert set(alone.result.counts) == {("mobilenet_v2", "large")}
    assert len(alone.notes) == 5  # every other option is left out, each with its note
    with pytest.raises(InfeasibleError, match="next to its neighbours") as err:
        plan(service=service, flavors=flavors, rate_rps=10.0, neighbours=["stress:cpu=0.5"])
    assert "\n" not in str(err.value)


def test_the_service_specs_neighbours_are_used(files: tuple[Path, Path]) -> None:
    service, flavors = files
    service.write_text(SERVICE + "neighbours: [stress:cpu=0.5]\n")
    assert load_service(service).neighbours == ["stress:cpu=0.5"]
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "200", "--json"
    )
    assert code == 0, out
    decision = json.loads(out)
    assert decision["neighbours"] == ["stress:cpu=0.5"]
    assert decision["slowdowns"][0]["model"] == "mobilenet_v2"
    assert decision["slowdowns"][0]["slowdown"] > 1.0
    # --with replaces the spec's neighbours
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "200",
        "--with", "resnet18", "--json",
    )  # fmt: skip
    assert code == 0, out
    decision = json.loads(out)
    assert decision["neighbours"] == ["resnet18"]
    assert decision["slowdowns"][0]["slowdown_source"].startswith("interference model")


def test_plan_with_prints_the_slowdown_and_notes(files: tuple[Path, Path]) -> None:
    service, flavors = files
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "200",
        "--with", "stress:cpu=0.5",
    )  # fmt: skip
    assert code == 0, out
    assert "predicted slowdown of mobilenet_v2 next to stress:cpu=0.5: x" in out
    assert "interference model for mobilenet_v2" in out
    assert "predicted slowdown of resnet50 next to stress:cpu=0.5: x1.00 (solo: no " in out
    assert "note: flavor small left out for resnet50" in out


@pytest.mark.parametrize(
    ("spec", "words"), [("", "an empty neighbour"), ("nosuch", "unknown model 'nosuch'")]
)
def test_plan_with_a_bad_neighbour_is_one_line(
    files: tuple[Path, Path], spec: str, words: str
) -> None:
    service, flavors = files
    code, out = invoke(
        "plan", "--service", str(service), "--flavors", str(flavors), "--rate", "10",
        "--with", spec,
    )  # fmt: skip
    assert code == 2 and words in out and len(out.strip().splitlines()) == 1, out


def test_a_service_spec_with_a_bad_neighbour_names_file_and_field(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(SERVICE + "neighbours: [resnet18, nosuch]\n")
    with pytest.raises(SpecError, match=r"s.yaml: neighbours\[1\]: .*unknown model 'nosuch'"):
        load_service(f)


# --------------------------------------------------------------------------- capacity


@pytest.fixture
def fake_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    """``profile_flavor`` replaced by a synthetic profile (nothing runs)."""

    def fake(model: str, flavor: FlavorSpec, **options: Any) -> FlavorProfile:
        return flavor_profile(model, flavor.name, MEAN_MS[flavor.name], options["slo_ms"])

    monkeypatch.setattr("edgewise.api.capacity.profile_flavor", fake)


def test_capacity_with_neighbours_derates_each_flavor(
    files: tuple[Path, Path], fake_measure: None
) -> None:
    _, flavors = files
    alone = capacity(model="mobilenet_v2", flavors=flavors, slo_ms=150.0)
    assert alone.slowdown is None and "slowdown" not in alone.as_dict()
    beside = capacity(
        model="mobilenet_v2", flavors=flavors, slo_ms=150.0, neighbours=["stress:cpu=0.5"]
    )
    assert beside.slowdown is not None and beside.slowdown.factor > 1.0
    out = beside.as_dict()
    assert out["neighbours"] == ["stress:cpu=0.5"] and out["slowdown"] > 1.0
    for row in out["flavors"]:
        assert 0 < row["capacity_colocated_rps"] < row["capacity_rps"]


def test_capacity_cli_with(files: tuple[Path, Path], fake_measure: None) -> None:
    _, flavors = files
    code, out = invoke(
        "capacity", "mobilenet_v2", "--flavors", str(flavors), "--slo-ms", "150",
        "--with", "stress:cpu=0.5", "--json",
    )  # fmt: skip
    assert code == 0, out
    got = json.loads(out)
    assert got["neighbours"] == ["stress:cpu=0.5"] and got["slowdown"] > 1.0
    assert got["slowdown_source"].startswith("interference model for mobilenet_v2")
    code, out = invoke(
        "capacity", "resnet50", "--flavors", str(flavors), "--slo-ms", "150",
        "--with", "stress:cpu=0.5",
    )  # fmt: skip
    assert code == 0, out
    assert "x1.00 (solo: no interference model for resnet50)" in out


def test_capacity_cli_refuses_a_bad_neighbour_before_measuring(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, flavors = files

    def never(*_: Any, **__: Any) -> FlavorProfile:
        raise AssertionError("measured although --with was wrong")

    monkeypatch.setattr("edgewise.api.capacity.profile_flavor", never)
    code, out = invoke(
        "capacity", "mobilenet_v2", "--flavors", str(flavors), "--slo-ms", "150",
        "--with", "nosuch",
    )  # fmt: skip
    assert code == 2 and "unknown model 'nosuch'" in out and len(out.strip().splitlines()) == 1
