"""How long a short request waits on an emulated device whose quota training exhausts.

A device is a CFS bandwidth group (a CPU quota refilled every period, on its cpuset)
holding its background app and the training job. When training exhausts the quota, an
app request waits behind the trainer for as long as the kernel's scheduler makes it
(throttling, the trainer's slice, the other groups on the CPU): measured on the dev host
a 2 ms burst took 16 and 26 ms at p99 next to a CPU hog in a 0.5- and 0.33-CPU group,
where the quota's throttling alone accounts for 2.5 and 3.4 ms. That wait is a property
of the device and the host's kernel, not of the app, so it is measured the way a device
is characterised, not modelled: :func:`burst_tail_ms` starts a group like the device's,
runs CPU hogs at the training intensity in it (its threads, at its nice) and a probe
that wakes at random times and burns ``burst_ms`` of CPU, and returns a percentile of
the probe's wake-to-done times. Neither the app nor the training job runs.
:func:`device_calibration` gives the calibration of a pool's devices, on the CPUs the
emulated pool gives them (:func:`~edgewise.retrain.devices.pack_cpus`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

from edgewise.config import DeviceSpec
from edgewise.isolation import CGroup, cgroups_writable, spawn_in_cgroup

__all__ = ["Calibration", "burst_tail_ms", "device_calibration"]

#: ``calibration(device, threads, nice, burst_ms, percentile) -> ms``.
Calibration = Callable[[DeviceSpec, int, int, float, float], float]

_PROBE = r"""
import json, random, sys, time
burst_ms, n, gap_s, seed = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
time.sleep(0.3)  # the hogs have started
out = []
for _ in range(n):
    time.sleep(rng.uniform(0.0, gap_s))
    t0, c0 = time.perf_counter(), time.thread_time()
    while (time.thread_time() - c0) * 1000.0 < burst_ms:
        pass
    out.append((time.perf_counter() - t0) * 1000.0)
print(json.dumps(out))
"""

_HOG = "import os, sys\nos.nice(int(sys.argv[1]))\nwhile True:\n    pass\n"


def burst_tail_ms(
    cpus: float,
    cpuset: str | None,
    period_us: int,
    threads: int,
    nice: int,
    burst_ms: float,
    percentile: float = 99.0,
    samples: int = 120,
    max_gap_s: float = 0.05,
    seed: int = 0,
) -> float:
    """The ``percentile`` of a ``burst_ms`` CPU burst's latency next to ``threads`` hogs.

    Parameters
    ----------
    cpus, cpuset, period_us
        The group: its quota in CPUs, the host CPUs it runs on and its CFS period.
    threads, nice
        The training intensity the hogs stand for.
    burst_ms : float
        CPU time of one request of the app.
    percentile : float
        In (0, 100).
    samples : int
        Bursts timed (at random gaps of up to ``max_gap_s``): about ``samples *
        max_gap_s / 2`` seconds.
    seed : int
        Seed of the gaps.

    Raises
    ------
    RuntimeError
        The probe printed nothing (it died).
    """
    group = CGroup(f"calibrate-{os.getpid()}", cpus=cpus, cpuset=cpuset, period_us=period_us)
    with group:
        for _ in range(max(0, threads)):
            spawn_in_cgroup([sys.executable, "-c", _HOG, str(int(nice))], group)
        cmd = [sys.executable, "-c", _PROBE, str(burst_ms), str(samples), str(max_gap_s)]
        probe = spawn_in_cgroup([*cmd, str(seed)], group, stdout=subprocess.PIPE, text=True)
        out, _ = probe.communicate(timeout=60 + samples * (max_gap_s + 0.5))
    if not out.strip():
        raise RuntimeError("the calibration probe printed nothing")
    times = sorted(json.loads(out))
    k = min(len(times) - 1, max(0, round(percentile / 100.0 * len(times)) - 1))
    return float(times[k])


def device_calibration(
    devices: Sequence[DeviceSpec], period_us: int | None = None
) -> Calibration | None:
    """The calibration of ``devices`` on the CPUs the emulated pool pins them to.

    ``None`` where cgroups are not writable (a quota cannot be emulated: the caller
    falls back to the throttling formula). Each answer is measured once and kept.
    """
    from edgewise.retrain.devices import DEVICE_PERIOD_US, pack_cpus

    if not cgroups_writable():
        return None
    period = period_us or DEVICE_PERIOD_US
    sets = dict(
        zip(
            (d.name for d in devices),
            pack_cpus([d.cpus for d in devices], sorted(os.sched_getaffinity(0))),
            strict=True,
        )
    )
    seen: dict[tuple[str, int, int, float, float], float] = {}

    def calibrate(
        device: DeviceSpec, threads: int, nice: int, burst_ms: float, percentile: float
    ) -> float:
        key = (device.name, threads, nice, round(burst_ms, 3), percentile)
        if key not in seen:
            seen[key] = burst_tail_ms(
                device.cpus, sets.get(device.name), period, threads, nice, burst_ms, percentile
            )
        return seen[key]

    return calibrate
