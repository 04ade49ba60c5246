"""cgroup v1 and v2 backends behind one small interface.

A backend creates, configures, lists, empties and removes groups given as paths
relative to its hierarchy root(s) (``"edgewise/web--123-1k2j3-0"``). It only touches
files; :class:`~edgewise.isolation.cgroup.CGroup` decides what to do with them. Roots
are parameters so the v2 backend is tested against a fake root directory.

v1 (``Documentation/admin-guide/cgroup-v1``): one directory per controller hierarchy;
CPU quota in ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, CPU time in
``cpuacct.usage``, ``cpuset.cpus`` / ``cpuset.mems`` (empty in a new group: copied
from the parent), ``memory.limit_in_bytes``.

v2 (``Documentation/admin-guide/cgroup-v2.rst``): one tree; controllers enabled for
children through ``cgroup.subtree_control`` of each ancestor; ``cpu.max`` is
``"$MAX $PERIOD"`` (``max`` = no limit), ``cpuset.cpus``, ``memory.max``,
``cgroup.kill`` (5.14+) kills every member.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from edgewise.isolation.naming import PARENT, group_name, pid_alive
from edgewise.telemetry.cgroupfs import (
    CgroupMounts,
    CGroupPaths,
    find_mounts,
    parse_cpu_list,
    parse_flat_keyed,
)

__all__ = [
    "CGROUP_V1_REQUIRED",
    "DEFAULT_PERIOD_US",
    "Backend",
    "CgroupV1Backend",
    "CgroupV2Backend",
    "detect_backend",
    "quota_us",
]

DEFAULT_PERIOD_US = 20_000
"""CFS period: 20 ms (DESIGN.md), short enough that a quota is smooth at batch-1 latencies."""

MIN_QUOTA_US = 1_000
"""The kernel rejects CFS quotas under 1 ms."""

CGROUP_V1_REQUIRED = ("cpu", "cpuacct", "cpuset")
"""v1 controllers a group always joins; ``memory`` only when a memory limit is asked."""


def quota_us(cpus: float, period_us: int = DEFAULT_PERIOD_US) -> int:
    """CFS quota in µs for ``cpus`` CPUs (``0.5`` -> half the period), at least 1 ms.

    Raises
    ------
    ValueError
        If ``cpus`` is not positive.
    """
    if not cpus > 0:
        raise ValueError(f"cpus must be positive, got {cpus}")
    return max(MIN_QUOTA_US, round(cpus * period_us))


def check_weight(weight: int) -> int:
    """A CPU weight in the v2 range 1..10000 (100 is the default share)."""
    if not 1 <= int(weight) <= 10_000:
        raise ValueError(f"cpu weight must be in 1..10000, got {weight}")
    return int(weight)


def _write(path: Path, value: str) -> None:
    # One write() per value: cgroup files take one value per write call.
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    return path.read_text()


class Backend(Protocol):
    """What :class:`~edgewise.isolation.cgroup.CGroup` needs from a cgroup hierarchy."""

    version: int

    def create(self, rel: str, memory: bool) -> CGroupPaths: ...

    def set_cpu_quota(self, paths: CGroupPaths, cpus: float | None, period_us: int) -> None: ...

    def set_cpu_weight(self, paths: CGroupPaths, weight: int) -> None: ...

    def cpu_weight(self, paths: CGroupPaths) -> int: ...

    def set_cpuset(self, paths: CGroupPaths, cpus: str) -> None: ...

    def set_memory(self, paths: CGroupPaths, limit_bytes: int | None) -> None: ...

    def procs_files(self, paths: CGroupPaths) -> list[Path]: ...

    def add_pid(self, paths: CGroupPaths, pid: int) -> None: ...

    def pids(self, paths: CGroupPaths) -> list[int]: ...

    def cpu_usage_s(self, paths: CGroupPaths) -> float: ...

    def throttled(self, paths: CGroupPaths) -> dict[str, float]: ...

    def kill_all(self, paths: CGroupPaths, timeout_s: float = 5.0) -> list[int]: ...

    def remove(self, paths: CGroupPaths) -> None: ...

    def paths_for(self, rel: str) -> CGroupPaths: ...

    def children(self, rel: str) -> list[str]: ...

    def move_out(self, paths: CGroupPaths, pid: int) -> None: ...


def _read_pids(files: Sequence[Path]) -> list[int]:
    pids: set[int] = set()
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        pids.update(int(x) for x in text.split() if x.strip().isdigit())
    return sorted(pids)


def _kill_until_empty(
    read_pids: Callable[[], list[int]], timeout_s: float, own_pid: int
) -> list[int]:
    """SIGKILL every live listed pid until none is left; return those still alive."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = [p for p in read_pids() if p != own_pid and pid_alive(p)]
        if not live:
            return []
        for p in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        if time.monotonic() > deadline:
            return live
        time.sleep(0.01)


