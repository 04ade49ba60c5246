from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from edgewise.clock import VirtualClock
from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.serving.controller import LiveController, observe_second
from edgewise.serving.policies import FlavorOption, make_policy
from edgewise.serving.policies.base import PolicyState, ScalingContext, ScalingDecision


class FakeRuntime:
    """A deployment that serves a constant rate on a virtual clock."""

    def __init__(self, clock: VirtualClock, rate_rps: float) -> None:
        self.clock = clock
        self.rate = rate_rps
        self.target = 0
        self.cpus = 1.0
        self.completed = 0.0
        self.calls: list[tuple[str, float]] = []
        self._last = clock.now()

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]:
        now = self.clock.now()
        self.completed += self.rate * (now - self._last)
        self._last = now
        reps = {f"r{i}": {"pid": i} for i in range(self.target)}
        return {
            "time": now,
            "completed": self.completed,
            "rejected": 0,
            "ongoing": 1,
            "queued_total": 1.0,
            "cpu_s": {k: 1.0 * now for k in reps},
            "replicas": reps,
            "recent": [(now - 0.5, 20.0)],
        }

    def running_replicas(self) -> int:
        return self.target

    def scale_to(self, replicas: int) -> None:
        self.calls.append(("scale", replicas))
        self.target = replicas

    def set_cpus(self, cpus: float) -> None:
        self.calls.append(("cpus", cpus))
        self.cpus = cpus

    def set_info(self, **info: Any) -> None:
        pass


FLAVOR = FlavorOption(
    name="medium",
    cpus=1.0,
    capacity_rps=10.0,
    price_per_hour=3.6,
    max_replicas=20,
    max_cpus=2.0,
    service_ms_mean=50.0,
)


def _controller(kb: KnowledgeBase, clock: VirtualClock, rt: FakeRuntime) -> LiveController:
    return LiveController(
        rt,
        make_policy("hpa"),
        FLAVOR,
        slo_ms=200,
        startup_s=5,
        history_bin_s=60,
        history=[30.0] * 10,
        kb=kb,
        run_key="run-1",
        clock=clock,
    )


def test_observe_second_estimates_rate_utilisation_and_p99() -> None:
    prev = {
        "time": 0.0,
        "completed": 100,
        "rejected": 0,
        "ongoing": 2,
        "queued_total": 2.0,
        "cpu_s": {"a": 1.0, "b": 1.0},
        "replicas": {"a": {}, "b": {}},
        "recent": [],
    }
    cur = {
        "time": 2.0,
        "completed": 140,
        "rejected": 2,
        "ongoing": 4,
        "queued_total": 6.0,
        "cpu_s": {"a": 2.0, "b": 1.5},
        "replicas": {"a": {}, "b": {}},
        "recent": [(1.0, 10.0), (1.5, 30.0), (-1.0, 999.0)],
    }
    arrivals, ongoing, util, p99 = observe_second(prev, cur, cpus=0.5)
    assert arrivals == (42 + 4) / 2.0
    assert ongoing == 6.0
    assert abs(util - 1.5 / (2.0 * 2 * 0.5)) < 1e-9
    assert 10.0 <= p99 <= 30.0
    assert math.isnan(observe_second(prev, {**cur, "recent": []}, 0.5)[3])


def test_controller_scales_with_load_and_records_events(tmp_path) -> None:
    kb = KnowledgeBase.open(f"sqlite:///{tmp_path}/kb.sqlite")
    clock = VirtualClock(1000.0)
    rt = FakeRuntime(clock, rate_rps=30.0)
    ctl = _controller(kb, clock, rt)
    ctl.start(initial_replicas=1)
    res = ctl.run(120.0)
    assert res.decisions >= 7 and rt.target > 1  # HPA saw 100% utilisation and scaled out
    assert res.cost > 0
    with kb.transaction() as s:
        events = s.scalars(select(m.ScalingEvent).where(m.ScalingEvent.run_key == "run-1")).all()
        assert events and all(e.policy == "hpa" for e in events)
        state = s.scalars(select(m.PolicyState)).one()
        assert state.key == "run-1" and state.state["controller"]["target"] == rt.target


def test_restarted_controller_resumes_from_stored_state(tmp_path) -> None:
    kb = KnowledgeBase.open(f"sqlite:///{tmp_path}/kb.sqlite")
    clock = VirtualClock(0.0)
    rt = FakeRuntime(clock, rate_rps=30.0)
    first = _controller(kb, clock, rt)
    first.start(initial_replicas=1)
    first.run(90.0)
    level = rt.target
    saved_policy_state = dict(first._state)
    del first  # the controller dies; the deployment keeps running

    second = _controller(kb, clock, rt)
    assert second.resumed
    second.start(initial_replicas=1)  # ignored: the stored level wins
    assert rt.target == level
    assert second._state == saved_policy_state


class JitteryClock(VirtualClock):
    """A virtual clock whose sleeps wake a few milliseconds early or late, like a real one."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__(start)
        self._calls = 0

    def sleep(self, seconds: float) -> None:
        self._calls += 1
        jitter = -0.004 if self._calls % 2 else 0.004
        super().sleep(max(0.0, seconds + jitter))


@dataclass
class EveryTick:
    """A policy deciding once a second; it holds the level and counts its decisions."""

    period_s: float = 1.0
    name: str = "every-tick"

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        return ScalingDecision({"medium": 1}, {"medium": 1.0}, "hold"), {}


def test_a_one_second_policy_decides_every_tick_on_a_jittery_clock() -> None:
    clock = JitteryClock(0.0)
    rt = FakeRuntime(clock, rate_rps=5.0)
    ctl = LiveController(rt, EveryTick(), FLAVOR, slo_ms=200, history=[5.0], clock=clock)
    ctl.start(initial_replicas=1)
    res = ctl.run(60.0)
    # a tick waking a few ms early must not slip a whole period
    assert res.decisions >= 59
