"""Live serving next to neighbours and with flavors too small for the SLO (fakes, no Ray).

A flavor too small for the SLO while a larger one fits is left out with a note (the
``bench serving-live`` run that stopped on ``SLO 150 ms at p99 is below what one request
takes through the serving path in flavor small (p99 155.9 ms)``); only when none fits is
it an error. ``serve`` plans with the capacity derated by the predicted slowdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgewise.api.colocation import Slowdown
from edgewise.bench.serving_live import replay_in_fitting_flavor
from edgewise.config import FlavorSpec, ServiceSpec
from edgewise.errors import InfeasibleError
from edgewise.serving.live import (
    DEFAULT_FLAVORS,
    FlavorCapacity,
    FlavorTooSmall,
    first_fitting,
    live_flavor_option,
)

FLAVORS = """
flavors:
  - {name: large,  cpus: 2.0, price_per_hour: 0.096, max_replicas: 2}
  - {name: small,  cpus: 0.5, price_per_hour: 0.025, max_replicas: 8}
  - {name: medium, cpus: 1.0, price_per_hour: 0.048, max_replicas: 4}
"""
#: Median service time (ms) through the serving path: small's p99 is about 156 ms.
MEDIAN_MS = {"small": 120.0, "medium": 60.0, "large": 30.0}
SPEC = ServiceSpec.model_validate(
    {"name": "classify", "model": "mobilenet_v2", "slo": {"latency_ms": 150, "percentile": 99}}
)


def service_ms(flavor: str) -> np.ndarray:
    """Lognormal service times around the flavor's median (sigma 0.1: p99 = 1.26 x median)."""
    return np.random.default_rng(0).lognormal(np.log(MEDIAN_MS[flavor]), 0.1, 400)


def probe(flavor: FlavorSpec, slo_ms: float = 150.0) -> FlavorCapacity:
    """What ``probe_capacity`` returns for ``flavor``, from synthetic service times."""
    return live_flavor_option(
        flavor, service_ms(flavor.name), slo_ms=slo_ms, percentile=99.0, max_replicas=2
    )


def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "flavors.yaml"
    path.write_text(FLAVORS)
    return path


def spec_of(name: str, cpus: float) -> FlavorSpec:
    return FlavorSpec(name=name, cpus=cpus, price_per_hour=cpus / 20)


def test_a_flavor_too_small_is_left_out_with_a_note() -> None:
    flavors = [spec_of("large", 2.0), spec_of("small", 0.5), spec_of("medium", 1.0)]
    got = first_fitting(flavors, probe)
    assert got.flavor.name == "medium" and got.capacity.option.capacity_rps > 0
    (note,) = got.notes
    assert note.startswith(
        "flavor small left out: SLO 150 ms at p99 is below what one request takes through "
        "the serving path in flavor small (p99 "
    )
    assert "\n" not in note


def test_no_flavor_fitting_is_one_error_naming_each() -> None:
    flavors = [spec_of("small", 0.5), spec_of("medium", 1.0), spec_of("large", 2.0)]
    with pytest.raises(InfeasibleError) as err:
        first_fitting(flavors, lambda f: probe(f, slo_ms=20.0))
    msg = str(err.value)
    assert msg.startswith("no flavor fits: SLO 20 ms at p99") and "\n" not in msg
    assert "small" in msg and "medium" in msg and "large" in msg
    # one flavor only: its own message, as before
    with pytest.raises(FlavorTooSmall, match="in flavor small"):
        first_fitting([spec_of("small", 0.5)], probe)


def test_bench_serving_live_replays_in_the_smallest_fitting_flavor(tmp_path: Path) -> None:
    tried: list[str] = []

    def replay_in(path: Path, flavor: str) -> str:
        tried.append(flavor)
        assert path.exists()
        probe(next(f for f in DEFAULT_FLAVORS if f.name == flavor))  # raises for small
        return f"replayed in {flavor}"

    outcome, notes = replay_in_fitting_flavor(None, replay_in)  # the built-in catalog
    assert outcome == "replayed in medium" and tried == ["small", "medium"]
    assert len(notes) == 1 and notes[0].startswith("flavor small left out: SLO 150 ms")
    tried.clear()
    outcome, notes = replay_in_fitting_flavor(catalog(tmp_path), replay_in)
    assert outcome == "replayed in medium" and tried == ["small", "medium"]


