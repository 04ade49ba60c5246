"""The live controller's stored state: resume after a restart, catch up after a KB outage.

No cluster, no wall clock for the control loop: a fake deployment on a virtual clock
(from ``test_controller``) and a knowledge base that refuses a given number of writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

# the same fake deployment and flavor as the controller's own tests
from test_controller import FLAVOR, FakeRuntime

from edgewise.clock import VirtualClock
from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.serving.controller import LiveController
from edgewise.serving.live import StateWriter
from edgewise.serving.policies import make_policy


class FlakyKB:
    """A knowledge base whose first ``failures`` write transactions fail as if locked."""

    def __init__(self, kb: KnowledgeBase, failures: int) -> None:
        self.kb = kb
        self.left = failures
        self.attempts = 0

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        self.attempts += 1
        if self.left > 0:
            self.left -= 1
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        with self.kb.transaction() as s:
            yield s

    def snapshot(self) -> Any:
        return self.kb.snapshot()


@pytest.fixture()
def kb(tmp_path: Path) -> KnowledgeBase:
    return KnowledgeBase.open(f"sqlite:///{tmp_path}/kb.sqlite")


def _controller(kb: Any, clock: VirtualClock, rt: FakeRuntime, **kw: Any) -> LiveController:
    return LiveController(
        rt,
        make_policy("edgewise", period_s=5.0, forecaster=None),
        FLAVOR,
        slo_ms=200,
        startup_s=5,
        history_bin_s=10,
        history=[30.0] * 4,
        kb=kb,
        run_key="svc",
        clock=clock,
        **kw,
    )


def _events(kb: KnowledgeBase) -> list[m.ScalingEvent]:
    with kb.snapshot() as s:
        return list(s.scalars(select(m.ScalingEvent).order_by(m.ScalingEvent.id)).all())


def test_restart_resumes_target_history_windows_plan_and_policy_clock(kb: KnowledgeBase) -> None:
    clock = VirtualClock(1000.0)
    rt = FakeRuntime(clock, rate_rps=45.0)
    first = _controller(kb, clock, rt)
    first.start(initial_replicas=1)
    first.run(63.0)
    assert rt.target > 1  # it scaled out for the load
    with kb.snapshot() as s:
        stored = s.scalars(select(m.PolicyState)).one().state
    assert len(stored["controller"]["history"]) > 4  # bins observed live were added

    clock.sleep(20.0)  # the controller is down for 20 s; the deployment keeps its target
    second = _controller(kb, clock, rt)
    assert second.resumed
    assert second.target == rt.target == stored["controller"]["target"]
    assert second.history == stored["controller"]["history"]
    assert second.policy_state == stored["policy"]
    assert second._plan == stored["controller"]["plan"]
    assert second._series.arrivals == pytest.approx(stored["controller"]["series"]["arrivals"])
    # The policy's clock goes on across the restart, downtime included: it still counts
    # from the first controller's start (1000 on the virtual clock).
    assert clock.now() - second._t0 == pytest.approx(clock.now() - 1000.0)
    assert stored["controller"]["saved_at"] - stored["controller"]["elapsed_s"] == 1000.0
    second.start(initial_replicas=1)  # ignored: the stored level wins
    assert rt.target == stored["controller"]["target"]
    res = second.run(30.0)
    assert res.resumed and res.decisions >= 5
    assert res.replicas_series[0].t == pytest.approx(0.0)  # steps are this run's own time


def test_a_stale_state_is_not_resumed(kb: KnowledgeBase) -> None:
    clock = VirtualClock(0.0)
    rt = FakeRuntime(clock, rate_rps=45.0)
    first = _controller(kb, clock, rt)
    first.start(initial_replicas=1)
    first.run(30.0)
    clock.sleep(61.0)
    cold = _controller(kb, clock, rt, resume_within_s=60.0)
    assert not cold.resumed and cold.history == [30.0] * 4 and cold.policy_state == {}
    assert _controller(kb, clock, rt, resume_within_s=120.0).resumed


def test_writer_keeps_what_failed_and_writes_it_in_order_later(kb: KnowledgeBase) -> None:
    flaky = FlakyKB(kb, failures=2)
    writer = StateWriter(flaky, "svc", "hpa")
    writer.put({"n": 1}, (1.0, {"replicas": {"a": 2}}))
    assert not writer.flush()
    writer.put({"n": 2}, None)
    writer.put({"n": 3}, (3.0, {"replicas": {"a": 3}}))
    assert not writer.flush()
    assert writer.stats().pending == 3  # the newest state and both events
    assert _events(kb) == []
    assert writer.flush()
    stats = writer.stats()
    assert (stats.failures, stats.pending, stats.events_written, stats.states_written) == (
        2,
        0,
        2,
        1,
    )
    assert [(e.t, e.action) for e in _events(kb)] == [
        (1.0, {"replicas": {"a": 2}}),
        (3.0, {"replicas": {"a": 3}}),
    ]
    with kb.snapshot() as s:
        assert s.scalars(select(m.PolicyState)).one().state == {"n": 3}


def test_controller_keeps_deciding_through_a_kb_outage_and_catches_up(
    kb: KnowledgeBase,
) -> None:
    clock = VirtualClock(0.0)
    rt = FakeRuntime(clock, rate_rps=45.0)
    flaky = FlakyKB(kb, failures=3)
    ctl = _controller(flaky, clock, rt)
    ctl.start(initial_replicas=1)
    res = ctl.run(60.0)  # no exception escapes the loop
    assert res.decisions >= 12
    assert res.kb_write_failures == 3 and res.unsaved_writes == 0
    events = _events(kb)
    assert events, "the scale-out was never recorded"
    acted = max(res.scale_actions, res.vertical_actions)
    assert acted <= len(events) <= res.scale_actions + res.vertical_actions
    assert [e.t for e in events] == sorted(e.t for e in events)
    with kb.snapshot() as s:
        row = s.scalars(select(m.PolicyState)).one()
    assert row.state["controller"]["target"] == rt.target
