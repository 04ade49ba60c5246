"""A fleet plan as the live runtime runs it (pure: :mod:`edgewise.serving.fleet`)."""

from __future__ import annotations

import pytest

from edgewise.errors import SpecError
from edgewise.planning.fleet import FleetPlan, Node, PlacedReplica, SlowdownEstimate
from edgewise.planning.serving import ReplicaOption
from edgewise.serving.fleet import (
    ServiceLivePool,
    ahead,
    fleet_cost_per_hour,
    node_cpusets,
    nodes_in_use,
    pool_key,
    service_pools,
)

NODES = [Node("n1", 1.0, 4096, 0.05), Node("n2", 1.0, 4096, 0.07)]


def _opt(model: str, flavor: str, cpus: float) -> ReplicaOption:
    return ReplicaOption(model, flavor, 0.7, 10.0 * cpus, 0.02 * cpus, 4, cpus)


def _plan(*placed: tuple[str, str, str, float, str]) -> FleetPlan:
    replicas = tuple(
        PlacedReplica(svc, _opt(model, flavor, cpus), node, 1024)
        for svc, model, flavor, cpus, node in placed
    )
    return FleetPlan("ours", {}, replicas, tuple(SlowdownEstimate(1.0, "alone") for _ in replicas))


def test_nodes_get_whole_cpus_of_the_host_in_order_and_never_share_one() -> None:
    nodes = [Node("a", 1.0, 1), Node("b", 0.5, 1), Node("c", 2.0, 1)]
    assert node_cpusets(nodes, [0, 1, 2, 3]) == {"a": (0,), "b": (1,), "c": (2, 3)}
    with pytest.raises(SpecError, match=r"need 4 whole CPUs .* which has 3"):
        node_cpusets(nodes, [0, 1, 2])


def test_each_service_runs_its_replicas_as_flavor_at_node_entries() -> None:
    plan = _plan(
        ("photos", "mobilenet_v2", "small", 0.5, "n1"),
        ("photos", "mobilenet_v2", "small", 0.5, "n1"),
        ("photos", "mobilenet_v2", "medium", 1.0, "n2"),
        ("docs", "resnet18", "small", 0.5, "n2"),
    )
    pools = service_pools(plan, ["photos", "docs", "idle"], {"n1": (0,), "n2": (1,)})
    photos = pools["photos"]
    assert photos.model == "mobilenet_v2"
    assert photos.replicas == {pool_key("small", "n1"): 2, pool_key("medium", "n2"): 1}
    assert photos.cpus == {"small@n1": 0.5, "medium@n2": 1.0}
    assert photos.cpusets == {"small@n1": (0,), "medium@n2": (1,)}
    assert pools["docs"].replicas == {"small@n2": 1} and pools["docs"].cpusets["small@n2"] == (1,)
    assert pools["idle"].model is None and pools["idle"].replicas == {}


def test_a_plan_mixing_variants_serves_the_most_placed_one_and_says_so() -> None:
    plan = _plan(
        ("s", "resnet50", "small", 0.5, "n1"),
        ("s", "vit_tiny", "small", 0.5, "n1"),
        ("s", "vit_tiny", "small", 0.5, "n2"),
    )
    pool = service_pools(plan, ["s"], {"n1": (0,), "n2": (1,)})["s"]
    assert pool.model == "vit_tiny"
    assert pool.notes and "serves vit_tiny on every replica" in pool.notes[0]


def test_ahead_of_a_window_both_windows_replicas_are_held_new_places_first() -> None:
    now = ServiceLivePool("m", {"small@n1": 2}, {"small@n1": 0.5}, {"small@n1": (0,)})
    nxt = ServiceLivePool(
        "m", {"medium@n2": 1, "small@n1": 1}, {"medium@n2": 1.0, "small@n1": 0.5},
        {"medium@n2": (1,), "small@n1": (0,)},
    )  # fmt: skip
    held = ahead(now, nxt)
    assert held.replicas == {"medium@n2": 1, "small@n1": 2}
    assert next(iter(held.replicas)) == "medium@n2"
    assert held.cpusets == {"small@n1": (0,), "medium@n2": (1,)}


def test_cost_counts_every_node_holding_a_running_replica_once() -> None:
    running = {"a": {"small@n1": 2, "medium@n2": 0}, "b": {"small@n1": 1}}
    assert nodes_in_use(running) == {"n1"}
    assert fleet_cost_per_hour(running, NODES) == pytest.approx(0.05)
    running["b"]["small@n2"] = 1
    assert fleet_cost_per_hour(running, NODES) == pytest.approx(0.12)
