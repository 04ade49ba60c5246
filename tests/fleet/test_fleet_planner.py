"""The fleet planner (edgewise.planning.fleet): placement with injected slowdowns."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from edgewise.errors import InfeasibleError
from edgewise.planning.fleet import (
    FleetPlan,
    Node,
    ServiceOptions,
    SlowdownEstimate,
    linear_derate,
    plan_blind,
    plan_fleet,
    tolerance,
)
from edgewise.planning.serving import ReplicaOption

MEMORY = {"one": 1024}


def option(model: str, capacity: float = 10.0, cpus: float = 1.0) -> ReplicaOption:
    return ReplicaOption(model, "one", 0.8, capacity, 0.05, 50, cpus)


def service(name: str, model: str, capacity: float = 10.0) -> ServiceOptions:
    return ServiceOptions(name, (option(model, capacity),))


def nodes(n: int, cpus: float = 2.0, price: float = 1.0) -> tuple[Node, ...]:
    return tuple(Node(f"n{i}", cpus, 4096, price) for i in range(n))


def pairwise(table: Mapping[tuple[str, str], float]):  # type: ignore[no-untyped-def]
    """Slowdown of a model: the product of its factors next to each neighbour."""

    def slowdown(model: str, neighbours: tuple[str, ...]) -> SlowdownEstimate:
        f = 1.0
        for n in neighbours:
            f *= table.get((model, n), 1.0)
        return SlowdownEstimate(f, "test table" if neighbours else "alone")

    return slowdown


def on_node(plan: FleetPlan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in plan.replicas:
        out.setdefault(r.node, set()).add(r.service)
    return out


A, B = service("a", "resnet50"), service("b", "distilbert")
CLASH = pairwise({("resnet50", "distilbert"): 2.0, ("distilbert", "resnet50"): 2.0})
MILD = pairwise({("resnet50", "distilbert"): 1.1, ("distilbert", "resnet50"): 1.1})


def test_an_interfering_pair_is_not_packed_where_it_would_break_the_slo() -> None:
    rates = {"a": 8.0, "b": 8.0}  # one replica each, tolerating 10 / 8 = 1.25x
    ours = plan_fleet([A, B], rates, nodes(2), MEMORY, CLASH, linear_derate)
    assert sorted(map(sorted, on_node(ours).values())) == [["a"], ["b"]]
    assert all(s.factor == 1.0 for s in ours.slowdowns)
    assert all(c >= 8.0 for c in ours.capacity_rps(linear_derate).values())
    packed = plan_blind("first-fit", [A, B], rates, nodes(2), MEMORY, CLASH)
    assert list(on_node(packed).values()) == [{"a", "b"}]
    assert min(packed.capacity_rps(linear_derate).values()) == pytest.approx(5.0)
    assert packed.cost_per_hour < ours.cost_per_hour


def test_a_pair_that_interferes_within_the_slo_shares_a_node() -> None:
    ours = plan_fleet([A, B], {"a": 8.0, "b": 8.0}, nodes(2), MEMORY, MILD, linear_derate)
    assert list(on_node(ours).values()) == [{"a", "b"}]
    assert ours.cost_per_hour == 1.0 and ours.nodes_used == 1
    assert {s.factor for s in ours.slowdowns} == {1.1}


def test_tolerance_is_the_slowdown_that_still_covers_the_rate() -> None:
    assert tolerance([option("m")], 8.0, linear_derate) == pytest.approx(1.25, rel=1e-6)
    assert tolerance([option("m")] * 2, 8.0, linear_derate) == pytest.approx(2.5, rel=1e-6)
    assert tolerance([option("m")], 10.0, linear_derate) == pytest.approx(1.0)
    assert tolerance([], 0.0, linear_derate) > 1.0


def test_a_service_grows_rather_than_miss_its_slo_when_nodes_are_scarce() -> None:
    # one 3-CPU node: a and b must share it; b takes a second replica (tolerance 2.5x)
    clash_b_only = pairwise({("distilbert", "resnet50"): 2.0})
    ours = plan_fleet(
        [A, B], {"a": 8.0, "b": 8.0}, nodes(1, cpus=3.0), MEMORY, clash_b_only, linear_derate
    )
    assert sum(r.service == "b" for r in ours.replicas) == 2
    cap = ours.capacity_rps(linear_derate)
    assert cap["a"] >= 8.0 and cap["b"] >= 8.0


def test_a_fleet_that_cannot_fit_names_the_service_and_its_shortfall() -> None:
    with pytest.raises(InfeasibleError) as info:
        plan_fleet([A], {"a": 35.0}, nodes(1), MEMORY, CLASH, linear_derate)
    msg = str(info.value)
    assert "'a'" in msg and "20 of its 35 rps placed" in msg and "42.9% short" in msg
    assert "\n" not in msg
    # room for two replicas, but they only meet the SLO apart
    with pytest.raises(InfeasibleError, match=r"service '(a|b)' cannot meet its SLO"):
        plan_fleet([A, B], {"a": 8.0, "b": 8.0}, nodes(1), MEMORY, CLASH, linear_derate)


def test_blind_baselines_place_by_cpus_alone() -> None:
    svc = [service("a", "resnet50"), service("b", "distilbert"), service("c", "vit_tiny")]
    rates = {"a": 5.0, "b": 5.0, "c": 5.0}
    spread = plan_blind("ray-spread", svc, rates, nodes(3), MEMORY, CLASH)
    assert spread.nodes_used == 3 and spread.cost_per_hour == 3.0
    first = plan_blind("first-fit", svc, rates, nodes(3), MEMORY, CLASH)
    assert first.nodes_used == 2 and [r.node for r in first.replicas] == ["n0", "n0", "n1"]
    full = plan_blind("first-fit", svc, rates, nodes(1), MEMORY, CLASH)
    assert len(full.replicas) == 2 and [s for s, _ in full.unplaced] == ["c"]
    # blind placement still reports the slowdowns it brings
    assert {s.factor for s in first.slowdowns} == {2.0, 1.0}


def test_a_fallback_to_solo_capacity_is_noted_once() -> None:
    def unknown(model: str, neighbours: tuple[str, ...]) -> SlowdownEstimate:
        if not neighbours:
            return SlowdownEstimate(1.0, "alone")
        return SlowdownEstimate(1.0, f"solo (no model for {model} next to {neighbours[0]})")

    plan = plan_fleet([A, B], {"a": 8.0, "b": 8.0}, nodes(2), MEMORY, unknown, linear_derate)
    assert plan.nodes_used == 1
    assert sorted(plan.notes) == [
        "solo (no model for distilbert next to resnet50)",
        "solo (no model for resnet50 next to distilbert)",
    ]
    assert plan.as_dict()["notes"] == list(plan.notes)


def test_accuracy_floor_and_zero_rate() -> None:
    low = ServiceOptions("a", (option("resnet50"),), min_accuracy=0.9)
    with pytest.raises(InfeasibleError, match="service 'a': no model variant reaches"):
        plan_fleet([low], {"a": 1.0}, nodes(1), MEMORY, CLASH, linear_derate)
    idle = plan_fleet([A, B], {"a": 0.0, "b": 0.0}, nodes(2), MEMORY, CLASH, linear_derate)
    assert idle.replicas == () and idle.cost_per_hour == 0.0


def test_one_more_replica_is_taken_where_it_frees_a_node() -> None:
    # b does not mind a; a slows 1.5x next to b, beyond what one replica of a tolerates
    one_sided = pairwise({("resnet50", "distilbert"): 1.5})
    rates = {"a": 9.0, "b": 9.0}
    pool = nodes(2, cpus=3.0)
    plain = plan_fleet([A, B], rates, pool, MEMORY, one_sided, linear_derate, improve=False)
    assert plain.nodes_used == 2 and len(plain.replicas) == 2
    better = plan_fleet([A, B], rates, pool, MEMORY, one_sided, linear_derate)
    assert better.nodes_used == 1 and better.cost_per_hour < plain.cost_per_hour
    assert sum(r.service == "a" for r in better.replicas) == 2
    assert better.capacity_rps(linear_derate)["a"] == pytest.approx(20.0 / 1.5)
