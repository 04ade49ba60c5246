"""One run of a campaign: stress mix, warm-up, the target's window, the achieved vector.

Effectful: starts stress-ng (and the GPU stressor), drives the target, reads
``/proc/stat``. :func:`placement_cpus` is the pure decision of where the stressors go.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgewise.config import RESOURCES
from edgewise.interference.calibration import Calibration
from edgewise.interference.campaign.config import Confine
from edgewise.interference.gpu import GPU_RESOURCES
from edgewise.interference.stressors import Achieved, HostCaps, StressMix
from edgewise.interference.target import TargetResult


def _host_cpu_busy() -> tuple[float, float]:
    """(busy seconds, total seconds) summed over CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [float(v) for v in parts[:8]]
    hz = float(os.sysconf("SC_CLK_TCK"))
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / hz, sum(vals) / hz


@dataclass(frozen=True)
class Measured:
    """What one run measured: requested and achieved vectors, latency, foreign load."""

    design: dict[str, float]
    achieved: dict[str, float]
    latency: dict[str, float]
    foreign: float
    raw: dict[str, float]


Placement = Literal["same", "split", "any"]


def placement_cpus(
    placement: Placement, target_cpus: Sequence[int], allowed: Sequence[int]
) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """``(stress_cpus, cpu_stress_cpus)`` for a placement of the stressors.

    ``same``: every stressor on the target's CPUs; ``split``: the CPU stressor there and
    the others on the remaining ``allowed`` CPUs (the target's own on a one-CPU host), as
    co-located neighbours would run; ``any``: unconfined.
    """
    if placement == "any":
        return None, None
    target = tuple(target_cpus)
    if placement == "same":
        return target, None
    others = tuple(c for c in allowed if c not in target) or target
    return others, target


def measure_point(
    target: Any,
    design: Mapping[str, float],
    *,
    seconds: float,
    warmup_s: float,
    seed: int,
    stress_cpus: Sequence[int] | None,
    calibration: Calibration | None,
    caps: HostCaps,
    confine: Confine = "taskset",
    cpu_stress_cpus: Sequence[int] | None = None,
) -> Measured:
    """One run: stress mix (if any), warm-up, open-loop target window, achieved vector.

    ``stress_cpus`` confines the host stressors, through stress-ng's ``--taskset`` or
    (``confine='cgroup'``) a :class:`~edgewise.isolation.CGroup` with that cpuset;
    ``cpu_stress_cpus``, when given, places the CPU stressor apart from the others (on
    the target's own CPUs, say, while memory, cache, disk and network stressors run on
    the host's other CPUs). A ``gpu`` entry of ``design`` starts the duty-cycled GPU
    stressor beside them.
    """
    host = {k: v for k, v in design.items() if k in RESOURCES and v > 0.005}
    groups: list[tuple[dict[str, float], Sequence[int] | None]] = []
    if cpu_stress_cpus is not None and "cpu" in host:
        groups.append(({"cpu": host.pop("cpu")}, cpu_stress_cpus))
    if host:
        groups.append((host, stress_cpus))
    gpu_duty = float(design.get("gpu", 0.0))
    with contextlib.ExitStack() as stack:
        mixes: list[StressMix] = []
        for i, (part, cpus) in enumerate(groups):
            cg = None
            if confine == "cgroup" and cpus:
                from edgewise.isolation import CGroup

                cg = stack.enter_context(CGroup(f"stress{i}", cpuset=",".join(map(str, cpus))))
            mixes.append(
                StressMix(
                    part,
                    seconds=seconds + warmup_s,
                    cpus=cpus,
                    caps=caps,
                    calibration=calibration,
                    cgroup=cg,
                )
            )
        gpu = None
        if gpu_duty > 0.005:
            from edgewise.interference.gpu import GpuStress

            gpu = stack.enter_context(GpuStress(gpu_duty))
        for mix in mixes:
            stack.callback(mix.close)
            stack.callback(mix.stop)
            mix.start()
        if mixes or gpu is not None:
            time.sleep(warmup_s)
        for mix in mixes:
            mix.check_alive()
            mix.begin_window()
        if gpu is not None:
            gpu.begin_window()
        gpu_before = _gpu_now() if "gpu" in design else {}
        b0, t0 = _host_cpu_busy()
        result: TargetResult = target.measure(seconds, seed)
        b1, t1 = _host_cpu_busy()
        gpu_ach = gpu.end_window() if gpu is not None else gpu_before
        ach = Achieved(dict.fromkeys(RESOURCES, 0.0), {}, result.wall_s)
        for mix in mixes:
            mix.check_alive()
            part_ach = mix.finish(mix.end_window())
            ach = Achieved(
                {r: ach.intensity[r] + (part_ach.intensity.get(r, 0.0) or 0.0) for r in RESOURCES},
                {**ach.raw, **part_ach.raw},
                ach.wall_s,
            )
    wall = max(1e-6, result.wall_s)
    ncpu = caps.ncpus
    ours = result.cpu_s / wall + sum(ach.raw.get(r, 0.0) for r in ("cpu", "llc", "net", "membw"))
    busy = (b1 - b0) / max(1e-6, (t1 - t0) / ncpu) if t1 > t0 else 0.0
    foreign = max(0.0, busy - ours) / ncpu
    achieved = {r: round(float(ach.intensity.get(r, 0.0)), 5) for r in RESOURCES}
    if "gpu" in design:
        for k in GPU_RESOURCES:
            achieved[k] = round(float(gpu_ach.get(k, 0.0)), 5)
    achieved["target_cpu"] = round(result.cpu_fraction / ncpu, 5)
    return Measured(dict(design), achieved, result.summary(), foreign, dict(ach.raw))


def _gpu_now() -> dict[str, float]:
    from edgewise.interference.gpu import gpu_features

    return gpu_features()
