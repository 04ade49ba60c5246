"""cgroup v1 and v2 files: where the hierarchies are, pure parsers, and one reader.

The parsers take file text and return numbers; :func:`read_cgroup` is the thin
reader that turns a group's directories into a :class:`CGroupSample`. psutil is not
cgroup-aware, so per-group figures come from these files:

========================  ==================================  ==========================
figure                    cgroup v1                           cgroup v2
========================  ==================================  ==========================
CPU time                  ``cpuacct.usage`` (ns)              ``cpu.stat`` usage_usec
throttling                ``cpu.stat`` nr_throttled,          ``cpu.stat`` nr_throttled,
                          throttled_time (ns)                 throttled_usec
CPU limit                 ``cpu.cfs_quota_us / period_us``    ``cpu.max``
memory                    ``memory.usage_in_bytes``,          ``memory.current``,
                          ``memory.limit_in_bytes``           ``memory.max``
block I/O                 ``blkio.throttle.io_service_bytes`` ``io.stat`` rbytes/wbytes
CPU pressure              (none)                              ``cpu.pressure``
========================  ==================================  ==========================
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from edgewise.errors import EnvironmentProblem
from edgewise.telemetry.procfs import parse_pressure

__all__ = [
    "V1_CONTROLLERS",
    "CGroupPaths",
    "CGroupSample",
    "CgroupMounts",
    "HasCGroupPaths",
    "find_mounts",
    "format_cpu_list",
    "parse_blkio",
    "parse_cpu_list",
    "parse_cpu_max",
    "parse_flat_keyed",
    "parse_io_stat",
    "parse_limit",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "read_cgroup",
    "resolve_cgroup",
]

V1_CONTROLLERS = frozenset(
    {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "blkio",
        "devices",
        "freezer",
        "pids",
        "net_cls",
        "net_prio",
        "perf_event",
        "hugetlb",
        "rdma",
        "misc",
    }
)

_SAMPLED_V1 = ("cpu", "cpuacct", "cpuset", "memory", "blkio")

UNLIMITED_BYTES = 1 << 62
"""v1 reports "no memory limit" as a huge number near 2**63; anything above this is none."""


# --------------------------------------------------------------------------- mounts


@dataclass(frozen=True)
class CgroupMounts:
    """Mount points: one directory per v1 controller, and the v2 (unified) hierarchy."""

    v1: Mapping[str, Path] = field(default_factory=dict)
    v2: Path | None = None


def parse_mountinfo(text: str) -> CgroupMounts:
    """Find the cgroup hierarchies in ``/proc/self/mountinfo``.

    A v1 hierarchy may carry several controllers (``cpu,cpuacct`` is common); each
    controller maps to the hierarchy's mount point. The first mount of each wins.
    """
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        pre_f, post_f = pre.split(), post.split()
        if len(pre_f) < 5 or len(post_f) < 3:
            continue
        mountpoint = Path(pre_f[4].replace("\\040", " "))
        fstype = post_f[0]
        if fstype == "cgroup2" and v2 is None:
            v2 = mountpoint
        elif fstype == "cgroup":
            for opt in post_f[2].split(","):
                if opt in V1_CONTROLLERS and opt not in v1:
                    v1[opt] = mountpoint
    return CgroupMounts(v1=v1, v2=v2)


def find_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> CgroupMounts:
    """Read the cgroup mounts of this process (empty if the file is unreadable)."""
    try:
        return parse_mountinfo(mountinfo.read_text())
    except OSError:
        return CgroupMounts()


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse ``/proc/<pid>/cgroup``: controller -> path; the v2 entry's key is ``""``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ctrls, path = parts[1], parts[2]
        if not ctrls:
            out[""] = path
        for c in ctrls.split(","):
            if c:
                out[c.removeprefix("name=")] = path
    return out


# --------------------------------------------------------------------------- parsers


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse ``key value`` lines (``cpu.stat``, ``cpuacct.stat``, ``memory.stat``)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def parse_limit(text: str) -> int | None:
    """A byte or count limit: ``max`` (v2) or a value near 2**63 (v1) means none."""
    s = text.strip()
    if s in ("max", "-1", ""):
        return None
    value = int(s)
    return None if value >= UNLIMITED_BYTES else value


def parse_cpu_max(text: str) -> tuple[int | None, int]:
    """Parse v2 ``cpu.max`` (``"$MAX $PERIOD"``): quota in µs (None for ``max``), period."""
    parts = text.split()
    if not parts:
        raise ValueError("empty cpu.max")
    quota = None if parts[0] == "max" else int(parts[0])
    period = int(parts[1]) if len(parts) > 1 else 100_000
    return quota, period


def parse_blkio(text: str) -> tuple[int, int]:
    """Sum the per-device ``Read`` and ``Write`` lines of a v1 blkio byte/op file."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        if parts[1] == "Read":
            read += int(parts[2])
        elif parts[1] == "Write":
            write += int(parts[2])
    return read, write


