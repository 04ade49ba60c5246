"""The fleet simulator (edgewise.sim.fleet): windows of replica classes on the fluid simulator."""

from __future__ import annotations

import numpy as np
import pytest

import edgewise.sim.fleet as fleet_sim
from edgewise.sim.fleet import capacity_curve, replica_class, simulate_service
from edgewise.sim.model import SimConfig
from edgewise.sim.queueing import capacity_rps, lognormal_profile

PROFILE = lognormal_profile(20.0, 0.25)
CONFIG = SimConfig(slo_ms=100.0, slo_percentile=99.0)


def test_the_capacity_curve_is_the_simulators_capacity_of_the_slowed_profile() -> None:
    factors = [1.0, 1.3, 2.0, 6.0]
    curve = capacity_curve(PROFILE, 100.0, 99.0, factors)
    for f, c in zip(factors, curve, strict=True):
        assert c == pytest.approx(capacity_rps(PROFILE.scaled(f), 100.0, 99.0), rel=1e-9)
    assert np.all(np.diff(curve) < 0) and curve[-1] == 0.0  # 6 x 20 ms misses 100 ms


def windows(slowdown: float, count: int, n: int) -> list[list[fleet_sim.ReplicaClass]]:
    cap = float(capacity_curve(PROFILE, 100.0, 99.0, [slowdown])[0])
    cls = replica_class(f"m/one@{slowdown}", 1.0, cap, PROFILE, slowdown, count)
    return [[cls]] * n


def test_a_slowed_pool_serves_fewer_requests_within_the_slo() -> None:
    rate = np.full(7200, 60.0)
    arrivals = np.random.default_rng(0).poisson(rate).astype(float)
    fine = simulate_service(rate, arrivals, windows(1.0, 3, 2), 3600, CONFIG)
    slowed = simulate_service(rate, arrivals, windows(1.6, 3, 2), 3600, CONFIG)
    assert fine.requests == slowed.requests == arrivals.sum()
    assert fine.slo_attainment > 0.995 > slowed.slo_attainment
    overloaded = simulate_service(rate, arrivals, windows(3.0, 3, 2), 3600, CONFIG)
    assert overloaded.rejected > 0 and overloaded.slo_attainment < 0.5


def test_calm_windows_evaluated_every_few_seconds_agree_with_every_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = np.arange(7200)
    rate = 40.0 + 20.0 * np.sin(t / 7200.0 * np.pi)  # smooth, as an interpolated trace
    arrivals = np.random.default_rng(1).poisson(rate).astype(float)
    stepped = simulate_service(rate, arrivals, windows(1.2, 2, 2), 3600, CONFIG)
    monkeypatch.setattr(fleet_sim, "CALM_STEP_S", 10**9)  # never calm: second by second
    exact = simulate_service(rate, arrivals, windows(1.2, 2, 2), 3600, CONFIG)
    assert stepped.slo_attainment == pytest.approx(exact.slo_attainment, abs=2e-4)
    assert 0.9 < exact.slo_attainment < 1.0


def test_windows_already_simulated_are_reused() -> None:
    rate = np.full(3600, 30.0)
    arrivals = np.random.default_rng(2).poisson(rate).astype(float)
    cache: dict[object, tuple[float, float, float]] = {}
    first = simulate_service(rate, arrivals, windows(1.0, 2, 1), 3600, CONFIG, cache)
    assert len(cache) == 1
    again = simulate_service(rate, arrivals, windows(1.0, 2, 1), 3600, CONFIG, cache)
    assert again == first and len(cache) == 1
    with pytest.raises(ValueError, match="windows"):
        simulate_service(rate, arrivals, [], 3600, CONFIG)


def test_a_plan_becomes_classes_with_its_slowdowns_as_the_truth() -> None:
    from edgewise.planning.fleet import FleetPlan, PlacedReplica, SlowdownEstimate, linear_derate
    from edgewise.planning.serving import ReplicaOption
    from edgewise.sim.fleet import plan_classes

    opt = ReplicaOption("resnet50", "one", 0.8, 10.0, 0.05, 9, 1.0)
    plan = FleetPlan(
        "ours",
        {"a": 15.0},
        tuple(PlacedReplica("a", opt, n, 1024) for n in ("n0", "n0", "n1")),
        (SlowdownEstimate(1.5, "t"), SlowdownEstimate(1.5, "t"), SlowdownEstimate(1.0, "t")),
    )
    profiles = {("a", "resnet50", "one"): PROFILE}
    got = {c.flavor.name: c for c in plan_classes(plan, "a", linear_derate, profiles)}
    assert {n: c.count for n, c in got.items()} == {
        "resnet50/one@1.500": 2,
        "resnet50/one@1.000": 1,
    }
    slowed = got["resnet50/one@1.500"].flavor
    assert slowed.profile.mean_ms == pytest.approx(1.5 * PROFILE.mean_ms)
    assert slowed.option.capacity_rps == pytest.approx(10.0 / 1.5)
    worse = plan_classes(plan, "a", linear_derate, profiles, error=0.2)
    assert sorted(c.flavor.name for c in worse) == ["resnet50/one@1.000", "resnet50/one@1.600"]
    assert plan_classes(plan, "b", linear_derate, profiles) == []
