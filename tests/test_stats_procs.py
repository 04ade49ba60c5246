"""The shared core: arrivals, latency summaries, conformal quantiles, ports, the threads rule."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from edgewise import procs, stats
from edgewise.isolation import threads_for


def test_poisson_times_by_count_and_by_duration() -> None:
    t = stats.poisson_times(50.0, 3, n=20_000)
    assert np.all(np.diff(t) > 0)
    assert t.size / t[-1] == pytest.approx(50.0, rel=0.03)
    assert np.array_equal(t, stats.poisson_times(50.0, 3, n=20_000))
    u = stats.poisson_times(50.0, 1, seconds=20.0)
    assert np.all(np.diff(u) >= 0) and u[-1] < 20 and abs(u.size - 1000) < 150
    with pytest.raises(ValueError):
        stats.poisson_times(0.0, 1, n=5)
    with pytest.raises(ValueError):
        stats.poisson_times(1.0, 1)


def test_binned_arrivals_follow_the_rate() -> None:
    rate = np.array([0.0, 100.0, 10.0])
    t = stats.poisson_arrivals(rate, 10.0, seed=1)
    counts = stats.arrival_counts(t, 10.0, 3)
    assert counts[0] == 0 and abs(counts[1] - 1000) < 150 and abs(counts[2] - 100) < 40
    assert stats.expected_arrivals(rate, 10.0) == pytest.approx(1100.0)
    with pytest.raises(ValueError):
        stats.poisson_arrivals(np.array([-1.0]), 1.0, seed=0)


def test_latency_summary_percentiles_and_empty_input() -> None:
    s = stats.latency_summary(np.arange(1.0, 101.0))
    assert s["n"] == 100
    assert s["p50"] == pytest.approx(50.5)
    assert s["p95"] == pytest.approx(95.05)
    assert s["mean"] == pytest.approx(50.5)
    assert s["p50"] <= s["p95"] <= s["p99"]
    empty = stats.summarise_latencies([])
    assert empty.n == 0 and np.isnan(empty.p99)


def test_conformal_quantile_is_finite_sample_corrected() -> None:
    scores = np.arange(1.0, 10.0)  # n = 9
    assert stats.conformal_quantile(scores, 0.9) == 9.0  # ceil(10 * 0.9) = 9th
    assert stats.conformal_quantile(scores, 0.5) == 5.0
    assert stats.conformal_quantile(scores, 0.1) == 1.0
    with pytest.raises(ValueError):
        stats.conformal_quantile(np.array([]), 0.9)


def test_one_threads_rule_for_profiles_and_replicas() -> None:
    from edgewise.serving import profiles
    from edgewise.serving.runtime import replica

    assert profiles.threads_for is threads_for
    assert replica.threads_for is threads_for
    assert [threads_for(c) for c in (0.25, 0.5, 1.0, 1.4, 1.5, 2.0, 2.5, 4.0)] == [
        1, 1, 1, 1, 2, 2, 3, 4,
    ]  # fmt: skip
    assert threads_for(8.0, max_threads=2) == 2
    with pytest.raises(ValueError):
        threads_for(0.0)


def test_free_port_is_on_loopback_and_bindable() -> None:
    import socket

    port = procs.free_port()
    with socket.socket() as s:
        s.bind((procs.LOOPBACK, port))


def test_free_port_avoids_the_ports_the_kernel_hands_out() -> None:
    import socket

    lo, hi = procs.PORT_BAND
    ports = {procs.free_port() for _ in range(20)}
    assert all(lo <= p < hi for p in ports), ports
    assert len(ports) > 1, "the same port every time: two callers would collide"
    with socket.socket() as held:  # a taken port is never offered
        held.bind((procs.LOOPBACK, procs.free_port()))
        taken = held.getsockname()[1]
        assert taken not in {procs.free_port() for _ in range(50)}


def test_stop_group_stops_the_child_and_its_children() -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        rc = procs.stop_group(proc, grace_s=5.0)
        assert rc is not None
        out = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True)
        assert out.stdout.strip() == ""
    finally:
        procs.kill_group(proc, 9)


def test_kill_group_reaches_what_an_exited_leader_left_behind() -> None:
    code = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    proc.wait(timeout=30)  # the leader is gone, its child lives on in the group
    assert subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 0
    procs.kill_group(proc, 9)
    for _ in range(100):
        if subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode != 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the orphaned group member survived kill_group")