def _slowdown(factor: float) -> Slowdown:
    return Slowdown("mobilenet_v2", ("stress:cpu=0.5",), factor, "measured")


def _pool(tmp_path: Path, slowdown: float | None = None, flavor: str | None = None) -> Any:
    """The pool serve runs on the catalog, capacities probed (fake) and derated."""
    from edgewise.api.serve import pick_flavor
    from edgewise.api.serve_pool import build_pool, derated
    from edgewise.config import load_flavors
    from edgewise.serving.policies import make_policy

    path = catalog(tmp_path)
    flavors = load_flavors(path).flavors if flavor is None else [pick_flavor(path, flavor)]

    def capacity_of(model: str, f: FlavorSpec) -> FlavorCapacity:
        cap = probe(f)
        return cap if slowdown is None else derated(cap, slowdown, slo_ms=150.0, percentile=99.0)

    return build_pool(SPEC, flavors, capacity_of, make_policy("edgewise"))


def test_serve_plans_with_the_derated_capacity(tmp_path: Path) -> None:
    alone = _pool(tmp_path)
    assert [o.name for o in alone.options] == ["medium", "large"]
    beside = _pool(tmp_path, 1.5)
    # medium's p99 (about 76 ms) slowed 1.5x still meets 150 ms, at a lower capacity
    assert [o.name for o in beside.options] == ["medium", "large"]
    assert 0 < beside.options[0].capacity_rps < alone.options[0].capacity_rps
    assert beside.options[0].service_ms_mean == pytest.approx(
        1.5 * alone.options[0].service_ms_mean
    )


def test_serve_leaves_out_a_flavor_too_small_next_to_the_neighbours(tmp_path: Path) -> None:
    got = _pool(tmp_path, 2.2)
    assert [o.name for o in got.options] == ["large"]
    assert [n.split(":")[0] for n in got.notes] == [
        "flavor small left out",
        "flavor medium left out",
    ]
    assert "takes next to the neighbours in flavor medium" in got.notes[1]
    # a named flavor is the only candidate
    with pytest.raises(InfeasibleError, match="next to the neighbours in flavor medium"):
        _pool(tmp_path, 2.2, "medium")


def test_serve_says_what_it_derated_by(tmp_path: Path) -> None:
    from dataclasses import replace

    from edgewise.api.serve import _started

    pool = _pool(tmp_path, 2.2)
    pool = replace(pool, alone_rps={("mobilenet_v2", "large"): 1e3})
    got = _started(pool, SPEC, "http://x/predict", "edgewise", _slowdown(2.2))
    out = got.as_dict()
    assert out["flavor"] == "large" and out["slowdown"] == 2.2
    assert out["capacity_alone_rps"] > out["capacity_rps"] > 0
    assert list(out["neighbours"]) == ["stress:cpu=0.5"] and len(out["notes"]) == 2
    assert out["slowdown_source"].startswith("interference model for mobilenet_v2")
    plain = _started(_pool(tmp_path), SPEC, "u", "hpa", None)
    assert plain.capacity_alone_rps is None and plain.slowdown == 1.0 and plain.notes


@pytest.mark.parametrize(("spec", "words"), [("", "an empty neighbour"), ("x@1rps", "'x'")])
def test_serve_with_a_bad_neighbour_is_one_line_before_anything_starts(
    tmp_path: Path, spec: str, words: str
) -> None:
    from typer.testing import CliRunner

    from edgewise.cli.main import make_app

    service = tmp_path / "service.yaml"
    service.write_text("name: s\nmodel: mobilenet_v2\nslo: {latency_ms: 150}\n")
    result = CliRunner().invoke(make_app(["serve"]), ["serve", str(service), "--with", spec])
    assert result.exit_code == 2 and words in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
