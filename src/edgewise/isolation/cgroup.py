"""Run processes inside a control group with a CPU quota, a cpuset and a memory limit.

:class:`CGroup` is a context manager: entering creates ``edgewise/<name>--<owner>``
through the detected backend (cgroup v2 or v1, see :mod:`.backends`) and applies the
limits; leaving kills every member process, waits for them and removes the group,
even when the body raised. :func:`cleanup_stale` (run automatically the first time a
process creates a group) removes groups whose owner process is gone. Where cgroups
are not writable, a group falls back to CPU affinity plus a thread-count hint and
warns once.

Pure helpers (:func:`threads_for`, :func:`fallback_affinity`) decide; the class acts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Literal

from edgewise.isolation.backends import (
    DEFAULT_PERIOD_US,
    Backend,
    check_weight,
    cpus_available,
    detect_backend,
    validate_cpuset,
)
from edgewise.isolation.naming import (
    PARENT,
    group_name,
    owner_alive,
    parse_group_name,
    pid_alive,
)
from edgewise.lifecycle import Closing
from edgewise.telemetry.cgroupfs import CGroupPaths, format_cpu_list

__all__ = [
    "FALLBACK_WARNING",
    "CGroup",
    "cgroups_writable",
    "cleanup_stale",
    "fallback_affinity",
    "get_backend",
    "spawn_in_cgroup",
    "threads_for",
]

log = logging.getLogger(__name__)

FALLBACK_WARNING = (
    "edgewise: cgroups are not writable here (needs root and cgroup v2 with the cpu "
    "controller, or cgroup v1 cpu/cpuacct/cpuset hierarchies); falling back to CPU "
    "affinity and thread counts: CPU quotas are rounded up to whole CPUs and memory "
    "limits are not enforced"
)

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables set for children spawned in the affinity fallback."""

_lock = threading.Lock()
_backend_cache: dict[str, Backend | None] = {}
_stale_done: set[tuple[int, str]] = set()
_warned = False


def threads_for(cpus: float, max_threads: int | None = None) -> int:
    """Threads to give a workload limited to ``cpus`` CPUs: ``cpus`` rounded half up, at least 1.

    The one rule for every workload edgewise confines: capacity profiles, serving
    replicas, profiled targets and device apps all take their torch thread count from
    here, so a profile is measured with the threads the replica will serve with. A
    thread more than the quota (``ceil``) makes torch's parallel regions wait on a
    throttled straggler; rounding keeps 0.5 and 1.4 CPUs at one thread and 2 at two.

    Parameters
    ----------
    cpus
        CPU share (``0.5``, ``1.0``, ``2.5``...).
    max_threads
        Upper bound (the CPUs this process may use, say).
    """
    if not cpus > 0:
        raise ValueError(f"cpus must be positive, got {cpus}")
    n = max(1, math.floor(cpus + 0.5 + 1e-9))
    return min(n, max_threads) if max_threads is not None else n


def fallback_affinity(
    cpus: float | None, cpuset: Sequence[int] | None, allowed: Sequence[int]
) -> list[int]:
    """CPUs to pin to when no cgroup can enforce a quota (pure).

    The cpuset when given (a quota cannot be narrower than whole CPUs without cgroups),
    otherwise the first ``threads_for(cpus)`` allowed CPUs, otherwise all allowed.
    """
    if cpuset:
        return sorted(cpuset)
    pool = sorted(allowed)
    if cpus is None:
        return pool
    return pool[: threads_for(cpus, max_threads=len(pool))]


def get_backend() -> Backend | None:
    """The cgroup backend of this host, detected once per process (``None``: fallback)."""
    with _lock:
        if "auto" not in _backend_cache:
            _backend_cache["auto"] = detect_backend()
        return _backend_cache["auto"]


def cgroups_writable() -> bool:
    """Whether edgewise can create cgroups here (v2 or v1)."""
    return get_backend() is not None


def _warn_fallback() -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    warnings.warn(FALLBACK_WARNING, RuntimeWarning, stacklevel=3)


