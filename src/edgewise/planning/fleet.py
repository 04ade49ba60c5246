"""Several services on one pool of nodes: replica counts and placement, with interference.

Pure functions, no effects: the caller injects how much slower a replica runs next to
its neighbours (a :data:`SlowdownFn`, from the knowledge base's interference models)
and what capacity a replica keeps at a slowdown (a :data:`DerateFn`, from its
service-time profile), and stores or simulates the returned :class:`FleetPlan`.

For one planning window with a rate per service:

* **ours** (:func:`plan_fleet`): each service's replica mix comes from the single-service
  planner (:func:`edgewise.planning.serving.plan_exact`) on solo capacities; from it
  follows the largest slowdown every replica of the service may suffer while the mix
  still covers the rate (its *tolerance*, through the derate function). Replicas are
  placed largest first, each on the fullest node where it fits and where no replica
  (it, or one already there) is predicted slower than its service tolerates; else on
  a fresh node (cheapest per CPU). A replica that fits nowhere adds a replica to its
  service (raising the tolerance) and the placement starts again; when no node has room
  left the plan fails with one line naming the service and its shortfall. A last pass
  adds a replica to a service where that lets the fleet use fewer nodes. Cost is what
  the nodes in use cost per hour (an empty node is released, as a cluster autoscaler
  does).
* **interference-blind baselines** (:func:`plan_blind`): the same replica mixes (solo
  capacities, same flavors and prices), placed largest first by CPUs and memory alone:
  ``ray-spread`` puts each replica on the node with the most free CPUs (Ray Serve
  spreads replicas), ``first-fit`` on the first node in pool order where it fits (bin
  packing). A replica with no room is left out (``unplaced``) rather than failing.

A window plans for one rate per service; :func:`grid_rate` rounds it up to a 2 % grid
so that a recurring rate reuses the memoised single-service plan (:func:`solo_replicas`).

Where the slowdown function has no interference model for a pair it answers 1.0 with a
source saying so (``solo (no model for X next to Y)``); the plan keeps those notes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewise.errors import InfeasibleError
from edgewise.planning.serving import COVER_RTOL, ReplicaOption, plan_exact

__all__ = [
    "BLIND_RULES",
    "MAX_SLOWDOWN",
    "RATE_STEP",
    "DerateFn",
    "FleetPlan",
    "Node",
    "PlacedReplica",
    "ServiceOptions",
    "SlowdownEstimate",
    "SlowdownFn",
    "grid_rate",
    "linear_derate",
    "plan_blind",
    "plan_fleet",
    "replica_slowdowns",
    "solo_replicas",
    "tolerance",
]

#: Largest slowdown a tolerance is searched up to.
MAX_SLOWDOWN = 8.0
#: Step of the geometric grid rates are planned on (:func:`grid_rate`): 2 %.
RATE_STEP = 1.02


def grid_rate(rate_rps: float, step: float = RATE_STEP) -> float:
    """``rate_rps`` rounded up to a geometric grid (0 stays 0), so a recurring rate is
    planned once and never for less than it is."""
    if rate_rps <= 0:
        return 0.0
    return float(step ** math.ceil(round(math.log(rate_rps) / math.log(step), 9)))


@dataclass(frozen=True)
class SlowdownEstimate:
    """How much slower a replica's requests run next to its neighbours, and from what."""

    factor: float
    source: str


#: ``slowdown(model, neighbour_models)``: neighbours sorted, the replica itself left out.
SlowdownFn = Callable[[str, tuple[str, ...]], SlowdownEstimate]
#: ``derate(option, factor)``: capacity (rps) of one replica whose service times are
#: ``factor`` times slower; ``option.capacity_rps`` at factor 1, non-increasing in it.
DerateFn = Callable[[ReplicaOption, float], float]


def linear_derate(option: ReplicaOption, factor: float) -> float:
    """Capacity divided by the slowdown (a first approximation, for tests and sketches)."""
    return option.capacity_rps / max(factor, 1.0)


@dataclass(frozen=True)
class Node:
    """A node of the pool: CPUs, memory and its price per hour while in use."""

    name: str
    cpus: float
    memory_mb: int
    price_per_hour: float = 0.0


