"""Sampling a stressor's process tree, and what a mix achieved.

:func:`sample_tree` adds up the CPU time, I/O bytes and resident memory of one stress-ng
process tree (psutil reads only); :class:`Achieved` is the achieved intensity per
resource with the raw activity behind it; :func:`read_memrate_mbs` reads memrate's own
bandwidth figures from the YAML stress-ng writes when it stops.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from edgewise.interference.stress_plan import StressorPlan


@dataclass
class TreeTotals:
    """Cumulative CPU seconds and I/O bytes of a process tree, and its resident bytes now."""

    cpu_s: float = 0.0
    io_bytes: float = 0.0
    rss: float = 0.0


@dataclass
class GroupState:
    """One running stressor: its plan, its process and what its tree used so far."""

    plan: StressorPlan
    proc: subprocess.Popen[bytes]
    per_pid: dict[int, tuple[float, float]] = field(default_factory=dict)
    rss_max: float = 0.0
    rss_now: float = 0.0

    def totals(self) -> TreeTotals:
        """The tree's totals over every process seen so far (gone ones included)."""
        cpu = sum(v[0] for v in self.per_pid.values())
        io = sum(v[1] for v in self.per_pid.values())
        return TreeTotals(cpu, io, self.rss_now)


def sample_tree(state: GroupState) -> None:
    """Record the CPU time and I/O bytes of each process of the tree, and its RSS."""
    try:
        root = psutil.Process(state.proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    rss = 0.0
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                try:
                    io = p.io_counters()
                    iob = float(io.read_chars + io.write_chars)
                except (psutil.Error, AttributeError):
                    iob = 0.0
                rss += float(p.memory_info().rss)
            state.per_pid[p.pid] = (t.user + t.system, iob)
        except psutil.Error:
            continue
    state.rss_now = rss
    state.rss_max = max(state.rss_max, rss)


def has_children(pid: int) -> bool:
    """Whether process ``pid`` has forked (stress-ng forks one worker per instance)."""
    try:
        return bool(psutil.Process(pid).children())
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Achieved:
    """Achieved intensity per resource (normalised) and the raw activity behind it."""

    intensity: dict[str, float]
    raw: dict[str, float]
    wall_s: float


def read_memrate_mbs(path: Path) -> float | None:
    """Mean per-direction MB/s over memrate's read*/write* tests, from its yaml."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    for entry in doc.get("metrics") or []:
        if isinstance(entry, dict) and entry.get("stressor") == "memrate":
            reads = [
                float(v)
                for k, v in entry.items()
                if k.startswith("read") and k.endswith("mb-per-sec")
            ]
            writes = [
                float(v)
                for k, v in entry.items()
                if k.startswith("write") and k.endswith("mb-per-sec")
            ]
            vals = [sum(reads) / len(reads)] if reads else []
            vals += [sum(writes) / len(writes)] if writes else []
            return sum(vals) / len(vals) if vals else None
    return None
