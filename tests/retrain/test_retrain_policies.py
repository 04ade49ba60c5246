"""Pure pieces added for load-aware re-planning, the drift trigger and KB records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgewise.config import DeviceSpec
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    plan_exact,
)
from edgewise.retrain import drift, records
from edgewise.retrain.background import LogTail, window_stats
from edgewise.retrain.loadaware import (
    BackgroundObservation,
    LoadContext,
    LoadState,
    adjusted_profiles,
    decide,
)

LIGHT = Intensity(1, 19, 300.0, bg_latency_ms=8.0)
HEAVY = Intensity(1, 0, 400.0, bg_latency_ms=15.0)
PROFILES = {
    "a": DeviceProfile("a", (HEAVY, LIGHT), 5.0),
    "b": DeviceProfile("b", (Intensity(1, 0, 200.0, 1.0),), 1.0),
}


def make_ctx(**kw: object) -> LoadContext:
    base: dict[str, object] = {
        "now": 100.0,
        "observations": {"a": BackgroundObservation(50.0, 9.0, 100)},
        "deadlines_ms": {"a": 20.0},
        "current": {"a": HEAVY, "b": PROFILES["b"].intensities[0]},
        "profiles": PROFILES,
    }
    base.update(kw)
    return LoadContext(**base)  # type: ignore[arg-type]


def test_overload_bans_current_and_heavier_then_relief_lifts() -> None:
    hot = make_ctx(observations={"a": BackgroundObservation(200.0, 40.0, 400)})
    d, st = decide(hot, LoadState())
    assert d.replan and "a" in st.bans and st.bans["a"][0] == {HEAVY.label}
    assert st.bans["a"][1] == 200.0 and st.last_replan == 100.0
    adj = adjusted_profiles(PROFILES, st)
    assert adj["a"].intensities[0].bg_latency_ms == float("inf")
    devs = [DeviceState("a", 1.0, 2048, 20.0), DeviceState("b", 0.5, 2048, None)]
    c = RetrainConstraints(global_batch=64)
    assert plan_exact(devs, PROFILES, c).intensities["a"] == HEAVY
    assert plan_exact(devs, adj, c).intensities["a"] == LIGHT  # lighter, still in
    # inside the cooldown nothing happens, even with relief
    calm = make_ctx(now=101.0, observations={"a": BackgroundObservation(20.0, 3.0, 40)})
    assert not decide(calm, st)[0].replan
    d2, st2 = decide(make_ctx(now=105.0, current={"a": LIGHT}, observations=calm.observations), st)
    assert d2.replan and "a" not in st2.bans and "holds again" in d2.reasons[0]


def test_new_generation_keeps_feasible_bans_and_drops_those_that_leave_no_device() -> None:
    from edgewise.errors import InfeasibleError
    from edgewise.retrain.loadaware import plan_with_bans

    c = RetrainConstraints(global_batch=64, deadline_margin=0.1)
    only_a = [DeviceState("a", 1.0, 2048, 20.0)]
    some = LoadState({"a": (frozenset({HEAVY.label}), 50.0)})
    plan, st, why = plan_with_bans(plan_exact, only_a, PROFILES, some, c)
    assert plan.intensities["a"] == LIGHT and st == some and why is None  # a ban that leaves a plan
    every = LoadState({"a": (frozenset({HEAVY.label, LIGHT.label}), 50.0)})
    plan, st, why = plan_with_bans(plan_exact, only_a, PROFILES, every, c)
    assert plan.intensities["a"] == HEAVY and not st.bans and plan.shares == {"a": 64}
    assert why is not None and "bans dropped" in why and "no device" in why
    # what the profiles alone cannot plan still raises
    late = [DeviceState("a", 1.0, 2048, 5.0)]
    with pytest.raises(InfeasibleError):
        plan_with_bans(plan_exact, late, PROFILES, LoadState(), c)


def test_no_replan_when_fine_or_too_few_requests() -> None:
    assert not decide(make_ctx(), LoadState())[0].replan
    few = make_ctx(observations={"a": BackgroundObservation(2.0, 90.0, 2)})
    assert not decide(few, LoadState())[0].replan
    no_deadline = make_ctx(observations={"b": BackgroundObservation(9.0, 90.0, 90)})
    assert not decide(no_deadline, LoadState())[0].replan


def test_log_tail_reads_incrementally(tmp_path: Path) -> None:
    log = tmp_path / "bg.log"
    log.write_text("1.0 5 10\n2.0 6 10\n3.0 7")  # last line not complete yet
    tail = LogTail(log)
    assert tail.poll().shape == (2, 3)
    with open(log, "a") as fh:
        fh.write(" 10\n4.0 50 10\n")
    arr = tail.poll()
    assert arr.shape == (4, 3)
    rate, p, n = window_stats(arr, now=5.0, window_s=4.0, percentile=100.0, lag_s=0.5)
    assert n == 4 and rate == 1.0 and p == 50.0


def test_ks_statistic_known_values() -> None:
    a = np.array([1.0, 2.0, 3.0])
    assert drift.ks_statistic(a, a) == 0.0
    assert drift.ks_statistic(a, a + 10.0) == 1.0
    # empirical CDFs at 2 (2/3 against 0) are furthest apart
    assert drift.ks_statistic(a, np.array([2.5])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        drift.ks_statistic(a, np.array([]))


def test_drift_decision_directions() -> None:
    assert drift.decide("accuracy", 0.5, 0.9).update
    assert not drift.decide("accuracy", 0.95, 0.9).update
    assert drift.decide("ks", 0.5).update and not drift.decide("ks", 0.05).update
    assert "0.500" in drift.decide("ks", 0.5).reason
    with pytest.raises(ValueError):
        drift.decide("psi", 0.1)  # type: ignore[arg-type]


def _steps() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for step in (1, 2, 3):
        for dev, dt in (("a", 0.1), ("b", 0.12)):
            t0 = 10.0 + step * 0.2
            out.append(
                {
                    "device": dev,
                    "step": step,
                    "t0": t0,
                    "t": t0 + dt,
                    "share": 32,
                    "generation": 0 if step < 3 else 1,
                }
            )
    return out


def test_job_metrics_contract_and_drift() -> None:
    devs = [DeviceState("a", 1.0, 2048, 20.0), DeviceState("b", 0.5, 2048, None)]
    p = plan_exact(devs, PROFILES, RetrainConstraints(global_batch=64))
    fail = [{"generation": 0, "devices": ["b"], "t_kill": 10.5, "t_detect": 11.0, "t": 10.5}]
    m = records.job_metrics(
        _steps(),
        fail,
        accuracy_before=0.4,
        accuracy_after=0.9,
        background={"a": {"p50_ms": 1, "p99_ms": 2, "deadline_ms": 20, "miss_rate": 0}},
        plan=p,
    )
    assert set(m) >= {
        "accuracy_before",
        "accuracy_after",
        "train_s",
        "timeline",
        "failure",
        "background",
        "plan",
    }
    first = m["timeline"][0]
    assert first["device"] == "a" and first["step"] == 1 and first["share"] == 32
    assert first["t_start"] == 0.0 and first["t_end"] == pytest.approx(0.1)
    assert m["failure"]["device"] == "b" and m["failure"]["t_detect"] == pytest.approx(0.8)
    assert m["failure"]["t_resume"] == pytest.approx(0.5)  # first step end after resume
    ratio, drifted = records.measured_drift(_steps(), p)
    assert ratio == pytest.approx(0.12 / p.step_time_s) and drifted == (abs(ratio - 1) > 0.2)


def test_kb_records_roundtrip(tmp_path: Path) -> None:
    from edgewise.kb import KnowledgeBase
    from edgewise.kb import models as m

    kb = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    specs = [DeviceSpec(name="a", cpus=1.0)]
    key = records.pool_key(specs, "digits_cnn", "digits", 128)
    assert key == records.pool_key(specs, "digits_cnn", "digits", 128)
    assert key != records.pool_key(specs, "digits_cnn", "digits", 64)
    assert records.load_profiles(kb, key) is None
    records.save_profiles(kb, key, PROFILES)
    assert records.load_profiles(kb, key) == PROFILES
    records.save_profiles(kb, key, PROFILES, stale=True)
    assert records.load_profiles(kb, key) is None  # stale: the next run re-profiles
    job = records.start_job(kb, "j", "digits_cnn", {"steps": 3})
    records.record_checkpoint(kb, job, 5, tmp_path / "step-5.pt")
    records.finish_job(kb, job, "done", {"train_s": 1.5})
    with kb.snapshot() as s:
        row = s.get(m.TrainingJob, job)
        assert row is not None and row.status == "done" and row.metrics["train_s"] == 1.5
        assert [c.step for c in row.checkpoints] == [5]


def test_pack_cpus_spreads_devices_and_gives_up_cleanly() -> None:
    from edgewise.retrain.devices import pack_cpus

    assert pack_cpus([1.0, 0.5, 0.33], [0, 1]) == ["0", "1", "1"]
    assert pack_cpus([0.5, 0.5, 0.5], [0, 1]) == ["0", "1", "0"]
    assert pack_cpus([1.0, 1.0, 0.5], [0, 1]) == [None, None, None]
    assert pack_cpus([2.0], [0, 1, 2]) == [None]


def test_late_join_moves_child_into_its_device_group(tmp_path: Path) -> None:
    """A late-joining child asks the pool; the pool moves it with CGroup.add_pid."""
    import subprocess
    import sys

    from edgewise.retrain.devices import EmulatedPool

    code = (
        "import os, time; from edgewise.retrain.devices import join_device_group; "
        "print(join_device_group(20.0), flush=True); time.sleep(30)"
    )
    with EmulatedPool([DeviceSpec(name="a", cpus=0.5)], tmp_path) as pool:
        proc = pool.spawn("a", [sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"True"
        assert proc.pid in pool.groups["a"].pids()
        pid = proc.pid
    assert proc.poll() is not None and pid not in pool.pids()