class CgroupV1Backend:
    """cgroup v1: one directory per controller hierarchy.

    Parameters
    ----------
    roots
        Controller -> hierarchy mount point (``{"cpu": Path("/sys/fs/cgroup/cpu"), ...}``).
        ``cpu``, ``cpuacct`` and ``cpuset`` are required; ``memory`` is used when a
        group asks for a memory limit.
    """

    version = 1

    def __init__(self, roots: Mapping[str, Path]) -> None:
        missing = [c for c in CGROUP_V1_REQUIRED if c not in roots]
        if missing:
            raise ValueError(f"cgroup v1 backend needs controllers {missing}")
        self.roots = dict(roots)

    def _controllers(self, memory: bool) -> list[str]:
        ctrls = list(CGROUP_V1_REQUIRED)
        if memory and "memory" in self.roots:
            ctrls.append("memory")
        return ctrls

    def _dirs(self, rel: str, controllers: Sequence[str]) -> dict[str, Path]:
        # cpu and cpuacct are often one hierarchy (cpu,cpuacct): same directory twice.
        return {c: self.roots[c] / rel for c in controllers}

    def paths_for(self, rel: str) -> CGroupPaths:
        """Paths of an existing group in every hierarchy where it exists."""
        dirs = {c: r / rel for c, r in self.roots.items() if (r / rel).is_dir()}
        return CGroupPaths(name=rel, version=1, dirs=dirs)

    def create(self, rel: str, memory: bool) -> CGroupPaths:
        """Make the group (and its parents) in each needed hierarchy."""
        dirs = self._dirs(rel, self._controllers(memory))
        made: list[Path] = []
        try:
            for ctrl, d in dirs.items():
                for parent in [*reversed(Path(rel).parents[:-1]), Path(rel)]:
                    target = self.roots[ctrl] / parent
                    if not target.is_dir():
                        try:
                            target.mkdir()
                        except FileExistsError:
                            pass
                        else:
                            if parent == Path(rel):
                                made.append(target)
                    if ctrl == "cpuset":
                        self._init_cpuset(target)
                if ctrl == "memory":
                    # Charges move with a task, so the group's usage reflects its members.
                    with contextlib.suppress(OSError):
                        _write(d / "memory.move_charge_at_immigrate", "3")
        except OSError:
            for d in reversed(made):
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return CGroupPaths(name=rel, version=1, dirs=dirs)

    @staticmethod
    def _init_cpuset(d: Path) -> None:
        # A new v1 cpuset group starts with empty cpus/mems and accepts no task.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not _read_or_empty(d / name).strip():
                _write(d / name, _read(d.parent / name).strip())

    def set_cpu_quota(self, paths: CGroupPaths, cpus: float | None, period_us: int) -> None:
        d = paths.get("cpu")
        assert d is not None
        if cpus is None:
            _write(d / "cpu.cfs_quota_us", "-1")
            return
        if _read_or_empty(d / "cpu.cfs_period_us").strip() != str(period_us):
            # Lift the quota first: a period change can be refused under an old quota.
            _write(d / "cpu.cfs_quota_us", "-1")
            _write(d / "cpu.cfs_period_us", str(period_us))
        _write(d / "cpu.cfs_quota_us", str(quota_us(cpus, period_us)))

    def set_cpu_weight(self, paths: CGroupPaths, weight: int) -> None:
        """v2-style weight (1..10000, default 100) as v1 ``cpu.shares`` (default 1024)."""
        d = paths.get("cpu")
        assert d is not None
        _write(d / "cpu.shares", str(max(2, round(check_weight(weight) * 1024 / 100))))

    def cpu_weight(self, paths: CGroupPaths) -> int:
        """Current weight on the v2 scale (``cpu.shares`` / 10.24; 100 if unreadable)."""
        d = paths.get("cpu")
        text = _read_or_empty(d / "cpu.shares").strip() if d is not None else ""
        return max(1, round(int(text) * 100 / 1024)) if text else 100

    def set_cpuset(self, paths: CGroupPaths, cpus: str) -> None:
        d = paths.get("cpuset")
        assert d is not None
        _write(d / "cpuset.cpus", cpus)

    def set_memory(self, paths: CGroupPaths, limit_bytes: int | None) -> None:
        d = paths.get("memory")
        if d is None:
            raise ValueError(f"group {paths.name} was created without the memory controller")
        _write(d / "memory.limit_in_bytes", "-1" if limit_bytes is None else str(limit_bytes))

    def procs_files(self, paths: CGroupPaths) -> list[Path]:
        seen: set[Path] = set()
        out: list[Path] = []
        for d in paths.dirs.values():
            f = d / "cgroup.procs"
            if f not in seen:
                seen.add(f)
                out.append(f)
        return out

    def add_pid(self, paths: CGroupPaths, pid: int) -> None:
        for f in self.procs_files(paths):
            _write(f, str(pid))

    def pids(self, paths: CGroupPaths) -> list[int]:
        return _read_pids(self.procs_files(paths))

    def cpu_usage_s(self, paths: CGroupPaths) -> float:
        d = paths.get("cpuacct")
        assert d is not None
        return int(_read(d / "cpuacct.usage")) / 1e9

    def throttled(self, paths: CGroupPaths) -> dict[str, float]:
        d = paths.get("cpu")
        assert d is not None
        st = parse_flat_keyed(_read(d / "cpu.stat"))
        return {
            "nr_periods": float(st.get("nr_periods", 0)),
            "nr_throttled": float(st.get("nr_throttled", 0)),
            "throttled_s": st.get("throttled_time", 0) / 1e9,
        }

    def kill_all(self, paths: CGroupPaths, timeout_s: float = 5.0) -> list[int]:
        return _kill_until_empty(lambda: self.pids(paths), timeout_s, os.getpid())

    def move_out(self, paths: CGroupPaths, pid: int) -> None:
        """Move ``pid`` to the root of each hierarchy the group is in."""
        for ctrl in paths.dirs:
            with contextlib.suppress(OSError):
                _write(self.roots[ctrl] / "cgroup.procs", str(pid))

    def remove(self, paths: CGroupPaths) -> None:
        """rmdir the group in each hierarchy (retrying briefly while exits settle)."""
        errors: list[OSError] = []
        for d in dict.fromkeys(paths.dirs.values()):
            err = _rmdir_retry(d)
            if err is not None:
                errors.append(err)
        if errors:
            raise errors[0]

    def children(self, rel: str) -> list[str]:
        names: set[str] = set()
        for r in self.roots.values():
            with contextlib.suppress(OSError):
                names.update(e.name for e in os.scandir(r / rel) if e.is_dir())
        return sorted(names)


