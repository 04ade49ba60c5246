"""A fleet plan as the live runtime executes it: nodes as CPU sets, pools per service.

Pure. On one host every node of a fleet spec is emulated by a set of CPUs
(:func:`node_cpusets`); a replica placed on a node runs pinned to that node's CPUs with
its flavor's CPU quota. Each service is one deployment whose pool entries are
``flavor@node`` (:func:`pool_key`): :func:`service_pools` turns one window's
:class:`~edgewise.planning.fleet.FleetPlan` into every service's entries, CPU quotas and
CPU sets; :func:`ahead` is the pool held while the next window's replicas start (the
larger of the two per entry); :func:`nodes_in_use` and :func:`fleet_cost_per_hour` price
what actually runs, the way the simulator prices a plan (every node holding a replica).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgewise.errors import SpecError
from edgewise.planning.fleet import FleetPlan, Node

__all__ = [
    "ServiceLivePool",
    "ahead",
    "flavor_of",
    "fleet_cost_per_hour",
    "node_cpusets",
    "node_of",
    "nodes_in_use",
    "pool_key",
    "service_pools",
]

_SEP = "@"


def pool_key(flavor: str, node: str) -> str:
    """The pool entry of replicas of ``flavor`` on ``node``."""
    return f"{flavor}{_SEP}{node}"


def flavor_of(key: str) -> str:
    """The flavor of pool entry ``key``."""
    return key.split(_SEP, 1)[0]


def node_of(key: str) -> str:
    """The node of pool entry ``key``."""
    return key.split(_SEP, 1)[1] if _SEP in key else ""


def node_cpusets(nodes: Sequence[Node], host_cpus: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Emulate each node by whole CPUs of this host, in order, none shared.

    Node ``k`` gets the next ``ceil(cpus)`` CPUs of ``host_cpus``. Its replicas' CPU
    quotas (the flavors' ``cpus``) are what bounds them; the set is where they run, so
    replicas on one node contend for its CPUs and those on two nodes do not.

    Raises
    ------
    SpecError
        The nodes need more CPUs than the host has (one line: how many of how many).
    """
    out: dict[str, tuple[int, ...]] = {}
    cpus = list(host_cpus)
    need = sum(math.ceil(n.cpus - 1e-9) for n in nodes)
    if need > len(cpus):
        raise SpecError(
            f"the fleet's {len(nodes)} nodes need {need} whole CPUs to be emulated on this "
            f"host, which has {len(cpus)}: give fewer or smaller nodes"
        )
    at = 0
    for n in nodes:
        k = math.ceil(n.cpus - 1e-9)
        out[n.name] = tuple(cpus[at : at + k])
        at += k
    return out


@dataclass(frozen=True)
class ServiceLivePool:
    """One service's part of a plan, as its deployment runs it.

    Attributes
    ----------
    model : str or None
        The variant served (``None``: the plan holds no replica of the service).
    replicas, cpus : dict
        Replicas and the CPU quota of each, per ``flavor@node`` entry.
    cpusets : dict
        The CPUs of each entry's node.
    notes : tuple of str
        What the deployment cannot run as planned (several variants at once).
    """

    model: str | None
    replicas: dict[str, int]
    cpus: dict[str, float]
    cpusets: dict[str, tuple[int, ...]]
    notes: tuple[str, ...] = field(default_factory=tuple)


def service_pools(
    plan: FleetPlan, services: Sequence[str], cpusets: Mapping[str, Sequence[int]]
) -> dict[str, ServiceLivePool]:
    """Every service's pool entries in one window's ``plan``.

    A deployment serves one variant at a time: where the plan mixes variants of a
    service, the one with the most replicas is served by all of them, and a note says so.
    """
    out: dict[str, ServiceLivePool] = {}
    for name in services:
        mine = [r for r in plan.replicas if r.service == name]
        counts: dict[str, int] = {}
        for r in mine:
            counts[r.model] = counts.get(r.model, 0) + 1
        model = max(counts, key=lambda m: (counts[m], m)) if counts else None
        notes: tuple[str, ...] = ()
        if len(counts) > 1:
            notes = (
                f"{name}: the plan mixes {', '.join(sorted(counts))}; the deployment serves "
                f"{model} on every replica",
            )
        replicas: dict[str, int] = {}
        cpus: dict[str, float] = {}
        sets: dict[str, tuple[int, ...]] = {}
        for r in mine:
            key = pool_key(r.option.flavor, r.node)
            replicas[key] = replicas.get(key, 0) + 1
            cpus[key] = r.option.cpus
            sets[key] = tuple(cpusets[r.node])
        out[name] = ServiceLivePool(model, replicas, cpus, sets, notes)
    return out


def ahead(now: ServiceLivePool, upcoming: ServiceLivePool) -> ServiceLivePool:
    """The pool held while ``upcoming``'s replicas start: the larger count per entry.

    Entries of ``upcoming`` are listed first, so that replicas starting now are given
    the next window's places; the current ones keep theirs.
    """
    keys = list(upcoming.replicas) + [k for k in now.replicas if k not in upcoming.replicas]
    replicas = {k: max(now.replicas.get(k, 0), upcoming.replicas.get(k, 0)) for k in keys}
    cpus = {**now.cpus, **upcoming.cpus}
    sets = {**now.cpusets, **upcoming.cpusets}
    return ServiceLivePool(now.model or upcoming.model, replicas, cpus, sets, upcoming.notes)


def nodes_in_use(running: Mapping[str, Mapping[str, int]]) -> set[str]:
    """Nodes holding at least one running replica, from each service's replicas per entry."""
    return {node_of(k) for pool in running.values() for k, n in pool.items() if n > 0}


def fleet_cost_per_hour(running: Mapping[str, Mapping[str, int]], nodes: Sequence[Node]) -> float:
    """What the nodes holding a running replica cost per hour (the plan's cost model)."""
    used = nodes_in_use(running)
    return sum(n.price_per_hour for n in nodes if n.name in used)
