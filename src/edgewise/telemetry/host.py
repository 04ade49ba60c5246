"""Host-wide sample: a thin reader over ``/proc`` built on :mod:`.procfs` parsers.

:class:`HostSample` holds cumulative counters (CPU ticks, bytes, context switches,
PSI stall time) and gauges (memory, PSI averages, load) at one instant;
:func:`edgewise.telemetry.rates.rates` turns two of them into utilisations and
bandwidths.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgewise.telemetry.procfs import (
    CpuTimes,
    Pressure,
    parse_diskstats,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    parse_pressure,
    parse_stat,
    sum_disks,
    sum_interfaces,
)

__all__ = ["HostSample", "read_host"]


@dataclass(frozen=True)
class HostSample:
    """Host counters and gauges at time ``t``; ``None`` where the kernel lacks a file.

    Attributes
    ----------
    t
        Sample time in seconds (monotonic, or the sampler's clock).
    ncpu
        Online CPUs (``cpuN`` lines in ``/proc/stat``).
    cpu
        Cumulative CPU ticks since boot (user, nice, system, idle, iowait, irq,
        softirq, steal).
    mem_total_bytes, mem_available_bytes
        From ``/proc/meminfo``; used = total - available.
    disk_read_bytes, disk_write_bytes
        Cumulative bytes of the physical disks.
    net_rx_bytes, net_tx_bytes
        Cumulative bytes of all interfaces but loopback.
    ctxt
        Cumulative context switches.
    procs_running, procs_blocked
        Instantaneous counts from ``/proc/stat``.
    psi_cpu, psi_memory, psi_io
        ``some`` pressure (avg10 percent, cumulative stall µs), or ``None`` without PSI.
    load1, load5, load15
        Load averages.
    """

    t: float
    ncpu: int
    cpu: CpuTimes
    mem_total_bytes: int
    mem_available_bytes: int
    disk_read_bytes: int
    disk_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int
    ctxt: int
    procs_running: int
    procs_blocked: int
    psi_cpu: Pressure | None
    psi_memory: Pressure | None
    psi_io: Pressure | None
    load1: float
    load5: float
    load15: float

    @property
    def mem_used_bytes(self) -> int:
        """Memory in use: total minus available (what ``free`` calls used + buffers)."""
        return self.mem_total_bytes - self.mem_available_bytes

    def _frac(self, ticks: int) -> float:
        total = self.cpu.total
        return ticks / total if total else 0.0

    @property
    def user_frac(self) -> float:
        """User + nice share of all CPU time since boot (use ``rates`` for an interval)."""
        return self._frac(self.cpu.user + self.cpu.nice)

    @property
    def system_frac(self) -> float:
        """System + irq + softirq share of all CPU time since boot."""
        return self._frac(self.cpu.system + self.cpu.irq + self.cpu.softirq)

    @property
    def steal_frac(self) -> float:
        """Steal share of all CPU time since boot."""
        return self._frac(self.cpu.steal)

    @property
    def idle_frac(self) -> float:
        """Idle share (iowait excluded) of all CPU time since boot."""
        return self._frac(self.cpu.idle)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _whole_disks(sys_block: Path) -> list[str] | None:
    try:
        return os.listdir(sys_block)
    except OSError:
        return None


def read_host(
    proc: Path = Path("/proc"),
    t: float | None = None,
    sys_block: Path = Path("/sys/block"),
) -> HostSample:
    """Read one :class:`HostSample` from ``proc`` (a real ``/proc`` or a fixture copy).

    Parameters
    ----------
    proc
        Directory holding ``stat``, ``meminfo``, ``diskstats``, ``net/dev``,
        ``loadavg`` and ``pressure/{cpu,memory,io}``.
    t
        Sample time; ``time.monotonic()`` when omitted.
    sys_block
        Directory whose entries name the whole disks (``/sys/block``); if unreadable,
        kernel naming conventions tell partitions apart.
    """
    now = time.monotonic() if t is None else t
    stat = parse_stat((proc / "stat").read_text())
    mem = parse_meminfo((proc / "meminfo").read_text())
    disks_txt = _read_text(proc / "diskstats")
    disk = sum_disks(parse_diskstats(disks_txt or ""), _whole_disks(sys_block))
    net = sum_interfaces(parse_net_dev(_read_text(proc / "net" / "dev") or ""))
    load = parse_loadavg((proc / "loadavg").read_text())
    psi: dict[str, Pressure | None] = {}
    for res in ("cpu", "memory", "io"):
        txt = _read_text(proc / "pressure" / res)
        psi[res] = parse_pressure(txt).get("some") if txt is not None else None
    total = mem.get("MemTotal", 0)
    available = mem.get("MemAvailable", mem.get("MemFree", 0))
    return HostSample(
        t=now,
        ncpu=stat.ncpu,
        cpu=stat.cpu,
        mem_total_bytes=total,
        mem_available_bytes=available,
        disk_read_bytes=disk.read_bytes,
        disk_write_bytes=disk.write_bytes,
        net_rx_bytes=net.rx_bytes,
        net_tx_bytes=net.tx_bytes,
        ctxt=stat.ctxt,
        procs_running=stat.procs_running,
        procs_blocked=stat.procs_blocked,
        psi_cpu=psi["cpu"],
        psi_memory=psi["memory"],
        psi_io=psi["io"],
        load1=load.load1,
        load5=load.load5,
        load15=load.load15,
    )