def _rmdir_retry(
    d: Path, rmdir: Callable[[Path], None] = os.rmdir, timeout_s: float = 2.0
) -> OSError | None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            rmdir(d)
            return None
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                return err
            time.sleep(0.02)


class CgroupV2Backend:
    """cgroup v2: one tree rooted at ``root``.

    Parameters
    ----------
    root
        The hierarchy root (``/sys/fs/cgroup`` or a delegated subtree; a fake directory
        in tests).
    rmdir
        How to remove a group directory (``os.rmdir``; a fake root needs
        ``shutil.rmtree`` because its interface files are ordinary files).
    """

    version = 2
    WANTED = ("cpu", "cpuset", "memory")

    def __init__(self, root: Path, rmdir: Callable[[Path], None] = os.rmdir) -> None:
        self.root = Path(root)
        self._rmdir = rmdir

    def available_controllers(self, d: Path | None = None) -> list[str]:
        try:
            return _read((d or self.root) / "cgroup.controllers").split()
        except OSError:
            return []

    def _enable(self, d: Path) -> None:
        have = set(self.available_controllers(d))
        enabled = set(_read_or_empty(d / "cgroup.subtree_control").split())
        todo = [c for c in self.WANTED if c in have and c not in enabled]
        if todo:
            _write(d / "cgroup.subtree_control", " ".join(f"+{c}" for c in todo))

    def paths_for(self, rel: str) -> CGroupPaths:
        return CGroupPaths(name=rel, version=2, dirs={"unified": self.root / rel})

    def create(self, rel: str, memory: bool) -> CGroupPaths:
        """Make the group, enabling cpu/cpuset/memory in every ancestor's subtree."""
        d = self.root
        self._enable(d)
        parts = Path(rel).parts
        for i, part in enumerate(parts):
            d = d / part
            with contextlib.suppress(FileExistsError):
                d.mkdir()
            if i < len(parts) - 1:
                self._enable(d)
        return self.paths_for(rel)

    def _dir(self, paths: CGroupPaths) -> Path:
        d = paths.get("unified")
        assert d is not None
        return d

    def set_cpu_quota(self, paths: CGroupPaths, cpus: float | None, period_us: int) -> None:
        value = "max" if cpus is None else str(quota_us(cpus, period_us))
        _write(self._dir(paths) / "cpu.max", f"{value} {period_us}")

    def set_cpu_weight(self, paths: CGroupPaths, weight: int) -> None:
        _write(self._dir(paths) / "cpu.weight", str(check_weight(weight)))

    def cpu_weight(self, paths: CGroupPaths) -> int:
        """Current ``cpu.weight`` (100 if unreadable)."""
        text = _read_or_empty(self._dir(paths) / "cpu.weight").strip()
        return int(text) if text else 100

    def set_cpuset(self, paths: CGroupPaths, cpus: str) -> None:
        _write(self._dir(paths) / "cpuset.cpus", cpus)

    def set_memory(self, paths: CGroupPaths, limit_bytes: int | None) -> None:
        _write(self._dir(paths) / "memory.max", "max" if limit_bytes is None else str(limit_bytes))

    def procs_files(self, paths: CGroupPaths) -> list[Path]:
        return [self._dir(paths) / "cgroup.procs"]

    def add_pid(self, paths: CGroupPaths, pid: int) -> None:
        _write(self._dir(paths) / "cgroup.procs", str(pid))

    def pids(self, paths: CGroupPaths) -> list[int]:
        return _read_pids(self.procs_files(paths))

    def cpu_usage_s(self, paths: CGroupPaths) -> float:
        st = parse_flat_keyed(_read(self._dir(paths) / "cpu.stat"))
        return st.get("usage_usec", 0) / 1e6

    def throttled(self, paths: CGroupPaths) -> dict[str, float]:
        st = parse_flat_keyed(_read(self._dir(paths) / "cpu.stat"))
        return {
            "nr_periods": float(st.get("nr_periods", 0)),
            "nr_throttled": float(st.get("nr_throttled", 0)),
            "throttled_s": st.get("throttled_usec", 0) / 1e6,
        }

    def kill_all(self, paths: CGroupPaths, timeout_s: float = 5.0) -> list[int]:
        d = self._dir(paths)
        kill_file = d / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        return _kill_until_empty(lambda: self.pids(paths), timeout_s, os.getpid())

    def move_out(self, paths: CGroupPaths, pid: int) -> None:
        """Move ``pid`` to the hierarchy root."""
        with contextlib.suppress(OSError):
            _write(self.root / "cgroup.procs", str(pid))

    def remove(self, paths: CGroupPaths) -> None:
        err = _rmdir_retry(self._dir(paths), self._rmdir)
        if err is not None:
            raise err

    def children(self, rel: str) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root / rel) if e.is_dir())
        except OSError:
            return []