def parse_io_stat(text: str) -> dict[str, dict[str, int]]:
    """Parse v2 ``io.stat``: ``"MAJ:MIN rbytes=.. wbytes=.. rios=.. ..."`` per device."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        kv: dict[str, int] = {}
        for p in parts[1:]:
            k, sep, v = p.partition("=")
            if sep:
                try:
                    kv[k] = int(v)
                except ValueError:
                    continue
        out[parts[0]] = kv
    return out


def parse_cpu_list(text: str) -> list[int]:
    """Parse a kernel CPU list (``"0-3,6,8-9"``) into sorted CPU numbers."""
    cpus: set[int] = set()
    for chunk in text.strip().split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        lo, sep, hi = chunk.partition("-")
        if sep:
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError(f"bad CPU range {chunk!r}")
            cpus.update(range(a, b + 1))
        else:
            cpus.add(int(lo))
    return sorted(cpus)


def format_cpu_list(cpus: list[int] | set[int] | tuple[int, ...]) -> str:
    """Format CPU numbers as a kernel CPU list, merging runs (``[0,1,2,5] -> "0-2,5"``)."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(set(cpus)):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class CGroupPaths:
    """Where one control group lives.

    Attributes
    ----------
    name
        A label (the group's path relative to its hierarchy root, usually).
    version
        1 or 2.
    dirs
        v1: controller -> directory in that controller's hierarchy. v2: one entry,
        ``"unified"``, the group's directory.
    """

    name: str
    version: int
    dirs: Mapping[str, Path]

    def get(self, controller: str) -> Path | None:
        """The directory that holds ``controller``'s files, if the group has one."""
        if self.version == 2:
            return self.dirs.get("unified")
        return self.dirs.get(controller)


@runtime_checkable
class HasCGroupPaths(Protocol):
    """Anything that can tell where its cgroup lives (e.g. ``edgewise.isolation.CGroup``)."""

    def cgroup_paths(self) -> CGroupPaths | None: ...


CGroupRef = CGroupPaths | HasCGroupPaths | str | os.PathLike[str]


def resolve_cgroup(ref: CGroupRef, mounts: CgroupMounts | None = None) -> CGroupPaths:
    """Turn a reference into :class:`CGroupPaths`.

    Parameters
    ----------
    ref
        A :class:`CGroupPaths`; an object with ``cgroup_paths()``; an absolute
        directory inside a cgroup mount; or a path relative to the hierarchy roots
        (``"edgewise/foo"``, ``"/"`` for the roots), looked up in the v1 controller
        hierarchies first and then in the v2 hierarchy.
    mounts
        Mount points (default: this process's).

    Raises
    ------
    EnvironmentProblem
        If no hierarchy has that group.
    """
    if isinstance(ref, CGroupPaths):
        return ref
    if isinstance(ref, HasCGroupPaths):
        paths = ref.cgroup_paths()
        if paths is None:
            raise EnvironmentProblem(f"{ref!r} is not backed by a cgroup (affinity fallback)")
        return paths
    mounts = mounts if mounts is not None else find_mounts()
    p = Path(os.fspath(ref))
    if p.is_absolute() and p.is_dir():
        if (p / "cgroup.controllers").exists():
            return CGroupPaths(name=str(p), version=2, dirs={"unified": p})
        for mp in mounts.v1.values():
            if p == mp or mp in p.parents:
                rel = p.relative_to(mp)
                return _v1_paths(str(rel) if str(rel) != "." else "/", rel, mounts)
        if (p / "cgroup.procs").exists():  # a v1 group outside the known mounts
            return CGroupPaths(name=str(p), version=1, dirs={"cpu": p, "cpuacct": p})
    rel = Path(str(p).lstrip("/"))
    v1 = _v1_paths(str(p), rel, mounts)
    if v1.dirs:
        return v1
    if mounts.v2 is not None and (mounts.v2 / rel / "cgroup.procs").exists():
        return CGroupPaths(name=str(p), version=2, dirs={"unified": mounts.v2 / rel})
    where = sorted(
        {str(m) for c, m in mounts.v1.items() if c in _SAMPLED_V1}
        | ({str(mounts.v2)} if mounts.v2 else set())
    )
    raise EnvironmentProblem(f"cgroup {str(p)!r} not found under {', '.join(where) or 'any mount'}")


def _v1_paths(name: str, rel: Path, mounts: CgroupMounts) -> CGroupPaths:
    dirs = {c: mp / rel for c, mp in mounts.v1.items() if c in _SAMPLED_V1 and (mp / rel).is_dir()}
    return CGroupPaths(name=name, version=1, dirs=dirs)


