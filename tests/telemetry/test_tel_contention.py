"""The contention meter: shares of the host's CPU time that went to other tenants."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from edgewise.telemetry.contention import Contention, ContentionMeter


def test_too_busy_names_the_reason_and_its_limit() -> None:
    assert Contention(10.0, 0.1, 0.0).too_busy() is None
    assert Contention(10.0, 0.5, 0.0).too_busy() == (
        "other processes used 50% of the host's CPUs (limit 30%)"
    )
    assert Contention(10.0, 0.0, 0.2).too_busy() == "CPU steal 20% of the host (limit 10%)"
    assert Contention(10.0, 0.5, 0.0).too_busy(max_foreign=0.6) is None


def test_meter_counts_our_own_work_as_ours() -> None:
    with ContentionMeter() as meter:
        t0 = time.process_time()
        while time.process_time() - t0 < 0.5:  # half a second of our own CPU
            pass
    got = meter.result
    assert got is not None
    assert got.seconds > 0.3
    assert 0.0 <= got.foreign_frac <= 1.0 and 0.0 <= got.steal_frac <= 1.0


_BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"


def test_a_child_that_exits_inside_the_window_still_counts_as_ours() -> None:
    with ContentionMeter(interval_s=0.1) as meter:
        subprocess.run([sys.executable, "-c", _BURN], check=True)  # started, burned, reaped
    assert meter.own_cpu_s() >= 0.8


def test_an_orphan_of_our_tree_still_counts_as_ours(tmp_path: Path) -> None:
    # The middle process exits while its child burns: the child, re-parented out of our
    # tree (as Ray's workers are when the raylet stops first), burns on, then says so.
    done = tmp_path / "done"
    burn = _BURN + f"open({str(done)!r}, 'w').close()\n"
    orphan = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {burn!r}])\n"
        "time.sleep(0.4)\n"
    )
    with ContentionMeter(interval_s=0.1) as meter:
        subprocess.run([sys.executable, "-c", orphan], check=True)
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert done.exists()
    # ~0.3 s of its second before the middle process exited, the rest after
    assert meter.own_cpu_s() >= 0.8