def _read_or_empty(path: Path) -> str:
    try:
        return _read(path)
    except OSError:
        return ""


def _probe(backend: Backend) -> bool:
    """Create and remove a throw-away group to prove the hierarchy is writable."""
    rel = f"{PARENT}/{group_name('probe')}"
    try:
        paths = backend.create(rel, memory=False)
    except OSError:
        return False
    try:
        backend.set_cpu_quota(paths, 1.0, DEFAULT_PERIOD_US)
        ok = True
    except OSError:
        ok = False
    with contextlib.suppress(OSError):
        backend.remove(paths)
    return ok


def detect_backend(mounts: CgroupMounts | None = None) -> Backend | None:
    """The usable cgroup backend here, or ``None`` when cgroups are not writable.

    v2 is preferred when its root offers the ``cpu`` controller; otherwise v1 when the
    ``cpu``, ``cpuacct`` and ``cpuset`` hierarchies are mounted. Either is proved
    writable by creating and removing a probe group.
    """
    mounts = mounts if mounts is not None else find_mounts()
    candidates: list[Backend] = []
    if mounts.v2 is not None:
        v2 = CgroupV2Backend(mounts.v2)
        if "cpu" in v2.available_controllers():
            candidates.append(v2)
    if all(c in mounts.v1 for c in CGROUP_V1_REQUIRED):
        candidates.append(CgroupV1Backend(mounts.v1))
    for b in candidates:
        if _probe(b):
            return b
    return None


def cpus_available() -> list[int]:
    """CPUs this process may run on."""
    return sorted(os.sched_getaffinity(0))


def validate_cpuset(cpuset: str, allowed: Sequence[int]) -> list[int]:
    """Parse ``cpuset`` and check it is a non-empty subset of ``allowed``."""
    cpus = parse_cpu_list(cpuset)
    if not cpus:
        raise ValueError(f"empty cpuset {cpuset!r}")
    extra = sorted(set(cpus) - set(allowed))
    if extra:
        raise ValueError(f"cpuset {cpuset!r} names CPUs {extra} not available here")
    return cpus