@dataclass(frozen=True)
class CGroupSample:
    """Cumulative counters and gauges of one cgroup at time ``t``; ``None`` = unavailable.

    Attributes
    ----------
    t
        Sample time in seconds (the sampler's clock).
    cpu_usage_s
        CPU time used by the group's processes since it was created.
    nr_periods, nr_throttled, throttled_s
        CFS bandwidth periods, periods in which the group was throttled, total
        throttled time.
    cpu_limit
        Quota / period in CPUs (``None`` = no quota).
    memory_bytes, memory_limit_bytes
        Current charge and limit (``None`` = no limit).
    io_read_bytes, io_write_bytes
        Block I/O since creation.
    psi_cpu_some_avg10, psi_cpu_some_total_us
        v2 ``cpu.pressure`` (v1 has none).
    procs
        Number of processes in the group.
    """

    t: float
    name: str
    version: int
    cpu_usage_s: float | None = None
    nr_periods: int | None = None
    nr_throttled: int | None = None
    throttled_s: float | None = None
    cpu_limit: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    psi_cpu_some_avg10: float | None = None
    psi_cpu_some_total_us: int | None = None
    procs: int | None = None


def _read(d: Path | None, name: str) -> str | None:
    if d is None:
        return None
    try:
        return (d / name).read_text()
    except OSError:
        return None


def read_cgroup(ref: CGroupRef, t: float | None = None) -> CGroupSample:
    """Read one cgroup's counters (v1 or v2) into a :class:`CGroupSample`.

    Parameters
    ----------
    ref
        See :func:`resolve_cgroup`.
    t
        Sample time; ``time.monotonic()`` when omitted.
    """
    paths = resolve_cgroup(ref)
    now = time.monotonic() if t is None else t
    if paths.version == 2:
        return _read_v2(paths, now)
    return _read_v1(paths, now)


def _count_procs(text: str | None) -> int | None:
    if text is None:
        return None
    return sum(1 for line in text.splitlines() if line.strip())


def _read_v1(paths: CGroupPaths, t: float) -> CGroupSample:
    cpu_d, acct_d = paths.get("cpu"), paths.get("cpuacct")
    usage_txt = _read(acct_d, "cpuacct.usage")
    stat = parse_flat_keyed(_read(cpu_d, "cpu.stat") or "")
    quota_txt, period_txt = _read(cpu_d, "cpu.cfs_quota_us"), _read(cpu_d, "cpu.cfs_period_us")
    cpu_limit: float | None = None
    if quota_txt is not None and period_txt is not None:
        quota, period = int(quota_txt), int(period_txt)
        cpu_limit = quota / period if quota > 0 and period > 0 else None
    mem_d = paths.get("memory")
    mem_txt, lim_txt = _read(mem_d, "memory.usage_in_bytes"), _read(mem_d, "memory.limit_in_bytes")
    blk = _read(paths.get("blkio"), "blkio.throttle.io_service_bytes")
    rd, wr = parse_blkio(blk) if blk is not None else (None, None)
    procs_dir = cpu_d or acct_d or mem_d
    return CGroupSample(
        t=t,
        name=paths.name,
        version=1,
        cpu_usage_s=int(usage_txt) / 1e9 if usage_txt is not None else None,
        nr_periods=stat.get("nr_periods"),
        nr_throttled=stat.get("nr_throttled"),
        throttled_s=stat["throttled_time"] / 1e9 if "throttled_time" in stat else None,
        cpu_limit=cpu_limit,
        memory_bytes=int(mem_txt) if mem_txt is not None else None,
        memory_limit_bytes=parse_limit(lim_txt) if lim_txt is not None else None,
        io_read_bytes=rd,
        io_write_bytes=wr,
        procs=_count_procs(_read(procs_dir, "cgroup.procs")),
    )


def _read_v2(paths: CGroupPaths, t: float) -> CGroupSample:
    d = paths.get("unified")
    stat = parse_flat_keyed(_read(d, "cpu.stat") or "")
    cpu_max = _read(d, "cpu.max")
    cpu_limit: float | None = None
    if cpu_max is not None:
        quota, period = parse_cpu_max(cpu_max)
        cpu_limit = quota / period if quota is not None and period > 0 else None
    mem_txt, lim_txt = _read(d, "memory.current"), _read(d, "memory.max")
    io_txt = _read(d, "io.stat")
    rd = wr = None
    if io_txt is not None:
        io = parse_io_stat(io_txt)
        rd = sum(v.get("rbytes", 0) for v in io.values())
        wr = sum(v.get("wbytes", 0) for v in io.values())
    psi_txt = _read(d, "cpu.pressure")
    some = parse_pressure(psi_txt).get("some") if psi_txt is not None else None
    return CGroupSample(
        t=t,
        name=paths.name,
        version=2,
        cpu_usage_s=stat["usage_usec"] / 1e6 if "usage_usec" in stat else None,
        nr_periods=stat.get("nr_periods"),
        nr_throttled=stat.get("nr_throttled"),
        throttled_s=stat["throttled_usec"] / 1e6 if "throttled_usec" in stat else None,
        cpu_limit=cpu_limit,
        memory_bytes=int(mem_txt) if mem_txt is not None else None,
        memory_limit_bytes=parse_limit(lim_txt) if lim_txt is not None else None,
        io_read_bytes=rd,
        io_write_bytes=wr,
        psi_cpu_some_avg10=some.avg10 if some else None,
        psi_cpu_some_total_us=some.total_us if some else None,
        procs=_count_procs(_read(d, "cgroup.procs")),
    )
