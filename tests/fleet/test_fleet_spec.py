"""The fleet spec (edgewise.planning.fleet_spec): loaded from YAML, faults as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewise.errors import SpecError
from edgewise.planning.fleet_spec import load_fleet

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet.yaml"
FLAVORS = "flavors:\n  - {name: s, cpus: 1, memory_mb: 2048, price_per_hour: 0.05}\n"
SERVICE = (
    "services:\n  - name: a\n    variants: [{model: resnet50, accuracy: 0.76}]\n"
    "    slo: {latency_ms: 200}\n"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return path


def test_the_example_fleet_has_six_models_on_twenty_four_nodes() -> None:
    fleet = load_fleet(EXAMPLE)
    models = {v.model for s in fleet.services for v in s.variants}
    assert len(fleet.services) >= 6 and len(models) >= 6
    assert len({s.slo.latency_ms for s in fleet.services}) >= 5
    nodes = fleet.node_list
    assert len(nodes) == 24 and nodes[0].name == "node-01" and nodes[-1].name == "node-24"


def one_line_error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_fleet(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_a_node_smaller_than_the_smallest_flavor_is_named(tmp_path: Path) -> None:
    nodes = "nodes:\n  - {name: big, cpus: 4}\n  - {name: tiny, cpus: 0.5, memory_mb: 512}\n"
    msg = one_line_error(write(tmp_path, SERVICE + nodes + FLAVORS))
    assert "nodes[1] 'tiny' (0.5 CPUs, 512 MB) is smaller than the smallest flavor 's'" in msg


def test_a_service_whose_variants_miss_min_accuracy_is_named(tmp_path: Path) -> None:
    low = SERVICE + "    min_accuracy: 0.8\n"
    msg = one_line_error(write(tmp_path, low + "nodes: [{name: n, cpus: 4}]\n" + FLAVORS))
    assert "services[0]" in msg
    assert "service 'a': every variant is below min_accuracy 0.8 (best: resnet50 at 0.76)" in msg


def test_other_faults_are_one_line(tmp_path: Path) -> None:
    nodes = "nodes: [{name: n, cpus: 4}]\n"
    msg = one_line_error(
        write(tmp_path, SERVICE + "    service_ms: {vit_tiny: 20}\n" + nodes + FLAVORS)
    )
    assert "service_ms names 'vit_tiny', which is not a variant" in msg
    msg = one_line_error(write(tmp_path, SERVICE + nodes + nodes + FLAVORS))
    assert "duplicate key 'nodes'" in msg
    twice = SERVICE + "nodes: [{name: n, cpus: 4, count: 2}, {name: n-01, cpus: 2}]\n" + FLAVORS
    assert "duplicate name 'n-01' in nodes" in one_line_error(write(tmp_path, twice))
