"""The contention meter: shares of the host's CPU time that went to other tenants."""

from __future__ import annotations

import time

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


def test_a_child_that_exits_inside_the_window_still_counts_as_ours() -> None:
    import subprocess
    import sys

    import psutil

    from edgewise.telemetry.contention import _own_cpu_s

    me = psutil.Process()
    before = _own_cpu_s(me)
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True)  # started, burned, reaped
    assert _own_cpu_s(me) - before >= 0.4