@dataclass(frozen=True)
class ServiceOptions:
    """One service to plan: its replica options (variant x flavor) and accuracy floor."""

    name: str
    options: tuple[ReplicaOption, ...]
    min_accuracy: float = 0.0


@dataclass(frozen=True)
class PlacedReplica:
    """One replica of a service on a node."""

    service: str
    option: ReplicaOption
    node: str
    memory_mb: int

    @property
    def model(self) -> str:
        """The model variant it runs."""
        return self.option.model


@dataclass(frozen=True)
class FleetPlan:
    """Replicas placed on nodes for one window, with what the placement predicts.

    Attributes
    ----------
    policy : str
        ``ours``, ``ray-spread`` or ``first-fit``.
    rates_rps : dict
        Rate planned for per service.
    replicas : tuple of PlacedReplica
        Every placed replica.
    slowdowns : tuple of SlowdownEstimate
        Predicted slowdown of each replica (aligned with ``replicas``).
    unplaced : tuple of (service, option)
        Replicas a blind baseline found no room for (ours fails instead).
    cost_per_hour : float
        Price of the nodes holding at least one replica.
    notes : tuple of str
        Fallbacks to solo capacity and other remarks, each once.
    """

    policy: str
    rates_rps: Mapping[str, float]
    replicas: tuple[PlacedReplica, ...]
    slowdowns: tuple[SlowdownEstimate, ...]
    unplaced: tuple[tuple[str, ReplicaOption], ...] = ()
    cost_per_hour: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def nodes_used(self) -> int:
        """Nodes holding at least one replica."""
        return len({r.node for r in self.replicas})

    @property
    def replica_cost_per_hour(self) -> float:
        """What the replicas cost at their flavors' prices."""
        return sum(r.option.price_per_hour for r in self.replicas)

    def capacity_rps(self, derate: DerateFn) -> dict[str, float]:
        """Each service's capacity with every replica derated by its slowdown."""
        out = dict.fromkeys(self.rates_rps, 0.0)
        for r, s in zip(self.replicas, self.slowdowns, strict=True):
            out[r.service] = out.get(r.service, 0.0) + derate(r.option, s.factor)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary: replicas per node, cost and notes."""
        nodes: dict[str, list[dict[str, Any]]] = {}
        for r, s in zip(self.replicas, self.slowdowns, strict=True):
            nodes.setdefault(r.node, []).append(
                {
                    "service": r.service,
                    "model": r.model,
                    "flavor": r.option.flavor,
                    "slowdown": round(s.factor, 4),
                    "source": s.source,
                }
            )
        return {
            "policy": self.policy,
            "rates_rps": dict(self.rates_rps),
            "nodes": nodes,
            "nodes_used": self.nodes_used,
            "unplaced": [{"service": s, "flavor": o.flavor} for s, o in self.unplaced],
            "cost_per_hour": self.cost_per_hour,
            "replica_cost_per_hour": self.replica_cost_per_hour,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- shared pieces


def solo_replicas(service: ServiceOptions, rate_rps: float) -> list[ReplicaOption]:
    """The cheapest replica mix covering ``rate_rps`` on solo capacities, one entry a replica.

    Memoised (:func:`_solo_mix`): a fleet re-planned every window asks the same
    question for every policy, and again whenever a rate recurs.

    Raises
    ------
    InfeasibleError
        The single-service planner's reason, prefixed with the service's name.
    """
    return list(_solo_mix(service, float(rate_rps)))


@functools.lru_cache(maxsize=4096)
def _solo_mix(service: ServiceOptions, rate_rps: float) -> tuple[ReplicaOption, ...]:
    try:
        plan = plan_exact(service.options, rate_rps, service.min_accuracy)
    except InfeasibleError as err:
        raise InfeasibleError(f"service {service.name!r}: {err}") from None
    by_key = {o.key: o for o in service.options}
    return tuple(by_key[k] for k, n in sorted(plan.counts.items()) for _ in range(n))


def replica_slowdowns(
    replicas: Sequence[PlacedReplica], slowdown: SlowdownFn
) -> tuple[SlowdownEstimate, ...]:
    """The slowdown of every replica next to the others on its node (aligned)."""
    on_node: dict[str, list[str]] = {}
    for r in replicas:
        on_node.setdefault(r.node, []).append(r.model)
    out = []
    for r in replicas:
        others = list(on_node[r.node])
        others.remove(r.model)
        out.append(slowdown(r.model, tuple(sorted(others))))
    return tuple(out)


def _node_cost(replicas: Sequence[PlacedReplica], nodes: Sequence[Node]) -> float:
    used = {r.node for r in replicas}
    return sum(n.price_per_hour for n in nodes if n.name in used)


def _notes(slowdowns: Sequence[SlowdownEstimate]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.source for s in slowdowns if s.source.startswith("solo (")))


@dataclass
class _Room:
    """Free CPUs and memory of one node, and the replicas on it (service, model)."""

    node: Node
    cpus: float
    memory_mb: int
    members: list[tuple[str, str]] = field(default_factory=list)

    def fits(self, option: ReplicaOption, memory_mb: int) -> bool:
        return option.cpus <= self.cpus + 1e-9 and memory_mb <= self.memory_mb

    def take(self, service: str, option: ReplicaOption, memory_mb: int) -> None:
        self.cpus -= option.cpus
        self.memory_mb -= memory_mb
        self.members.append((service, option.model))


def _rooms(nodes: Sequence[Node]) -> list[_Room]:
    return [_Room(n, n.cpus, n.memory_mb) for n in nodes]


def _order(items: Sequence[tuple[str, ReplicaOption]]) -> list[tuple[str, ReplicaOption]]:
    """Largest replicas first (then by service and model, for a stable plan)."""
    return sorted(items, key=lambda it: (-it[1].cpus, it[0], it[1].model))


# --------------------------------------------------------------------------- blind baselines


def _spread(rooms: Sequence[_Room], option: ReplicaOption, memory_mb: int) -> _Room | None:
    fit = [r for r in rooms if r.fits(option, memory_mb)]
    return max(fit, key=lambda r: (r.cpus, -rooms.index(r))) if fit else None


def _first_fit(rooms: Sequence[_Room], option: ReplicaOption, memory_mb: int) -> _Room | None:
    return next((r for r in rooms if r.fits(option, memory_mb)), None)


BLIND_RULES: dict[str, Callable[[Sequence[_Room], ReplicaOption, int], _Room | None]] = {
    "ray-spread": _spread,
    "first-fit": _first_fit,
}
"""Interference-blind placement rules by name."""


def plan_blind(
    rule: str,
    services: Sequence[ServiceOptions],
    rates_rps: Mapping[str, float],
    nodes: Sequence[Node],
    memory_mb: Mapping[str, int],
    slowdown: SlowdownFn,
) -> FleetPlan:
    """An interference-blind plan: solo-sized replica mixes placed by ``rule``.

    Parameters
    ----------
    rule : str
        A key of :data:`BLIND_RULES`.
    services, rates_rps
        The services and the rate of each.
    nodes : sequence of Node
        The pool, in order.
    memory_mb : mapping
        Memory of one replica of each flavor.
    slowdown : SlowdownFn
        Used only to report the slowdowns the placement brings (not to place).

    Returns
    -------
    FleetPlan
        Replicas with no room on any node are listed as ``unplaced``.
    """
    place = BLIND_RULES[rule]
    rooms = _rooms(nodes)
    items = [(s.name, o) for s in services for o in solo_replicas(s, rates_rps[s.name])]
    placed: list[PlacedReplica] = []
    unplaced: list[tuple[str, ReplicaOption]] = []
    for name, opt in _order(items):
        mem = memory_mb[opt.flavor]
        room = place(rooms, opt, mem)
        if room is None:
            unplaced.append((name, opt))
            continue
        room.take(name, opt, mem)
        placed.append(PlacedReplica(name, opt, room.node.name, mem))
    slow = replica_slowdowns(placed, slowdown)
    return FleetPlan(
        policy=rule,
        rates_rps=dict(rates_rps),
        replicas=tuple(placed),
        slowdowns=slow,
        unplaced=tuple(unplaced),
        cost_per_hour=_node_cost(placed, nodes),
        notes=_notes(slow),
    )


# --------------------------------------------------------------------------- ours


def tolerance(options: Sequence[ReplicaOption], rate_rps: float, derate: DerateFn) -> float:
    """Largest slowdown every replica of a mix may suffer while it still covers the rate.

    Parameters
    ----------
    options : sequence of ReplicaOption
        The mix, one entry a replica.
    rate_rps : float
        The service's rate.
    derate : DerateFn
        Capacity of a replica at a slowdown.

    Returns
    -------
    float
        In ``[1, MAX_SLOWDOWN]``; 1 when the mix only just covers the rate alone.
    """

    def covered(factor: float) -> bool:
        cap = sum(derate(o, factor) for o in options)
        return cap >= rate_rps * (1.0 - COVER_RTOL)

    if rate_rps <= 0 or covered(MAX_SLOWDOWN):
        return MAX_SLOWDOWN
    lo, hi = 1.0, MAX_SLOWDOWN
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if covered(mid) else (lo, mid)
    return lo


def _compatible(
    room: _Room,
    service: str,
    model: str,
    tolerances: Mapping[str, float],
    slowdown: SlowdownFn,
) -> bool:
    """Whether every replica on ``room`` stays within its tolerance once ``model`` joins."""
    members = [*room.members, (service, model)]
    models = [m for _, m in members]
    for i, (svc, m) in enumerate(members):
        others = tuple(sorted(models[:i] + models[i + 1 :]))
        if slowdown(m, others).factor > tolerances[svc] + 1e-9:
            return False
    return True


@dataclass(frozen=True)
class _Attempt:
    """One aware placement: what was placed, and the replica that found no node."""

    placed: tuple[PlacedReplica, ...]
    failed: tuple[str, ReplicaOption] | None = None
    room_left: bool = True
    """Whether some node had the CPUs and memory for the failed replica (interference
    aside): if not, more replicas cannot help."""


def _place_aware(
    mixes: Mapping[str, Sequence[ReplicaOption]],
    nodes: Sequence[Node],
    memory_mb: Mapping[str, int],
    tolerances: Mapping[str, float],
    slowdown: SlowdownFn,
) -> _Attempt:
    """Largest first: the fullest compatible node in use, else the cheapest fresh one."""
    rooms = _rooms(nodes)
    placed: list[PlacedReplica] = []
    items = [(name, o) for name, mix in mixes.items() for o in mix]
    for name, opt in _order(items):
        mem = memory_mb[opt.flavor]
        fit = [r for r in rooms if r.fits(opt, mem)]
        # the fullest node in use where it fits and every slowdown stays tolerated
        used = sorted((r for r in fit if r.members), key=lambda r: r.cpus)  # stable
        room = next(
            (r for r in used if _compatible(r, name, opt.model, tolerances, slowdown)), None
        )
        fresh = [r for r in fit if not r.members]
        if room is None and fresh:
            room = min(
                fresh,
                key=lambda r: (r.node.price_per_hour / r.node.cpus, -r.node.cpus, rooms.index(r)),
            )
        if room is None:
            return _Attempt(tuple(placed), (name, opt), room_left=bool(fit))
        room.take(name, opt, mem)
        placed.append(PlacedReplica(name, opt, room.node.name, mem))
    return _Attempt(tuple(placed))


def _extra_option(service: ServiceOptions) -> ReplicaOption:
    """The option a service grows by: the most cost-effective accurate one."""
    usable = [
        o for o in service.options if o.accuracy >= service.min_accuracy and o.capacity_rps > 0
    ]
    return min(usable, key=lambda o: (o.price_per_hour / o.capacity_rps, -o.capacity_rps))


def _shortfall(
    service: str,
    rate_rps: float,
    attempt: _Attempt,
    slowdown: SlowdownFn,
    derate: DerateFn,
) -> InfeasibleError:
    """The one-line error of a service that no node has room for."""
    assert attempt.failed is not None
    _, opt = attempt.failed
    slow = replica_slowdowns(attempt.placed, slowdown)
    cap = sum(
        derate(r.option, s.factor)
        for r, s in zip(attempt.placed, slow, strict=True)
        if r.service == service
    )
    short = max(0.0, rate_rps - cap)
    return InfeasibleError(
        f"service {service!r} cannot meet its SLO on this pool: {cap:.4g} of its "
        f"{rate_rps:.4g} rps placed ({short:.4g} rps, {short / rate_rps:.1%} short); no node "
        f"has room for another {opt.flavor} replica ({opt.cpus:g} CPUs) where every "
        "predicted slowdown stays within its service's SLO"
    )


def _place_until_fits(
    services: Sequence[ServiceOptions],
    mixes: dict[str, list[ReplicaOption]],
    rates_rps: Mapping[str, float],
    nodes: Sequence[Node],
    memory_mb: Mapping[str, int],
    slowdown: SlowdownFn,
    derate: DerateFn,
) -> tuple[PlacedReplica, ...]:
    """Place the mixes, growing a service whose replica finds no compatible node."""
    by_name = {s.name: s for s in services}
    room_cpus = sum(n.cpus for n in nodes)
    known: dict[tuple[str, int], float] = {}  # (service, replicas) -> tolerance
    while True:
        tol = {}
        for n, mix in mixes.items():
            if (n, len(mix)) not in known:
                known[(n, len(mix))] = tolerance(mix, rates_rps[n], derate)
            tol[n] = known[(n, len(mix))]
        attempt = _place_aware(mixes, nodes, memory_mb, tol, slowdown)
        if attempt.failed is None:
            return attempt.placed
        name = attempt.failed[0]
        extra = _extra_option(by_name[name])
        asked = sum(o.cpus for mix in mixes.values() for o in mix) + extra.cpus
        if not attempt.room_left or asked > room_cpus + 1e-9:
            raise _shortfall(name, rates_rps[name], attempt, slowdown, derate)
        mixes[name] = [*mixes[name], extra]


def plan_fleet(
    services: Sequence[ServiceOptions],
    rates_rps: Mapping[str, float],
    nodes: Sequence[Node],
    memory_mb: Mapping[str, int],
    slowdown: SlowdownFn,
    derate: DerateFn,
    *,
    improve: bool = True,
) -> FleetPlan:
    """The interference-aware plan of one window (see the module docstring).

    Parameters
    ----------
    services : sequence of ServiceOptions
        The services, each with its replica options at solo capacity.
    rates_rps : mapping
        Rate to cover per service name.
    nodes : sequence of Node
        The pool.
    memory_mb : mapping
        Memory of one replica of each flavor.
    slowdown : SlowdownFn
        Predicted slowdown of a model next to neighbour models.
    derate : DerateFn
        Capacity of a replica at a slowdown.
    improve : bool
        Try one more replica per service where that frees a node.

    Returns
    -------
    FleetPlan
        Every service covered at its predicted slowdowns.

    Raises
    ------
    InfeasibleError
        One line naming the service that cannot meet its SLO and by how much.
    """
    mixes = {s.name: solo_replicas(s, rates_rps[s.name]) for s in services}
    placed = _place_until_fits(services, mixes, rates_rps, nodes, memory_mb, slowdown, derate)
    cost = _node_cost(placed, nodes)
    if improve:
        for s in services:
            if rates_rps[s.name] <= 0:
                continue
            trial = {**mixes, s.name: [*mixes[s.name], _extra_option(s)]}
            try:
                alt = _place_until_fits(
                    services, trial, rates_rps, nodes, memory_mb, slowdown, derate
                )
            except InfeasibleError:
                continue
            alt_cost = _node_cost(alt, nodes)
            if alt_cost < cost - 1e-9:
                mixes, placed, cost = trial, alt, alt_cost
    slow = replica_slowdowns(placed, slowdown)
    return FleetPlan(
        policy="ours",
        rates_rps=dict(rates_rps),
        replicas=placed,
        slowdowns=slow,
        cost_per_hour=cost,
        notes=_notes(slow),
    )
