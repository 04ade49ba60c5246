"""The simulated replica pool: ready replicas, pending start-ups, CPU quotas.

:class:`ReplicaPool` is the simulator's only mutable view of the deployment. A scaling
decision is applied at a second (:meth:`ReplicaPool.apply`): new replicas become ready
after the start-up delay (:meth:`ReplicaPool.pop_due`), a scale-in cancels starting
replicas first, then removes ready ones, and CPU quotas change in place at once. Every
change bumps :attr:`ReplicaPool.version`, which the simulator uses to cache what it
derives from the pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from edgewise.serving.policies.base import ScalingDecision
from edgewise.sim.model import SimFlavor

__all__ = ["AppliedDecision", "PoolMaps", "ReplicaPool", "StartUp", "price_per_hour"]


def price_per_hour(flavors: Sequence[SimFlavor], replicas: Mapping[str, int]) -> float:
    """What ``replicas[f]`` replicas of each flavor ``f`` cost per hour."""
    return sum(replicas[f.name] * f.option.price_per_hour for f in flavors)


@dataclass
class StartUp:
    """``count`` replicas of ``flavor`` asked for, ready at ``ready_at`` (trace seconds)."""

    ready_at: float
    flavor: str
    count: int


@dataclass(frozen=True)
class AppliedDecision:
    """What applying one decision did: the ready pool changed, a horizontal, a vertical action."""

    ready_changed: bool
    horizontal: bool
    vertical: bool


@dataclass(frozen=True)
class PoolMaps:
    """Read-only replica maps a policy's context holds, built once per pool version."""

    replicas: Mapping[str, int]
    starting: Mapping[str, int]
    cpus_per_replica: Mapping[str, float]


@dataclass
class ReplicaPool:
    """Replica bookkeeping: ready counts, start-up events, CPU quotas.

    Attributes
    ----------
    names : list of str
        Flavor names, in the simulator's order.
    ready : dict
        Ready replicas per flavor.
    cpus : dict
        CPUs per replica of each flavor.
    startups : list of StartUp
        Pending start-ups, ``ready_at`` ascending.
    version : int
        Bumped on every change.
    """

    names: list[str]
    ready: dict[str, int]
    cpus: dict[str, float]
    startups: list[StartUp] = field(default_factory=list)
    version: int = 0
    _maps: PoolMaps | None = field(default=None, repr=False)
    _maps_version: int = field(default=-1, repr=False)

    @classmethod
    def of(cls, flavors: Sequence[SimFlavor], initial: Mapping[str, int]) -> ReplicaPool:
        """A pool of ``flavors`` at their nominal CPUs with ``initial`` ready replicas."""
        pool = cls(
            names=[f.name for f in flavors],
            ready={f.name: 0 for f in flavors},
            cpus={f.name: f.option.cpus for f in flavors},
        )
        for name, k in initial.items():
            pool.ready[name] = int(k)
        pool.version += 1
        return pool

    def starting(self, name: str) -> int:
        """Replicas of ``name`` asked for and not ready yet."""
        return sum(e.count for e in self.startups if e.flavor == name)

    def total(self, name: str) -> int:
        """Ready plus starting replicas of ``name``."""
        return self.ready[name] + self.starting(name)

    def next_event(self) -> float:
        """When the next start-up completes (``inf`` when none is pending)."""
        return self.startups[0].ready_at if self.startups else float("inf")

    def pop_due(self, t: float) -> bool:
        """Make the start-ups due by ``t`` ready; whether any was."""
        changed = False
        while self.startups and self.startups[0].ready_at <= t:
            done = self.startups.pop(0)
            self.ready[done.flavor] += done.count
            changed = True
        if changed:
            self.version += 1
        return changed

    def cancel_starting(self, name: str, k: int) -> int:
        """Cancel up to ``k`` starting replicas of ``name``, newest first; how many."""
        done = 0
        for e in reversed(self.startups):
            if done >= k:
                break
            if e.flavor == name:
                take = min(e.count, k - done)
                e.count -= take
                done += take
        self.startups = [e for e in self.startups if e.count > 0]
        return done

    def maps(self) -> PoolMaps:
        """Totals, starting replicas and CPUs per flavor, cached until the pool changes."""
        if self._maps is None or self._maps_version != self.version:
            tot = {n: self.total(n) for n in self.names}
            self._maps = PoolMaps(
                replicas=MappingProxyType(tot),
                starting=MappingProxyType({n: tot[n] - self.ready[n] for n in self.names}),
                cpus_per_replica=MappingProxyType(dict(self.cpus)),
            )
            self._maps_version = self.version
        return self._maps

    def apply(
        self, decision: ScalingDecision, flavors: Sequence[SimFlavor], i: int, startup_s: int
    ) -> AppliedDecision:
        """Apply ``decision`` at second ``i``, clamped to each flavor's limits."""
        changed = horiz = vert = False
        self.version += 1
        for f in flavors:
            name = f.name
            target = int(decision.replicas.get(name, self.total(name)))
            target = max(0, min(target, f.option.max_replicas))
            have = self.total(name)
            if target > have:
                horiz = True
                if startup_s <= 0:
                    self.ready[name] += target - have
                    changed = True
                else:
                    self.startups.append(StartUp(float(i + startup_s), name, target - have))
            elif target < have:
                horiz = True
                cut = have - target
                cut -= self.cancel_starting(name, cut)
                if cut > 0:
                    self.ready[name] -= cut
                    changed = True
            cpus = float(decision.cpus_per_replica.get(name, self.cpus[name]))
            cpus = min(max(cpus, 0.05), f.option.max_cpus)
            if abs(cpus - self.cpus[name]) > 1e-9:
                self.cpus[name] = cpus
                vert = True
                if self.ready[name] > 0:
                    changed = True
        return AppliedDecision(changed, horiz, vert)
