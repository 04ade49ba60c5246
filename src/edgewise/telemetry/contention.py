"""How much of the host other tenants took during a measurement window.

A live measurement on a shared host is only comparable with another when the host gave
it the CPUs it expected. :class:`ContentionMeter` reads ``/proc/stat`` and this process
tree's CPU time at the start and end of a window and reports the share of the host's
CPU time that went to *other* processes (busy time not spent by us) and to hypervisor
steal. A process of ours that exits inside the window hands its CPU time to the parent
that reaps it (its ``children_*`` times), so the sum stays continuous; a process reaped
by a process outside our tree (none in practice) would make the foreign share an upper
bound.
"""

from __future__ import annotations

import os
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


def _own_cpu_s(root: psutil.Process) -> float:
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        # a reaped child's time moves into its parent's children_* counters: counting
        # both keeps the sum continuous when a replica or worker exits in the window
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _cpu() -> CpuTimes:
    return parse_stat(Path("/proc/stat").read_text()).cpu


class ContentionMeter(Closing):
    """``with ContentionMeter() as m: ...`` then ``m.result`` (a :class:`Contention`)."""

    def __init__(self) -> None:
        self._root = psutil.Process()
        self._hz = float(os.sysconf("SC_CLK_TCK"))
        self.result: Contention | None = None

    def _on_enter(self) -> None:
        self._start = _cpu()
        self._own_start = _own_cpu_s(self._root)

    def close(self) -> None:
        """End the window and set :attr:`result` (what leaving ``with`` does)."""
        end = _cpu()
        own = max(0.0, _own_cpu_s(self._root) - self._own_start)
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