def cleanup_stale(backend: Backend | None = None) -> int:
    """Remove groups under ``edgewise/`` whose owner process is gone.

    Members of a stale group are killed first. Groups of live owners and directories
    that edgewise did not name are left alone.

    Parameters
    ----------
    backend
        Backend to clean (default: this host's).

    Returns
    -------
    int
        Number of groups removed.
    """
    b = backend if backend is not None else get_backend()
    if b is None:
        return 0
    removed = 0
    for child in b.children(PARENT):
        owner = parse_group_name(child)
        if owner is None or owner_alive(owner):
            continue
        paths = b.paths_for(f"{PARENT}/{child}")
        if not paths.dirs:
            continue
        try:
            left = b.kill_all(paths, timeout_s=2.0)
            if left:
                log.warning("stale group %s: pids %s would not die", child, left)
                continue
            b.remove(paths)
        except OSError as err:
            log.warning("could not remove stale group %s: %s", child, err)
            continue
        removed += 1
        log.info("removed stale cgroup %s (owner pid %d is gone)", child, owner.pid)
    return removed


def _cleanup_stale_once(b: Backend) -> None:
    key = (b.version, str(getattr(b, "root", getattr(b, "roots", ""))))
    with _lock:
        if key in _stale_done:
            return
        _stale_done.add(key)
    cleanup_stale(b)


