"""Group names that carry their owner, so a later run can tell stale groups apart.

A group made by process ``pid`` is called ``<name>--<pid>-<start>-<seq>`` under the
``edgewise`` parent group, where ``<start>`` is the owner's start time (clock ticks
since boot, base 36) and ``<seq>`` a per-process counter. The start time guards
against pid reuse: a group is stale when no live process has that pid *and* start
time. Parsing and formatting are pure; the two ``/proc`` readers are tiny.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

__all__ = [
    "PARENT",
    "GroupOwner",
    "group_name",
    "owner_alive",
    "parse_group_name",
    "pid_alive",
    "process_start_ticks",
    "safe_name",
]

PARENT = "edgewise"
"""Every group edgewise makes lives under this parent group."""

_SEQ = itertools.count()
_NAME_RE = re.compile(r"^(?P<name>.+)--(?P<pid>\d+)-(?P<start>[0-9a-z]+)-(?P<seq>\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class GroupOwner:
    """Who made a group: its label, owner pid, owner start time (ticks), sequence."""

    name: str
    pid: int
    start_ticks: int
    seq: int


def safe_name(name: str) -> str:
    """A label safe as a directory name: other characters become ``_``; at most 64."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "group"
    return cleaned[:64]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(digits[r])
    return "".join(reversed(out))


def format_group_name(name: str, pid: int, start_ticks: int, seq: int) -> str:
    """``<safe name>--<pid>-<start base36>-<seq>`` (pure)."""
    return f"{safe_name(name)}--{pid}-{_base36(start_ticks)}-{seq}"


def parse_group_name(dirname: str) -> GroupOwner | None:
    """Inverse of :func:`format_group_name`; ``None`` for directories we did not name."""
    m = _NAME_RE.match(dirname)
    if m is None:
        return None
    return GroupOwner(
        name=m["name"], pid=int(m["pid"]), start_ticks=int(m["start"], 36), seq=int(m["seq"])
    )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[-1].split()


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies count as dead)."""
    fields = _stat_fields(pid)
    return bool(fields) and fields is not None and fields[0] not in ("Z", "X")


def owner_alive(owner: GroupOwner) -> bool:
    """Whether the process that made a group still runs (same pid and start time)."""
    return pid_alive(owner.pid) and process_start_ticks(owner.pid) == owner.start_ticks


def group_name(name: str) -> str:
    """A fresh group name owned by this process."""
    pid = os.getpid()
    start = process_start_ticks(pid) or 0
    return format_group_name(name, pid, start, next(_SEQ))
