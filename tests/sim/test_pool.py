"""The simulator's replica pool: start-ups, scale-in order, CPU changes, cached maps."""

from __future__ import annotations

from edgewise.serving.policies import FlavorOption, ScalingDecision
from edgewise.sim.model import SimFlavor
from edgewise.sim.pool import ReplicaPool, StartUp, price_per_hour
from edgewise.sim.queueing import lognormal_profile

PROFILE = lognormal_profile(16.0, 0.25)


def _flavor(name: str, cpus: float, price: float, max_replicas: int = 10) -> SimFlavor:
    option = FlavorOption(name, cpus, 30.0, price, max_replicas, 2 * cpus, PROFILE.mean_ms)
    return SimFlavor(option, PROFILE)


FLAVORS = [_flavor("small", 0.5, 0.025), _flavor("medium", 1.0, 0.048, max_replicas=4)]


def _decide(replicas: dict[str, int], cpus: dict[str, float] | None = None) -> ScalingDecision:
    return ScalingDecision(replicas, cpus or {}, "test")


def test_scale_out_starts_replicas_that_become_ready_after_the_start_up() -> None:
    pool = ReplicaPool.of(FLAVORS, {"small": 1})
    done = pool.apply(_decide({"small": 3, "medium": 9}), FLAVORS, 10, startup_s=60)
    assert done.horizontal and not done.vertical and not done.ready_changed
    # Clamped to the flavor's limit; both start-ups pending, in time order.
    assert pool.startups == [StartUp(70.0, "small", 2), StartUp(70.0, "medium", 4)]
    assert pool.maps().replicas == {"small": 3, "medium": 4}
    assert pool.maps().starting == {"small": 2, "medium": 4}
    assert pool.next_event() == 70.0
    assert not pool.pop_due(69.0)
    version = pool.version
    assert pool.pop_due(70.0) and pool.version == version + 1
    assert pool.ready == {"small": 3, "medium": 4} and pool.next_event() == float("inf")


def test_scale_in_cancels_the_newest_start_ups_before_ready_replicas() -> None:
    pool = ReplicaPool.of(FLAVORS, {"small": 2})
    pool.apply(_decide({"small": 3}), FLAVORS, 0, startup_s=60)
    pool.apply(_decide({"small": 5}), FLAVORS, 5, startup_s=60)
    assert [s.count for s in pool.startups] == [1, 2]
    done = pool.apply(_decide({"small": 1}), FLAVORS, 6, startup_s=60)
    assert done.horizontal and done.ready_changed
    assert pool.startups == [] and pool.ready["small"] == 1


def test_cpu_change_is_vertical_in_place_and_clamped() -> None:
    pool = ReplicaPool.of(FLAVORS, {"medium": 2})
    before = pool.maps()
    done = pool.apply(_decide({"medium": 2}, {"medium": 5.0, "small": 0.01}), FLAVORS, 0, 0)
    assert done.vertical and not done.horizontal
    assert done.ready_changed  # the medium replicas are ready: their speed changed
    assert pool.cpus == {"small": 0.05, "medium": 2.0}
    assert pool.maps() is not before and pool.maps().cpus_per_replica["medium"] == 2.0
    assert price_per_hour(FLAVORS, pool.maps().replicas) == 2 * 0.048
