"""The device calibration on real cgroups: a short burst's tail next to CPU hogs.

Listed ``alone`` in ``tests/conftest.py``: it times bursts on a CPU and runs CPU hogs, so
it runs after the parallel phase, beside no test that judges latency.
"""

from __future__ import annotations

import pytest

from edgewise.config import DeviceSpec
from edgewise.isolation import cgroups_writable
from edgewise.retrain.calibrate import burst_tail_ms, device_calibration

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not cgroups_writable(), reason="needs writable cgroups"),
]


def test_a_burst_is_not_slowed_alone_and_waits_at_least_the_throttle_beside_training() -> None:
    alone = burst_tail_ms(0.5, "0", 5000, threads=0, nice=0, burst_ms=1.0, samples=60)
    beside = burst_tail_ms(0.5, "0", 5000, threads=1, nice=0, burst_ms=1.0, samples=60)
    assert alone < 2.0  # a quota the burst does not exhaust does not stretch it
    assert beside >= 1.0 + 2.5  # at least the rest of the 5 ms period the group is throttled


def test_a_pools_calibration_measures_each_question_once() -> None:
    calibrate = device_calibration([DeviceSpec(name="pi", cpus=0.5, memory_mb=1024)])
    assert calibrate is not None
    first = calibrate(DeviceSpec(name="pi", cpus=0.5, memory_mb=1024), 0, 0, 1.0, 99.0)
    again = calibrate(DeviceSpec(name="pi", cpus=0.5, memory_mb=1024), 0, 0, 1.0, 99.0)
    assert first == again and first > 0.0
