"""The coordinator's pool of flavors: which replica runs in which flavor, at which CPUs.

Plain Python (:class:`CoordinatorState` and :func:`assign_flavors`), no Ray cluster.
"""

from __future__ import annotations

from collections import Counter

from edgewise.serving.runtime.coordinator import CoordinatorState, assign_flavors


def test_assignment_matches_the_counts_in_flavor_order() -> None:
    out = assign_flavors(["a", "b", "c"], {}, {"large": 2, "small": 1})
    assert out == {"a": "large", "b": "large", "c": "small"}


def test_replicas_keep_their_flavor_and_only_the_shrinking_flavor_gives_one_up() -> None:
    before = {"a": "large", "b": "large", "c": "small"}
    out = assign_flavors(["a", "b", "c"], before, {"large": 1, "small": 2})
    assert out["a"] == "large" and out["c"] == "small"
    assert out["b"] == "small"  # moved in place: a new quota, no new process


def test_survivors_of_a_scale_in_are_reassigned_to_the_flavors_still_wanted() -> None:
    # Ray Serve stopped "c" (the small one) although the large flavor shrank.
    before = {"a": "large", "b": "large"}
    out = assign_flavors(["a", "b"], before, {"large": 1, "small": 1})
    assert Counter(out.values()) == Counter({"large": 1, "small": 1})
    assert out["a"] == "large"


def test_starting_replicas_leave_the_last_flavors_short_and_surplus_keeps_its_flavor() -> None:
    assert assign_flavors(["a"], {}, {"large": 1, "small": 2}) == {"a": "large"}
    out = assign_flavors(["a", "b", "c"], {"c": "small"}, {"large": 2})
    assert out == {"a": "large", "b": "large", "c": "small"}


def test_state_gives_each_replica_its_flavors_cpus_and_reports_the_pool() -> None:
    s = CoordinatorState("app", 1, 1.0)
    for rid in ("r1", "r2", "r3"):
        s.register(rid, 1, "node", 1.0)
    s.set_pool({"large": 2, "small": 1}, {"large": 4.0, "small": 1.0})
    assert s.target_replicas == 3
    assert sorted(s.cpus_for(r) for r in ("r1", "r2", "r3")) == [1.0, 4.0, 4.0]
    view = s.pool_view()
    assert view["large"] == {"target": 2, "assigned": 2, "cpus": 4.0}
    assert view["small"]["assigned"] == 1
    s.set_pool({"large": 1, "small": 1}, {"large": 4.0, "small": 1.0})
    small = next(r for r, f in s.flavor_of.items() if f == "small")
    s.unregister(small)  # Serve stopped a small replica: a large one takes its place
    assert sorted(s.cpus_for(r) for r in s.replicas) == [1.0, 4.0]
    s.record("r1", [10.0], 0, 0)
    assert s.snapshot()["replicas"]["r1"]["cpus"] == s.cpus_for("r1")


def test_one_flavor_stays_the_default_path() -> None:
    s = CoordinatorState("app", 2, 1.5)
    s.register("r1", 1, "node", 1.5)
    assert s.cpus_for("r1") == 1.5 and s.pool_view() == {}
    s.set_pool({"large": 1}, {"large": 4.0})
    s.set_target(3)
    assert s.pool is None and s.target_replicas == 3 and s.cpus_for("r1") == 1.5


def test_a_variant_is_the_serving_reference_every_replica_reads() -> None:
    s = CoordinatorState("app", 1, 1.0)
    s.set_variant("resnet18")
    assert s.assignment() == {"rollout": None, "serving_ref": "resnet18"}


def test_silent_replicas_are_forgotten_and_their_flavor_reassigned() -> None:
    s = CoordinatorState("app", 1, 1.0)
    s.register("r1", 1, "node", 1.0)
    s.register("r2", 2, "node", 1.0)
    s.set_pool({"large": 1, "small": 1}, {"large": 2.0, "small": 1.0})
    kept_flavor = s.flavor_of["r2"]
    s.replicas["r1"]["seen"] -= 60.0
    s.forget_silent(s.replicas["r2"]["seen"])
    assert s.flavor_of == {"r2": kept_flavor}  # the survivor keeps its quota
    s.register("r3", 3, "node", 1.0)  # the replacement takes the flavor that went
    assert s.flavor_of["r3"] != kept_flavor


def test_a_fleet_pool_pins_each_entrys_replicas_to_its_nodes_cpus() -> None:
    s = CoordinatorState("app", 1, 0.5)
    for rid in ("a", "b"):
        s.register(rid, 1, "n", 0.5)
    s.set_pool(
        {"small@node-01": 1, "medium@node-02": 1},
        {"small@node-01": 0.5, "medium@node-02": 1.0},
        {"small@node-01": [0], "medium@node-02": [1]},
    )
    pins = {rid: (s.cpus_for(rid), s.cpuset_for(rid)) for rid in ("a", "b")}
    assert sorted(pins.values()) == [(0.5, [0]), (1.0, [1])]
    # A pool without CPU sets leaves the replicas free to run anywhere.
    s.set_pool({"small": 2}, {"small": 0.5})
    assert s.cpuset_for("a") is None and s.cpuset_for("b") is None
