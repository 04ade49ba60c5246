"""Contract and property tests for the retrain planner (pure: no processes, no clock)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewise.errors import InfeasibleError
from edgewise.planning.retrain import (
    PLANNERS,
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    RetrainPlan,
    min_max_shares,
    plan,
    plan_equal,
    plan_exact,
    plan_fastest,
    plan_heuristic,
    plan_milp,
    plan_proportional,
    step_time,
)


def make_pool(
    n: int, seed: int, deadlines: bool = True, dead_frac: float = 0.1
) -> tuple[list[DeviceState], dict[str, DeviceProfile]]:
    rng = np.random.default_rng(seed)
    devices, profiles = [], {}
    for i in range(n):
        speed = rng.uniform(0.2, 2.0)
        its = tuple(
            Intensity(
                threads=t,
                nice=nice,
                throughput_sps=speed * 100 * t * (1 - nice / 40),
                bg_latency_ms=10 + t * 20 * rng.uniform(0.5, 1.5) + (0 if nice else 5),
            )
            for t in (1, 2)
            for nice in (0, 19)
        )
        name = f"d{i}"
        devices.append(
            DeviceState(
                name,
                cpus=1.0,
                memory_mb=float(rng.integers(1200, 4000)),
                deadline_ms=float(rng.uniform(30, 80)) if deadlines else None,
                alive=bool(rng.uniform() > dead_frac),
            )
        )
        profiles[name] = DeviceProfile(name, its, solo_latency_ms=10.0)
    return devices, profiles


def make_constraints(**overrides: float) -> RetrainConstraints:
    base: dict[str, float] = dict(
        global_batch=96, deadline_margin=0.1, comm_fixed_s=0.01, comm_per_device_s=0.004
    )
    base.update(overrides)
    return RetrainConstraints(**base)  # type: ignore[arg-type]


def check_planner(
    result: RetrainPlan,
    devices: list[DeviceState],
    c: RetrainConstraints,
    respects_deadlines: bool,
) -> None:
    """The contract every planner honours."""
    by_name = {d.name: d for d in devices}
    assert sum(result.shares.values()) == c.global_batch
    assert all(b >= 1 for b in result.shares.values())
    assert set(result.shares) == set(result.intensities)
    assert set(result.explanation) == set(by_name)
    for name, b in result.shares.items():
        d = by_name[name]
        assert d.alive
        assert result.explanation[name].startswith("in:")
        if c.per_sample_mb:
            assert c.model_mb + b * c.per_sample_mb <= d.memory_mb
        if respects_deadlines and d.deadline_ms is not None:
            assert result.intensities[name].bg_latency_ms <= d.deadline_ms * (1 - c.deadline_margin)
    for name, d in by_name.items():
        if name not in result.shares:
            assert result.explanation[name].startswith("out:")
        if not d.alive:
            assert name not in result.shares
    assert result.step_time_s == pytest.approx(step_time(result.shares, result.intensities, c))


@pytest.mark.parametrize("method", sorted(PLANNERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contract(method: str, seed: int) -> None:
    devices, profiles = make_pool(8, seed)
    c = make_constraints()
    result = plan(devices, profiles, c, method=method)
    check_planner(result, devices, c, respects_deadlines=method in ("exact", "heuristic", "milp"))


@pytest.mark.parametrize(
    "baseline", [plan_equal, plan_proportional, plan_fastest], ids=["equal", "prop", "fast"]
)
def test_feasible_baselines_keep_deadlines(baseline) -> None:  # type: ignore[no-untyped-def]
    devices, profiles = make_pool(8, 5)
    c = make_constraints()
    check_planner(baseline(devices, profiles, c, respect_deadlines=True), devices, c, True)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 200),
    mem=st.booleans(),
    comm=st.floats(0.0, 0.05),
)
def test_exact_le_heuristic_le_baselines(
    n: int, seed: int, batch: int, mem: bool, comm: float
) -> None:
    devices, profiles = make_pool(n, seed, dead_frac=0.2)
    c = make_constraints(
        global_batch=batch,
        comm_fixed_s=comm,
        comm_per_device_s=comm / 3,
        model_mb=1000.0 if mem else 0.0,
        per_sample_mb=25.0 if mem else 0.0,
    )
    try:
        exact = plan_exact(devices, profiles, c)
    except InfeasibleError:
        with pytest.raises(InfeasibleError):
            plan_heuristic(devices, profiles, c)
        return
    heur = plan_heuristic(devices, profiles, c)
    check_planner(exact, devices, c, True)
    check_planner(heur, devices, c, True)
    eps = 1e-9
    assert exact.step_time_s <= heur.step_time_s + eps
    assert heur.step_time_s <= exact.step_time_s * 1.05 + eps
    for baseline in (plan_equal, plan_proportional, plan_fastest):
        try:
            base = baseline(devices, profiles, c, respect_deadlines=True)
        except InfeasibleError:
            continue
        assert heur.step_time_s <= base.step_time_s + eps


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), seed=st.integers(0, 2**31 - 1), mem=st.booleans())
def test_exact_matches_full_milp(n: int, seed: int, mem: bool) -> None:
    """The dominance shortcut in plan_exact agrees with the MILP over all intensities."""
    devices, profiles = make_pool(n, seed, dead_frac=0.0)
    c = make_constraints(model_mb=1000.0 if mem else 0.0, per_sample_mb=30.0 if mem else 0.0)
    try:
        exact = plan_exact(devices, profiles, c)
    except InfeasibleError:
        return
    full = plan_milp(devices, profiles, c)
    assert exact.step_time_s == pytest.approx(full.step_time_s, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    theta=st.lists(st.floats(0.5, 500.0), min_size=1, max_size=8),
    total=st.integers(0, 300),
    seed=st.integers(0, 1000),
)
def test_min_max_shares_optimal(theta: list[float], total: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    th = np.array(theta)
    caps = rng.integers(0, 120, size=th.size)
    if caps.sum() < total:
        with pytest.raises(ValueError):
            min_max_shares(th, caps, total)
        return
    b = min_max_shares(th, caps, total)
    assert b.sum() == total and np.all(b >= 0) and np.all(b <= caps)
    if total == 0:
        return
    t = np.max(b / th)
    # greedy unit-by-unit assignment is optimal for min-max; compare
    g = np.zeros_like(b)
    for _ in range(total):
        cand = np.where(g < caps, (g + 1) / th, np.inf)
        g[np.argmin(cand)] += 1
    assert t == pytest.approx(np.max(g / th), rel=1e-12)


def test_speeds_one_half_third_shares() -> None:
    devices = [DeviceState(n, c, 2048) for n, c in (("a", 1.0), ("b", 0.5), ("c", 1 / 3))]
    profiles = {
        d.name: DeviceProfile(d.name, (Intensity(1, 0, 600.0 * d.cpus, 5.0),)) for d in devices
    }
    c = RetrainConstraints(96)
    ours = plan(devices, profiles, c)
    eq = plan_equal(devices, profiles, c)
    assert ours.shares == {"a": 53, "b": 26, "c": 17}
    assert eq.step_time_s / ours.step_time_s == pytest.approx(1.83, abs=0.02)


def test_deadline_moves_work_to_lighter_intensity() -> None:
    devices = [DeviceState("busy", 1.0, 2048, deadline_ms=20.0), DeviceState("idle", 1.0, 2048)]
    its = (Intensity(2, 0, 400.0, 40.0), Intensity(1, 19, 150.0, 15.0))
    profiles = {
        "busy": DeviceProfile("busy", its),
        "idle": DeviceProfile("idle", (Intensity(1, 0, 200.0, 0.0),)),
    }
    p = plan(devices, profiles, RetrainConstraints(70, deadline_margin=0.0))
    assert p.intensities["busy"].nice == 19
    assert p.shares == {"busy": 30, "idle": 40}
    oblivious = plan_proportional(devices, profiles, RetrainConstraints(70))
    assert oblivious.intensities["busy"].threads == 2  # violates the deadline


def test_failures_are_input_and_infeasible_is_one_line() -> None:
    devices, profiles = make_pool(4, 0, deadlines=False, dead_frac=0.0)
    dead = [DeviceState(d.name, d.cpus, d.memory_mb, alive=False) for d in devices]
    with pytest.raises(InfeasibleError) as err:
        plan(dead, profiles, make_constraints())
    assert "\n" not in str(err.value) and "d0: device is down" in str(err.value)
    tight = [DeviceState(d.name, d.cpus, d.memory_mb, deadline_ms=1.0) for d in devices]
    with pytest.raises(InfeasibleError, match="exceeds"):
        plan(tight, profiles, make_constraints())
    with pytest.raises(InfeasibleError, match="memory"):
        plan(devices, profiles, make_constraints(model_mb=1e6, per_sample_mb=1.0))


def test_planning_at_16_and_10000_devices_covers_the_global_batch() -> None:
    """Both planners at the sizes of the targets (their speed is measured by
    ``edgewise bench scale``: ``plan_16_devices_ms_p50``, ``plan_10k_devices_s``)."""
    devices, profiles = make_pool(16, 11)
    c = make_constraints(model_mb=1000.0, per_sample_mb=10.0)
    p = plan(devices, profiles, c)
    assert sum(p.shares.values()) == c.global_batch
    big, bprof = make_pool(10_000, 12)
    r = plan_heuristic(
        big, bprof, make_constraints(global_batch=100_000, comm_fixed_s=0.0, comm_per_device_s=1e-6)
    )
    assert sum(r.shares.values()) == 100_000


def test_oblivious_baselines_run_full_intensity_feasible_ones_the_best_allowed() -> None:
    devices = [DeviceState("a", 1.0, 4096.0, deadline_ms=40.0), DeviceState("b", 1.0, 4096.0)]
    its = (
        Intensity(1, 0, throughput_sps=100.0, bg_latency_ms=60.0),
        Intensity(1, 19, throughput_sps=104.0, bg_latency_ms=20.0),  # faster by noise
    )
    profiles = {n: DeviceProfile(n, its) for n in ("a", "b")}
    c = make_constraints()
    for baseline in (plan_equal, plan_proportional):
        oblivious = baseline(devices, profiles, c)
        assert {k.nice for k in oblivious.intensities.values()} == {0}
        feasible = baseline(devices, profiles, c, respect_deadlines=True)
        assert {k.nice for k in feasible.intensities.values()} == {19}
    assert plan_exact(devices, profiles, c).intensities["a"].nice == 19
