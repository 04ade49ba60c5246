"""Isolation: run processes in cgroups (v1 or v2) with a CPU quota, cpuset and memory limit.

This is how edgewise emulates heterogeneous devices and container flavors on one host.
:class:`CGroup` creates a group under ``edgewise/`` on entry and always cleans up on
exit; :func:`spawn_in_cgroup` starts a child already inside it; :meth:`CGroup.set_cpus`
changes the quota in place; :func:`cleanup_stale` removes groups left by a killed run.
Where cgroups are not writable a group falls back to CPU affinity plus thread counts
and warns once. Backends (:mod:`.backends`) only touch files; naming
(:mod:`.naming`) and :func:`threads_for` are pure.
"""

from __future__ import annotations

from edgewise.isolation.backends import (
    DEFAULT_PERIOD_US,
    Backend,
    CgroupV1Backend,
    CgroupV2Backend,
    detect_backend,
    quota_us,
)
from edgewise.isolation.cgroup import (
    CGroup,
    cgroups_writable,
    cleanup_stale,
    get_backend,
    pin_threads,
    spawn_in_cgroup,
    threads_for,
)

__all__ = [
    "DEFAULT_PERIOD_US",
    "Backend",
    "CGroup",
    "CgroupV1Backend",
    "CgroupV2Backend",
    "cgroups_writable",
    "cleanup_stale",
    "detect_backend",
    "get_backend",
    "pin_threads",
    "quota_us",
    "spawn_in_cgroup",
    "threads_for",
]
