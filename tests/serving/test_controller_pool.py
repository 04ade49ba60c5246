"""The live controller executes a pool of flavors and the model variant a policy decides.

A fake pool runtime on a virtual clock and a scripted policy: no cluster, no wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from edgewise.clock import VirtualClock
from edgewise.serving.controller import LiveController, observe_second
from edgewise.serving.policies import FlavorOption
from edgewise.serving.policies.base import PolicyState, ScalingContext, ScalingDecision

LARGE = FlavorOption("large", cpus=4.0, capacity_rps=40.0, price_per_hour=4.0, max_replicas=4)
SMALL = FlavorOption("small", cpus=1.0, capacity_rps=10.0, price_per_hour=1.0, max_replicas=4)


class FakePoolRuntime:
    """A deployment of several flavors whose replicas start at once."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.pool: dict[str, int] = {}
        self.cpus: dict[str, float] = {}
        self.variant: str | None = None
        self.calls: list[tuple[str, Any]] = []

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]:
        now = self.clock.now()
        reps = {
            f"{name}-{i}": {"cpus": self.cpus[name], "flavor": name}
            for name, n in self.pool.items()
            for i in range(n)
        }
        return {
            "time": now,
            "completed": 10.0 * now,
            "rejected": 0,
            "ongoing": 0,
            "cpu_s": {k: 0.5 * now for k in reps},
            "replicas": reps,
            "recent": [],
            "pool": {name: {"assigned": n} for name, n in self.pool.items()},
        }

    def running_replicas(self) -> int:
        return sum(self.pool.values())

    def running_by_flavor(self) -> dict[str, int]:
        return dict(self.pool)

    def scale_to(self, replicas: int) -> None:
        raise AssertionError("a pool is scaled with set_pool")

    def set_cpus(self, cpus: float) -> None:
        raise AssertionError("a pool is resized with set_pool")

    def set_pool(self, replicas: Mapping[str, int], cpus: Mapping[str, float]) -> None:
        self.calls.append(("pool", dict(replicas)))
        self.pool, self.cpus = dict(replicas), dict(cpus)

    def set_variant(self, ref: str) -> None:
        self.calls.append(("variant", ref))
        self.variant = ref

    def set_info(self, **info: Any) -> None:
        pass


@dataclass
class ScriptedPolicy:
    """Returns the next decision of a script; remembers the contexts it saw."""

    script: list[ScalingDecision]
    seen: list[ScalingContext] = field(default_factory=list)
    name: str = "scripted"
    period_s: float = 10.0

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        self.seen.append(ctx)
        return self.script[min(len(self.seen), len(self.script)) - 1], {"n": len(self.seen)}


def _decision(large: int, small: int, variant: str | None = None) -> ScalingDecision:
    return ScalingDecision(
        {"large": large, "small": small}, {"large": 4.0, "small": 1.0}, "scripted", variant
    )


def _run(script: list[ScalingDecision], seconds: float) -> tuple[Any, Any, ScriptedPolicy]:
    clock = VirtualClock(0.0)
    rt = FakePoolRuntime(clock)
    policy = ScriptedPolicy(script)
    ctl = LiveController(
        rt, policy, (LARGE, SMALL), variant="resnet50", slo_ms=100, clock=clock, startup_s=5
    )
    ctl.start_pool({"large": 1})
    return ctl.run(seconds), rt, policy


def test_every_flavors_count_goes_to_the_runtime_and_is_priced() -> None:
    res, rt, policy = _run([_decision(2, 1), _decision(2, 1), _decision(1, 3)], 30.0)
    assert rt.calls[0] == ("pool", {"large": 1, "small": 0})
    assert ("pool", {"large": 2, "small": 1}) in rt.calls
    assert rt.pool == {"large": 1, "small": 3}
    assert res.scale_actions == 2 and res.decisions == 3
    # the second decision sees both flavors running, each at its own quota
    ctx = policy.seen[1]
    assert dict(ctx.replicas) == {"large": 2, "small": 1} and ctx.total_ready == 3
    assert dict(ctx.cpus_per_replica) == {"large": 4.0, "small": 1.0}
    assert [e["replicas"] for e in res.executed] == [
        {"large": 2, "small": 1},
        {"large": 2, "small": 1},
        {"large": 1, "small": 3},
    ]
    # decisions at 0, 10 and 20 s: 20 s of 2 large + 1 small, 10 s of 1 large + 3 small,
    # each flavor at its own price per hour
    ten_s = 10 / 3600.0
    expected = 2 * (2 * 4.0 + 1.0) * ten_s + (4.0 + 3 * 1.0) * ten_s
    assert res.cost == pytest.approx(expected, rel=1e-6)
    step = res.replicas_series[-1]
    assert step.by_flavor == {"large": 1, "small": 3} and step.cpus == pytest.approx(7 / 4)


def test_a_decided_variant_is_switched_once_and_recorded() -> None:
    script = [_decision(1, 0), _decision(1, 0, "mobilenet_v2"), _decision(1, 0, "mobilenet_v2")]
    res, rt, _ = _run(script, 30.0)
    assert [c for c in rt.calls if c[0] == "variant"] == [("variant", "mobilenet_v2")]
    assert res.variant_switches == 1
    assert [e["variant"] for e in res.executed] == ["resnet50", "mobilenet_v2", "mobilenet_v2"]


def test_utilisation_of_a_pool_is_over_each_replicas_own_quota() -> None:
    reps = {"a": {"cpus": 4.0}, "b": {"cpus": 1.0}}
    prev = {"time": 0.0, "completed": 0, "rejected": 0, "cpu_s": {"a": 0.0, "b": 0.0}}
    cur = {
        "time": 1.0,
        "completed": 0,
        "rejected": 0,
        "cpu_s": {"a": 2.0, "b": 0.5},
        "replicas": reps,
        "recent": [],
        "pool": {"large": {}, "small": {}},
    }
    assert observe_second(prev, cur, cpus=1.0)[2] == pytest.approx(2.5 / 5.0)


class GatedPoolRuntime(FakePoolRuntime):
    """A pool runtime that also takes the proxy's admission limit."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock)
        self.limits: list[int | None] = []

    def set_admission_limit(self, limit: int | None) -> None:
        self.limits.append(limit)


def test_the_admission_limit_follows_every_flavors_replicas_and_their_capacity() -> None:
    clock = VirtualClock(0.0)
    rt = GatedPoolRuntime(clock)
    script = [_decision(2, 1), _decision(2, 1), _decision(0, 3)]
    ctl = LiveController(
        rt, ScriptedPolicy(script), (LARGE, SMALL), slo_ms=500, clock=clock, gate=True
    )
    ctl.start_pool({"large": 1})
    ctl.run(30.0)
    # per replica floor(0.6 x 0.5 s x capacity): large 40 rps -> 12, small 10 rps -> 3;
    # published at the start and after each change, not after an unchanged decision
    assert rt.limits == [12, 2 * 12 + 3, 3 * 3]
    # without the gate nothing is published
    quiet = GatedPoolRuntime(VirtualClock(0.0))
    LiveController(quiet, ScriptedPolicy(script), (LARGE, SMALL), slo_ms=500).start_pool(
        {"large": 1}
    )
    assert quiet.limits == []
