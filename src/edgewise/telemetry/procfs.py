"""Pure parsers for the host-wide files under ``/proc``.

Every function here takes the text of one file and returns plain numbers; nothing reads
the file system. :mod:`edgewise.telemetry.host` reads the files and builds a
:class:`~edgewise.telemetry.host.HostSample` from these results, so the parsers are
tested on fixture copies of real files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CpuTimes",
    "DiskCounters",
    "LoadAvg",
    "NetCounters",
    "Pressure",
    "StatCounters",
    "is_whole_disk",
    "parse_diskstats",
    "parse_loadavg",
    "parse_meminfo",
    "parse_net_dev",
    "parse_pressure",
    "parse_stat",
    "sum_disks",
    "sum_interfaces",
]

SECTOR_BYTES = 512
"""``/proc/diskstats`` counts 512-byte sectors whatever the device's block size."""


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU time of all CPUs in clock ticks (``USER_HZ``), from ``/proc/stat``."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        """All ticks; guest time is already included in user and nice."""
        return (
            self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
        )


@dataclass(frozen=True)
class StatCounters:
    """What edgewise takes from ``/proc/stat``."""

    cpu: CpuTimes
    ncpu: int
    ctxt: int
    processes: int
    procs_running: int
    procs_blocked: int


def parse_stat(text: str) -> StatCounters:
    """Parse ``/proc/stat``.

    Parameters
    ----------
    text
        The file's content.

    Returns
    -------
    StatCounters
        Aggregate CPU ticks, number of ``cpuN`` lines, context switches, forks and the
        running / blocked process counts.

    Raises
    ------
    ValueError
        If the aggregate ``cpu`` line is missing.
    """
    cpu: CpuTimes | None = None
    ncpu = 0
    fields: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key == "cpu":
            vals = [int(v) for v in parts[1:9]]
            vals += [0] * (8 - len(vals))  # very old kernels lack steal
            cpu = CpuTimes(*vals)
        elif key.startswith("cpu") and key[3:].isdigit():
            ncpu += 1
        elif key in ("ctxt", "processes", "procs_running", "procs_blocked"):
            fields[key] = int(parts[1])
    if cpu is None:
        raise ValueError("/proc/stat has no aggregate 'cpu' line")
    return StatCounters(
        cpu=cpu,
        ncpu=max(ncpu, 1),
        ctxt=fields.get("ctxt", 0),
        processes=fields.get("processes", 0),
        procs_running=fields.get("procs_running", 0),
        procs_blocked=fields.get("procs_blocked", 0),
    )


def parse_meminfo(text: str) -> dict[str, int]:
    """Parse ``/proc/meminfo`` into bytes (``kB`` values are multiplied by 1024).

    Counts without a unit (``HugePages_Total``...) are returned as they are.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        value = int(parts[0])
        if len(parts) > 1 and parts[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


@dataclass(frozen=True)
class DiskCounters:
    """Cumulative counters of one block device from ``/proc/diskstats``."""

    reads: int
    read_bytes: int
    writes: int
    write_bytes: int
    io_ms: int


def parse_diskstats(text: str) -> dict[str, DiskCounters]:
    """Parse ``/proc/diskstats`` into per-device counters (bytes, not sectors)."""
    out: dict[str, DiskCounters] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        name = parts[2]
        out[name] = DiskCounters(
            reads=int(parts[3]),
            read_bytes=int(parts[5]) * SECTOR_BYTES,
            writes=int(parts[7]),
            write_bytes=int(parts[9]) * SECTOR_BYTES,
            io_ms=int(parts[12]),
        )
    return out


_VIRTUAL_DISK = re.compile(r"^(loop|ram|zram|dm-|md|sr|fd)\d*")
_PARTITION = re.compile(r"^((sd|vd|xvd|hd)[a-z]+\d+|(nvme\d+n\d+|mmcblk\d+)p\d+)$")


def is_whole_disk(name: str, whole_disks: Iterable[str] | None = None) -> bool:
    """Whether a diskstats device counts towards host disk traffic.

    Loop, RAM, zram, device-mapper and md devices are excluded (their I/O is either
    not disk traffic or is counted again on the disks below them), and so are
    partitions. ``whole_disks`` (the names in ``/sys/block``) settles the partition
    question when given; otherwise the kernel's naming conventions do.
    """
    if _VIRTUAL_DISK.match(name):
        return False
    if whole_disks is not None:
        return name in set(whole_disks)
    return not _PARTITION.match(name)


def sum_disks(
    disks: dict[str, DiskCounters], whole_disks: Iterable[str] | None = None
) -> DiskCounters:
    """Add the counters of the physical disks (see :func:`is_whole_disk`)."""
    names = list(whole_disks) if whole_disks is not None else None
    picked = [d for n, d in disks.items() if is_whole_disk(n, names)]
    return DiskCounters(
        reads=sum(d.reads for d in picked),
        read_bytes=sum(d.read_bytes for d in picked),
        writes=sum(d.writes for d in picked),
        write_bytes=sum(d.write_bytes for d in picked),
        io_ms=max((d.io_ms for d in picked), default=0),
    )


@dataclass(frozen=True)
class NetCounters:
    """Cumulative counters of one network interface from ``/proc/net/dev``."""

    rx_bytes: int
    rx_packets: int
    tx_bytes: int
    tx_packets: int


def parse_net_dev(text: str) -> dict[str, NetCounters]:
    """Parse ``/proc/net/dev`` into per-interface counters."""
    out: dict[str, NetCounters] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep or "|" in line:
            continue
        parts = rest.split()
        if len(parts) < 10:
            continue
        out[name.strip()] = NetCounters(
            rx_bytes=int(parts[0]),
            rx_packets=int(parts[1]),
            tx_bytes=int(parts[8]),
            tx_packets=int(parts[9]),
        )
    return out


def sum_interfaces(ifaces: dict[str, NetCounters], exclude: Iterable[str] = ("lo",)) -> NetCounters:
    """Add the counters of all interfaces except ``exclude`` (loopback by default)."""
    skip = set(exclude)
    picked = [c for n, c in ifaces.items() if n not in skip]
    return NetCounters(
        rx_bytes=sum(c.rx_bytes for c in picked),
        rx_packets=sum(c.rx_packets for c in picked),
        tx_bytes=sum(c.tx_bytes for c in picked),
        tx_packets=sum(c.tx_packets for c in picked),
    )


@dataclass(frozen=True)
class Pressure:
    """One PSI line (``some`` or ``full``): averages in percent, total stall in µs."""

    avg10: float
    avg60: float
    avg300: float
    total_us: int


def parse_pressure(text: str) -> dict[str, Pressure]:
    """Parse a PSI file (``/proc/pressure/*`` or a cgroup v2 ``*.pressure``).

    Returns
    -------
    dict
        ``{"some": Pressure, "full": Pressure}`` with whichever lines are present
        (``/proc/pressure/cpu`` has no ``full`` line on kernels before 5.13).
    """
    out: dict[str, Pressure] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        out[parts[0]] = Pressure(
            avg10=float(kv.get("avg10", 0.0)),
            avg60=float(kv.get("avg60", 0.0)),
            avg300=float(kv.get("avg300", 0.0)),
            total_us=int(kv.get("total", 0)),
        )
    return out


@dataclass(frozen=True)
class LoadAvg:
    """``/proc/loadavg``: load averages and the runnable / total thread counts."""

    load1: float
    load5: float
    load15: float
    runnable: int
    threads: int


def parse_loadavg(text: str) -> LoadAvg:
    """Parse ``/proc/loadavg``."""
    parts = text.split()
    if len(parts) < 4 or "/" not in parts[3]:
        raise ValueError(f"unexpected /proc/loadavg content: {text.strip()!r}")
    running, total = parts[3].split("/", 1)
    return LoadAvg(float(parts[0]), float(parts[1]), float(parts[2]), int(running), int(total))
