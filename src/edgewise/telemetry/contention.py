"""How much of the host other tenants took during a measurement window.

A live measurement on a shared host is only comparable with another when the host gave
it the CPUs it expected. :class:`ContentionMeter` reads ``/proc/stat`` at the start and
end of a window and this process tree's CPU time throughout it, and reports the share of
the host's CPU time that went to *other* processes (busy time not spent by us) and to
hypervisor steal.

Our CPU time is sampled per process (every ``interval_s``, and at both ends): each
process of the tree counts from when it was first seen, and keeps being read after it
left the tree, so the time of a process whose parent died before it (Ray's workers when
the raylet stops first: re-parented out of our tree, their time in none of our
``children_*`` counters) still counts as ours. What a process uses after its last sample
(at most ``interval_s`` each) and a process that lived between two samples are missed,
so the foreign share is an upper bound.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgewise.lifecycle import Closing
from edgewise.telemetry.procfs import CpuTimes, parse_stat


@dataclass(frozen=True)
class Contention:
    """Shares of the host's CPU time over a window (0..1 of all CPUs)."""

    seconds: float
    foreign_frac: float
    """Busy time of processes that are not ours (an upper bound, see the module)."""
    steal_frac: float
    """Time the hypervisor gave to other guests."""

    def too_busy(self, max_foreign: float = 0.3, max_steal: float = 0.1) -> str | None:
        """Why the window is not comparable, or None when the host was quiet enough."""
        if self.steal_frac > max_steal:
            return (
                f"CPU steal {100 * self.steal_frac:.0f}% of the host (limit {100 * max_steal:.0f}%)"
            )
        if self.foreign_frac > max_foreign:
            return (
                f"other processes used {100 * self.foreign_frac:.0f}% of the host's CPUs "
                f"(limit {100 * max_foreign:.0f}%)"
            )
        return None


def tree_cpu_s(root: psutil.Process) -> dict[tuple[int, float], float]:
    """User + system CPU seconds of ``root`` and each descendant, keyed by (pid, start)."""
    used: dict[tuple[int, float], float] = {}
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return used
    for proc in procs:
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                used[(proc.pid, proc.create_time())] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return used


def _cpu_s_of(key: tuple[int, float]) -> float | None:
    """User + system CPU seconds of the process ``key`` (pid, start), None once it exited."""
    try:
        proc = psutil.Process(key[0])
        with proc.oneshot():
            if proc.create_time() != key[1] or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            t = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return t.user + t.system


def _cpu() -> CpuTimes:
    return parse_stat(Path("/proc/stat").read_text()).cpu


class ContentionMeter(Closing):
    """``with ContentionMeter() as m: ...`` then ``m.result`` (a :class:`Contention`).

    Parameters
    ----------
    interval_s : float
        How often this process tree's CPU time is sampled (by a background thread).
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self._root = psutil.Process()
        self._hz = float(os.sysconf("SC_CLK_TCK"))
        self._interval_s = interval_s
        self._own: dict[tuple[int, float], list[float]] = {}
        self._gone: set[tuple[int, float]] = set()
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self.result: Contention | None = None

    def _on_enter(self) -> None:
        self._start = _cpu()
        self._sample(first=True)
        self._sampler = threading.Thread(target=self._run, name="contention", daemon=True)
        self._sampler.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        """Record each process's CPU time; one first seen after the start counts from 0.

        A process seen before keeps being read after it left the tree (re-parented when
        its parent died), until it exits.
        """
        now = tree_cpu_s(self._root)
        for key in self._own.keys() - now.keys() - self._gone:
            used = _cpu_s_of(key)
            if used is None:
                self._gone.add(key)
            else:
                now[key] = used
        for key, used in now.items():
            seen = self._own.setdefault(key, [used if first else 0.0, used])
            seen[1] = used

    def own_cpu_s(self) -> float:
        """CPU seconds this process tree used in the window, as last sampled."""
        return sum(max(0.0, last - base) for base, last in list(self._own.values()))

    def close(self) -> None:
        """End the window and set :attr:`result` (what leaving ``with`` does)."""
        if self.result is not None:
            return
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        self._sample()
        end = _cpu()
        own = self.own_cpu_s()
        total = max(1, end.total - self._start.total)
        idle = (end.idle - self._start.idle) + (end.iowait - self._start.iowait)
        steal = end.steal - self._start.steal
        busy_s = (total - idle - steal) / self._hz
        ncpu = float(psutil.cpu_count() or 1)
        wall = total / self._hz / ncpu
        foreign = max(0.0, busy_s - own) / max(total / self._hz, 1e-9)
        self.result = Contention(
            seconds=wall, foreign_frac=min(1.0, foreign), steal_frac=steal / total
        )