class CGroup(Closing):
    """A control group with a CPU quota, a cpuset and a memory limit.

    Parameters
    ----------
    name
        Label; the group is ``edgewise/<name>--<pid>-<start>-<seq>``.
    cpus
        CPU quota in CPUs (0.5 = half a core, 2 = two cores); ``None``: no quota.
    cpuset
        CPUs the members may run on, as a kernel list (``"0"``, ``"0-1"``).
    memory_mb
        Memory limit in MiB; ``None``: none. On cgroup v1 only groups with a limit
        join the memory hierarchy.
    cpu_weight
        Share of contended CPU, v2 scale (1..10000, default 100; v1 ``cpu.shares`` =
        weight x 10.24). A quota caps a group; a weight lets it reach its cap on a busy
        host. A weight only orders siblings, so the ``edgewise`` parent's weight is
        raised to at least this value too (never lowered). Ignored in the fallback.
    backend
        ``"auto"`` (detect), an explicit backend, or ``None`` to force the affinity
        fallback.
    period_us
        CFS period (20 ms).
    kill_timeout_s
        How long to wait for members to die on exit.

    Examples
    --------
    >>> with CGroup("web", cpus=0.5, memory_mb=512) as cg:  # doctest: +SKIP
    ...     proc = spawn_in_cgroup(["python", "serve.py"], cg)
    ...     cg.set_cpus(1.0)
    """

    def __init__(
        self,
        name: str,
        cpus: float | None = None,
        cpuset: str | None = None,
        memory_mb: int | None = None,
        *,
        cpu_weight: int | None = None,
        backend: Backend | Literal["auto"] | None = "auto",
        period_us: int = DEFAULT_PERIOD_US,
        kill_timeout_s: float = 5.0,
    ) -> None:
        if cpus is not None and not cpus > 0:
            raise ValueError(f"cpus must be positive, got {cpus}")
        if memory_mb is not None and memory_mb <= 0:
            raise ValueError(f"memory_mb must be positive, got {memory_mb}")
        if cpu_weight is not None:
            check_weight(cpu_weight)
        self.name = name
        self.cpus = cpus
        self.cpuset = cpuset
        self.memory_mb = memory_mb
        self.cpu_weight = cpu_weight
        self.period_us = int(period_us)
        self.kill_timeout_s = kill_timeout_s
        self._backend_arg = backend
        self.backend: Backend | None = None
        self.path: str | None = None
        self._paths: CGroupPaths | None = None
        self._active = False
        self._spawned: list[subprocess.Popen[Any]] = []
        self._members: set[int] = set()
        self._affinity: list[int] = []

    # ------------------------------------------------------------------ state
    @property
    def isolated(self) -> bool:
        """True when backed by a real cgroup, False in the affinity fallback."""
        return self._paths is not None

    @property
    def version(self) -> int | None:
        """cgroup version of the backing group (``None`` in the fallback)."""
        return self.backend.version if self.backend is not None and self.isolated else None

    @property
    def threads(self) -> int:
        """Threads that suit this group's CPU share (all allowed CPUs without a quota)."""
        allowed = len(self._affinity) if self._affinity else len(cpus_available())
        if self.cpus is None:
            return allowed
        return threads_for(self.cpus, max_threads=allowed)

    def cgroup_paths(self) -> CGroupPaths | None:
        """Directories of the group (for :func:`edgewise.telemetry.read_cgroup`)."""
        return self._paths

    def __repr__(self) -> str:
        where = self.path if self.isolated else "affinity fallback"
        return f"CGroup({self.name!r}, cpus={self.cpus}, cpuset={self.cpuset!r}, memory_mb={self.memory_mb}, {where})"

    # ------------------------------------------------------------------ lifecycle
    def _on_enter(self) -> None:
        self.create()

    def create(self) -> CGroup:
        """Create the group and apply the limits (done by ``with``)."""
        if self._active:
            raise RuntimeError(f"{self!r} is already active")
        allowed = cpus_available()
        cpuset_cpus = validate_cpuset(self.cpuset, allowed) if self.cpuset else None
        b = get_backend() if self._backend_arg == "auto" else self._backend_arg
        assert b != "auto"
        self.backend = b
        if b is None:
            _warn_fallback()
            self._affinity = fallback_affinity(self.cpus, cpuset_cpus, allowed)
            self._active = True
            return self
        _cleanup_stale_once(b)
        rel = f"{PARENT}/{group_name(self.name)}"
        paths = b.create(rel, memory=self.memory_mb is not None)
        try:
            b.set_cpu_quota(paths, self.cpus, self.period_us)
            if self.cpu_weight is not None:
                parent = b.paths_for(PARENT)
                if b.cpu_weight(parent) < self.cpu_weight:
                    b.set_cpu_weight(parent, self.cpu_weight)
                b.set_cpu_weight(paths, self.cpu_weight)
            if cpuset_cpus:
                b.set_cpuset(paths, format_cpu_list(cpuset_cpus))
            if self.memory_mb is not None:
                b.set_memory(paths, self.memory_mb * 1024 * 1024)
        except BaseException:
            with contextlib.suppress(OSError):
                b.remove(paths)
            raise
        self.path, self._paths, self._active = rel, paths, True
        return self

    def close(self) -> None:
        """Kill every member, wait for them, remove the group. Safe to call twice."""
        if not self._active:
            return
        try:
            self._kill_members()
        finally:
            self._active = False
            if self._paths is not None and self.backend is not None:
                try:
                    self.backend.remove(self._paths)
                except OSError as err:
                    log.warning(
                        "could not remove cgroup %s (%s); the next start removes it",
                        self.path,
                        err,
                    )
                self._paths = None

    def _kill_members(self) -> None:
        own = os.getpid()
        for p in self._spawned:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
        if self._paths is not None and self.backend is not None:
            if own in self.backend.pids(self._paths):
                self.backend.move_out(self._paths, own)
            left = self.backend.kill_all(self._paths, timeout_s=self.kill_timeout_s)
            if left:
                log.warning("cgroup %s: pids %s survived SIGKILL", self.path, left)
        else:
            for pid in self._members - {own}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if own in self._members:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, cpus_available_at_start())
        for p in self._spawned:
            try:
                p.wait(timeout=self.kill_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not exit after SIGKILL", p.pid)

    def _require_active(self) -> None:
        if not self._active:
            raise RuntimeError(f"{self!r} is not active: use it inside 'with'")

    # ------------------------------------------------------------------ control
    def add_pid(self, pid: int) -> None:
        """Move a running process (all its threads) into the group."""
        self._require_active()
        if self._paths is not None and self.backend is not None:
            self.backend.add_pid(self._paths, pid)
        else:
            pin_threads(pid, self._affinity)
        self._members.add(pid)

    def set_cpus(self, cpus: float) -> None:
        """Change the CPU quota of the running group in place (members keep running).

        In the fallback the affinity of every member's threads changes instead.
        """
        self._require_active()
        if not cpus > 0:
            raise ValueError(f"cpus must be positive, got {cpus}")
        if self._paths is not None and self.backend is not None:
            self.backend.set_cpu_quota(self._paths, cpus, self.period_us)
        else:
            cpuset = validate_cpuset(self.cpuset, cpus_available()) if self.cpuset else None
            self._affinity = fallback_affinity(cpus, cpuset, cpus_available_at_start())
            for pid in self.pids():
                pin_threads(pid, self._affinity)
        self.cpus = cpus

    def pids(self) -> list[int]:
        """Processes in the group (tracked members in the fallback)."""
        self._require_active()
        if self._paths is not None and self.backend is not None:
            return self.backend.pids(self._paths)
        tracked = self._members | {p.pid for p in self._spawned}
        return sorted(p for p in tracked if pid_alive(p))

    def cpu_usage_s(self) -> float:
        """CPU seconds used by the group's processes since it was created.

        The fallback adds user + system time (and reaped children's) of the live
        tracked members, so processes that already exited are not counted there.
        """
        self._require_active()
        if self._paths is not None and self.backend is not None:
            return self.backend.cpu_usage_s(self._paths)
        return sum(_proc_cpu_s(p) for p in self.pids())

    def throttled(self) -> dict[str, float]:
        """CFS throttling: ``nr_periods``, ``nr_throttled``, ``throttled_s`` (``{}`` in the fallback)."""
        self._require_active()
        if self._paths is not None and self.backend is not None:
            return self.backend.throttled(self._paths)
        return {}

    def _spawned_add(self, proc: subprocess.Popen[Any]) -> None:
        self._spawned.append(proc)
        self._members.add(proc.pid)


_START_AFFINITY = sorted(os.sched_getaffinity(0))


def cpus_available_at_start() -> list[int]:
    """CPUs this process could use when edgewise was imported (before any pinning)."""
    return list(_START_AFFINITY)


def pin_threads(pid: int, cpus: Sequence[int]) -> None:
    """Pin every thread of process ``pid`` to ``cpus`` (threads it starts later inherit)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.sched_setaffinity(tid, cpus)


def _proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


_WRAPPER = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; '
    'n=$((n - 1)); done; exec "$@"'
)


def spawn_in_cgroup(
    cmd: Sequence[str], cgroup: CGroup, **popen_kwargs: Any
) -> subprocess.Popen[Any]:
    """Start ``cmd`` already inside ``cgroup``, in its own process group.

    A tiny ``/bin/sh`` wrapper writes its own pid into the group's ``cgroup.procs``
    file(s) and then ``exec``\\ s the command, so the command never runs outside the
    group (safe with threads, unlike ``preexec_fn``). In the affinity fallback the
    child is pinned before ``exec`` and gets ``OMP_NUM_THREADS`` (and the MKL /
    OpenBLAS equivalents) set to :attr:`CGroup.threads` unless the environment already
    has them. The group kills the child (and its process group) when it closes.

    Parameters
    ----------
    cmd
        Program and arguments (no shell).
    cgroup
        An active :class:`CGroup`.
    **popen_kwargs
        Passed to :class:`subprocess.Popen` (``stdout``, ``env``, ``cwd``...).

    Raises
    ------
    FileNotFoundError
        If the program is not found.
    """
    cgroup._require_active()
    if popen_kwargs.get("shell"):
        raise ValueError("spawn_in_cgroup runs a program, not a shell string: pass a list")
    cmd = list(cmd)
    if not cmd:
        raise ValueError("empty command")
    env = popen_kwargs.get("env")
    path_var = (env or os.environ).get("PATH", os.defpath)
    if os.sep not in cmd[0] and shutil.which(cmd[0], path=path_var) is None:
        raise FileNotFoundError(f"program not found on PATH: {cmd[0]}")
    if "process_group" not in popen_kwargs and not popen_kwargs.get("start_new_session"):
        popen_kwargs["process_group"] = 0
    paths = cgroup.cgroup_paths()
    if paths is not None and cgroup.backend is not None:
        files = [str(f) for f in cgroup.backend.procs_files(paths)]
        argv = ["/bin/sh", "-c", _WRAPPER, "edgewise-cgexec", str(len(files)), *files, *cmd]
        proc = subprocess.Popen(argv, **popen_kwargs)
    else:
        child_env = dict(env if env is not None else os.environ)
        for key in THREAD_ENV:
            child_env.setdefault(key, str(cgroup.threads))
        popen_kwargs["env"] = child_env
        cpus = list(cgroup._affinity)
        user_preexec = popen_kwargs.pop("preexec_fn", None)

        def _pin() -> None:
            os.sched_setaffinity(0, cpus)
            if user_preexec is not None:
                user_preexec()

        proc = subprocess.Popen(cmd, preexec_fn=_pin, **popen_kwargs)
    cgroup._spawned_add(proc)
    return proc


def _reset_for_tests() -> None:
    """Forget the detected backend, the stale-cleanup memo and the warning flag."""
    global _warned
    with _lock:
        _backend_cache.clear()
        _stale_done.clear()
        _warned = False
