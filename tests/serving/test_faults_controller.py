"""Controller faults under load against a real Ray Serve deployment (digits_cnn, loopback).

One deployment serves both tests (starting Ray is the slow part):

- the controller process SIGKILLed mid-load and started again: the new one resumes the
  stored policy state (replica target, rate history, the policy's own state) instead of
  starting cold, and no request fails while no controller runs;
- the knowledge base locked (``BEGIN EXCLUSIVE`` from another connection) for seconds
  mid-run: the control loop keeps ticking, every request is served, and the state and
  the scaling event it could not write at the time are in the knowledge base afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from select import select as wait_readable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.rayenv import LOCAL_ONLY_ENV
from edgewise.serving.controller import LiveController
from edgewise.serving.live import sample_body
from edgewise.serving.loadgen import LoadResult, run_load
from edgewise.serving.policies import FlavorOption, make_policy
from edgewise.serving.policies.base import PolicyState, ScalingContext, ScalingDecision
from edgewise.serving.runtime import RuntimeConfig, ServingRuntime
from edgewise.stats import poisson_arrivals

pytestmark = pytest.mark.slow

MODEL = "digits_cnn"
APP = "ctlfaults"
FLAVOR = FlavorOption(
    "small", 0.5, capacity_rps=12.0, price_per_hour=0.01, max_replicas=2, service_ms_mean=5.0
)
PROC = Path(__file__).with_name("controller_proc.py")


@pytest.fixture(scope="module")
def runtime() -> Iterator[ServingRuntime]:
    cfg = RuntimeConfig(
        model=MODEL,
        app=APP,
        cpus_per_replica=FLAVOR.cpus,
        initial_replicas=1,
        max_replicas=FLAVOR.max_replicas,
        port=0,
        num_cpus=2,
    )
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(1, 180)
        yield rt


def _load_in_thread(rt: ServingRuntime, rates: np.ndarray, seed: int) -> tuple[Any, dict]:
    """Start an open-loop load of ``rates`` (one per second); join the thread for it."""
    body, ctype = sample_body(MODEL)
    out: dict[str, LoadResult] = {}
    arrivals = poisson_arrivals(rates, 1.0, seed)

    def go() -> None:
        out["load"] = run_load(rt.url + "/predict", arrivals, body, ctype, timeout_s=10.0)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, out


def _stored(kb: KnowledgeBase, key: str) -> dict[str, Any]:
    with kb.snapshot() as s:
        row = s.scalars(select(m.PolicyState).where(m.PolicyState.key == key)).one()
        return dict(row.state)


def _status_counts(load: LoadResult) -> dict[int, int]:
    return {int(c): int((load.status == c).sum()) for c in np.unique(load.status)}


def test_controller_killed_mid_load_resumes_its_state_and_no_request_fails(
    runtime: ServingRuntime, tmp_path: Path
) -> None:
    import ray

    runtime.scale_to(1)
    runtime.wait_for_replicas(1, 120)
    kb_url = f"sqlite:///{tmp_path}/kb.sqlite"
    kb = KnowledgeBase.open(kb_url)
    key = f"serve-{APP}"
    # HPA (never below one replica; its state keeps timed recommendations, so a resumed
    # run must carry the policy's clock on): the predictive policy scales a service that
    # nobody called yet to zero, and the cold start 503s before the fault is injected.
    params = {"period_s": 2.0, "stabilisation_s": 20.0, "metric_window_s": 4.0}
    history = [4.0] * 6
    cfg = {
        "gcs": ray.get_runtime_context().gcs_address,
        "app": APP,
        "kb": kb_url,
        "run_key": key,
        "policy": "hpa",
        "policy_params": params,
        "flavor": asdict(FLAVOR),
        "slo_ms": 250.0,
        "history": history,
        "history_bin_s": 4.0,
        "initial_replicas": 1,
        "seconds": 120.0,
    }
    # A process joining our loopback-only Ray instance must take 127.0.0.1 as its node IP
    # too, or it looks for a raylet on the host's routable address and waits forever.
    env = {**os.environ, LOCAL_ONLY_ENV: "0"}
    proc = subprocess.Popen(
        [sys.executable, str(PROC), json.dumps(cfg)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert wait_readable([proc.stdout], [], [], 90)[0], "the controller did not start"
        assert proc.stdout.readline().strip() == "ready"
        # A rising load, 4 -> 22 requests/s over 36 s; the controller is killed at 16 s.
        rates = np.linspace(4.0, 22.0, 36)
        thread, out = _load_in_thread(runtime, rates, seed=11)
        time.sleep(16.0)
        before = _stored(kb, key)
        proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    stored = _stored(kb, key)
    assert stored["controller"]["saved_at"] >= before["controller"]["saved_at"]
    time.sleep(3.0)  # no controller at all for a while; the deployment keeps serving
    ctl = LiveController(
        runtime,
        make_policy("hpa", **params),
        FLAVOR,
        slo_ms=250.0,
        startup_s=5.0,
        history_bin_s=4.0,
        history=history,
        kb=kb,
        run_key=key,
    )
    # Resumed, not cold: the very state the killed controller stored last.
    assert ctl.resumed
    assert ctl.target == stored["controller"]["target"] == runtime.snapshot()["target_replicas"]
    assert ctl.history == stored["controller"]["history"]
    assert len(ctl.history) > len(history)  # bins the killed controller observed live
    assert ctl.policy_state == stored["policy"]
    ctl.start(1)  # ignored: the stored target wins
    first_decision: list[float] = []
    stop = threading.Event()
    result: dict[str, Any] = {}

    def control() -> None:
        result["res"] = ctl.run(60.0, stop)

    controller = threading.Thread(target=control, daemon=True)
    controller.start()
    while not ctl.decisions and controller.is_alive():
        time.sleep(0.05)
    first_decision.append(time.monotonic())
    thread.join(timeout=90)
    stop.set()
    controller.join(timeout=30)
    load = out["load"]
    res = result["res"]
    down_s = first_decision[0] - killed_at
    t_kill = 16.0
    in_gap = (load.scheduled_s >= t_kill) & (load.scheduled_s < t_kill + down_s)
    print(
        f"\ncontroller SIGKILLed 16 s into a 4->22 rps load: no controller for {down_s:.1f} s "
        f"(kill to the resumed controller's first decision); resumed target "
        f"{stored['controller']['target']} replicas, {len(ctl.history)} history bins, policy "
        f"state keys {sorted(stored['policy'])}; {int(in_gap.sum())} requests in the gap, "
        f"{load.n} in all, status counts {_status_counts(load)}, requests lost "
        f"{int((load.status != 200).sum())}; after the restart {res.decisions} decisions, "
        f"{res.scale_actions} scale actions, final target {ctl.target}",
    )
    assert res.resumed and res.decisions >= 3 and res.unsaved_writes == 0
    assert bool((load.status == 200).all()), _status_counts(load)
    assert _stored(kb, key)["controller"]["saved_at"] > stored["controller"]["saved_at"]


@dataclass
class ScriptedPolicy:
    """Two replicas from ``scale_at_s`` on; its state counts its decisions."""

    scale_at_s: float
    period_s: float = 1.0
    name: str = "scripted"

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        n = 2 if ctx.now >= self.scale_at_s else 1
        ticks = int(ctx.policy_state.get("ticks", 0)) + 1
        return ScalingDecision({"small": n}, {"small": 0.5}, "script"), {"ticks": ticks}


def test_kb_locked_mid_run_the_loop_keeps_ticking_and_catches_up(
    runtime: ServingRuntime, tmp_path: Path
) -> None:
    runtime.scale_to(1)
    runtime.wait_for_replicas(1, 120)
    db = tmp_path / "kb.sqlite"
    kb = KnowledgeBase.open(f"sqlite:///{db}")
    lock_from, lock_s, scale_at = 5.0, 6.0, 8.0
    ctl = LiveController(
        runtime,
        ScriptedPolicy(scale_at_s=scale_at),
        FLAVOR,
        slo_ms=250.0,
        kb=kb,
        run_key="locked",
    )
    ctl.start(1)
    released: list[datetime] = []

    def hold_lock() -> None:
        time.sleep(lock_from)
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        time.sleep(lock_s)
        released.append(datetime.now(UTC))  # before the COMMIT: no write can precede it
        con.execute("COMMIT")
        con.close()

    thread, out = _load_in_thread(runtime, np.full(18, 10.0), seed=5)
    locker = threading.Thread(target=hold_lock, daemon=True)
    locker.start()
    res = ctl.run(20.0)  # raises if anything escapes the loop
    thread.join(timeout=60)
    locker.join(timeout=10)
    load = out["load"]
    ticks_in_lock = [s for s in res.replicas_series if lock_from < s.t < lock_from + lock_s]
    with kb.snapshot() as s:
        events = s.scalars(select(m.ScalingEvent).where(m.ScalingEvent.run_key == "locked")).all()
        state = s.scalars(select(m.PolicyState).where(m.PolicyState.key == "locked")).one()
    late = [e for e in events if lock_from <= e.t < lock_from + lock_s]
    stats = ctl.writer.stats() if ctl.writer is not None else None
    print(
        f"\nknowledge base locked (BEGIN EXCLUSIVE) {lock_s:g} s from {lock_from:g} s of a "
        f"20 s run at 10 rps: {len(ticks_in_lock)} decisions taken during the lock, "
        f"{len(late)} scaling event(s) from inside it written after the release "
        f"(longest wait of a record {stats.max_lag_s if stats else float('nan'):.1f} s, "
        f"{res.kb_write_failures} failed writes, {res.unsaved_writes} unsaved); "
        f"{load.n} requests, status counts {_status_counts(load)}, requests lost "
        f"{int((load.status != 200).sum())}",
    )
    assert len(ticks_in_lock) >= lock_s - 2  # the loop kept deciding, once a second
    assert bool((load.status == 200).all()), _status_counts(load)
    assert res.unsaved_writes == 0
    assert late and released and all(e.created_at >= released[0] for e in late)
    assert state.state["policy"]["ticks"] == res.decisions  # the last state, caught up
    assert stats is not None and stats.max_lag_s >= lock_s - 2.0
