"""Stress mixes as stress-ng command lines: host peaks, intensity checks, the knob map.

Pure apart from paths: :func:`plan_stressors` maps a normalised intensity per resource
(and an optional per-host :class:`~edgewise.interference.calibration.Calibration`) to one
stress-ng command line per resource plus a duty cycle; :class:`HostCaps` holds the
host's peak activity that turns intensities into absolute knobs. Running the commands
is :mod:`edgewise.interference.stressors`'s part.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from edgewise.config import RESOURCES
from edgewise.errors import EnvironmentProblem, SpecError

if TYPE_CHECKING:
    from edgewise.interference.calibration import Calibration

STRESS_NG = "stress-ng"
DUTY_RESOURCES: frozenset[str] = frozenset({"llc", "disk", "net"})
_MIN_INTENSITY = 0.005


def require_stress_ng() -> str:
    """Path of the stress-ng binary; EnvironmentProblem naming the package if missing."""
    path = shutil.which(STRESS_NG)
    if path is None:
        raise EnvironmentProblem(
            "stress-ng not found on PATH: install the 'stress-ng' package (apt-get install stress-ng)"
        )
    return path


def validate_intensity(intensity: Mapping[str, float]) -> dict[str, float]:
    """Check names and the [0, 1] range; one-line SpecError naming the resource."""
    out: dict[str, float] = {}
    for name, value in intensity.items():
        if name not in RESOURCES:
            raise SpecError(f"unknown resource {name!r}: expected one of {', '.join(RESOURCES)}")
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise SpecError(f"intensity for {name} is {v:g}: must lie in [0, 1]")
        out[name] = v
    return out


@dataclass(frozen=True)
class HostCaps:
    """Peak activity of each resource on this host (the denominators of 'achieved').

    ``cpu`` is in CPU-seconds/s for the stressor's CPU scope; ``membw`` in MB/s per
    direction for one memrate instance; ``llc`` and ``net`` in CPU-seconds/s of one
    instance (capped by the CPU scope); ``disk`` in bytes/s; ``mem`` in bytes (the
    capacity stressor's cap). ``net_cpu`` defaults to one CPU (a loopback client and
    server ping-pong, so together they keep about one CPU busy); :func:`probe_caps`
    measures it.
    """

    ncpus: int
    membw_mbs: float = 20000.0
    llc_cpu: float = 1.0
    net_cpu: float = 1.0
    disk_bps: float = 1.5e9
    mem_bytes: float = 0.0

    @staticmethod
    def default(ncpus: int | None = None, mem_cap_fraction: float = 0.25) -> HostCaps:
        """Caps from the OS only (no probing): memory cap is a fraction of RAM."""
        n = ncpus or len(os.sched_getaffinity(0))
        return HostCaps(ncpus=n, mem_bytes=mem_cap_fraction * psutil.virtual_memory().total)

    def peak(self, resource: str, scope_cpus: int) -> float:
        """Peak activity for ``resource`` given the number of CPUs the stressors may use."""
        return {
            "cpu": float(scope_cpus),
            "membw": self.membw_mbs,
            "llc": min(self.llc_cpu, float(scope_cpus)),
            "disk": self.disk_bps,
            "net": min(self.net_cpu, float(scope_cpus)),
            "mem": self.mem_bytes,
        }[resource]


@dataclass(frozen=True)
class StressorPlan:
    """One stress-ng command for one resource, and its SIGSTOP/SIGCONT duty cycle."""

    resource: str
    requested: float
    knob: float
    argv: tuple[str, ...]
    duty: float = 1.0


def plan_stressors(
    intensity: Mapping[str, float],
    caps: HostCaps,
    *,
    seconds: float,
    workdir: Path,
    cpus: Sequence[int] | None = None,
    calibration: Calibration | None = None,
    net_port: int = 22000,
    yaml_dir: Path | None = None,
    taskset: bool = True,
) -> list[StressorPlan]:
    """Map requested intensities to stress-ng command lines (pure apart from paths).

    Parameters
    ----------
    intensity
        Resource name -> requested intensity in [0, 1]; zero entries start nothing.
    caps
        Host peaks used to turn intensities into absolute knobs (MB/s, bytes).
    seconds
        stress-ng ``--timeout`` (a safety net: the driver stops it earlier).
    workdir
        Directory for the disk stressor's files.
    cpus
        CPUs the stressors may run on; None = every CPU. Sets the CPU stressor's
        instance count and, with ``taskset``, stress-ng's ``--taskset``.
    calibration
        Per-host curves mapping a requested intensity to the knob that achieves it.
    taskset
        Confine with ``--taskset`` (False when a cgroup's cpuset confines instead).
    """
    req = validate_intensity(intensity)
    scope = len(cpus) if cpus else caps.ncpus
    yaml_dir = yaml_dir or workdir
    common: list[str] = [
        STRESS_NG,
        "--timeout",
        f"{max(1, int(seconds + 0.999))}s",
        "--metrics-brief",
        "--temp-path",
        str(workdir),
    ]
    if cpus and taskset:
        common += ["--taskset", ",".join(str(c) for c in cpus)]
    plans: list[StressorPlan] = []
    for res in RESOURCES:
        r = req.get(res, 0.0)
        if r < _MIN_INTENSITY:
            continue
        k = calibration.knob(res, r) if calibration is not None else r
        k = min(1.0, max(_MIN_INTENSITY, k))
        out_yaml = ["--yaml", str(yaml_dir / f"{res}.yaml")]
        duty = 1.0
        if res == "cpu":
            load = max(1, min(100, round(100 * k)))
            args = ["--cpu", str(scope), "--cpu-load", str(load)]
        elif res == "membw":
            mbs = max(1, round(k * caps.membw_mbs))
            args = [
                "--memrate",
                "1",
                "--memrate-bytes",
                "64M",
                "--memrate-rd-mbs",
                str(mbs),
                "--memrate-wr-mbs",
                str(mbs),
            ]
        elif res == "llc":
            args = ["--matrix-3d", "1", "--matrix-3d-size", "96"]
            duty = k
        elif res == "disk":
            args = ["--hdd", "1", "--hdd-bytes", "64M", "--hdd-write-size", "64K"]
            duty = k
        elif res == "net":
            args = ["--sock", "1", "--sock-port", str(net_port), "--sock-domain", "ipv4"]
            duty = k
        else:  # mem
            nbytes = max(4 << 20, int(k * caps.mem_bytes))
            args = ["--vm", "1", "--vm-bytes", f"{nbytes // 1024}K", "--vm-hang", "0"]
        plans.append(
            StressorPlan(
                res, r, k, tuple(common + args + out_yaml), duty=1.0 if duty >= 0.995 else duty
            )
        )
    return plans
