"""The fleet spec: several services sharing one pool of nodes, loaded from YAML.

Pure data, as :mod:`edgewise.config`: pydantic models checked when the file is loaded,
every fault one :class:`~edgewise.errors.SpecError` line naming the file and the field.
A fleet holds

* ``services``: each a :class:`~edgewise.config.ServiceSpec` (model variants with their
  accuracy, an SLO, ``min_accuracy``) plus what simulating it needs: the peak rate its
  trace is scaled to, a phase shift in hours, and optionally the median service time of
  each variant at one CPU (used where the knowledge base holds no capacity profile);
* ``nodes``: the machines (Ray nodes, or cgroup-emulated ones) with CPUs, memory and a
  price per hour, given one by one or as a group with ``count``;
* ``flavors``: the replica sizes (:class:`~edgewise.config.FlavorSpec`).

Checked at load time, besides the field constraints: names are unique, every node holds
at least the smallest flavor, and every service has a variant reaching ``min_accuracy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from edgewise.config import (
    FlavorSpec,
    NonNegative,
    Positive,
    ServiceSpec,
    _check_unique,
    _Spec,
    load_spec,
)

__all__ = ["FleetService", "FleetSpec", "NodeGroup", "NodeSpec", "load_fleet"]


class FleetService(ServiceSpec):
    """A service of the fleet: a :class:`ServiceSpec` and how its load is simulated.

    Attributes
    ----------
    peak_rps : float
        Rate the busiest second of the simulated trace window is scaled to.
    shift_hours : int
        Phase shift of the service's trace against the others (hours later).
    service_ms : dict
        Median service time (ms) at one CPU per variant model, where the knowledge base
        has no capacity profile of it (a lognormal around it is simulated, and says so).
    """

    peak_rps: Positive = 50.0
    shift_hours: Annotated[int, Field(ge=0, le=24 * 7)] = 0
    service_ms: dict[str, Positive] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _variants_usable(self) -> FleetService:
        models = {v.model for v in self.variants}
        for name in self.service_ms:
            if name not in models:
                raise ValueError(
                    f"service_ms names {name!r}, which is not a variant of service "
                    f"{self.name!r} ({', '.join(sorted(models))})"
                )
        best = max(self.variants, key=lambda v: v.accuracy)
        if best.accuracy < self.min_accuracy:
            raise ValueError(
                f"service {self.name!r}: every variant is below min_accuracy "
                f"{self.min_accuracy:g} (best: {best.model} at {best.accuracy:g})"
            )
        return self


class NodeSpec(_Spec):
    """One node of the pool."""

    name: Annotated[str, Field(min_length=1)]
    cpus: Positive
    memory_mb: Annotated[int, Field(gt=0)] = 8192
    price_per_hour: NonNegative = 0.0


class NodeGroup(NodeSpec):
    """``count`` identical nodes named ``NAME-01``, ``NAME-02``... (one node for count 1)."""

    count: Annotated[int, Field(ge=1, le=10_000)] = 1

    def expand(self) -> list[NodeSpec]:
        """The group's nodes, one :class:`NodeSpec` each."""
        if self.count == 1:
            return [NodeSpec(**self.model_dump(exclude={"count"}))]
        width = max(2, len(str(self.count)))
        fields = self.model_dump(exclude={"count", "name"})
        return [
            NodeSpec(name=f"{self.name}-{i:0{width}d}", **fields) for i in range(1, self.count + 1)
        ]


class FleetSpec(_Spec):
    """Services, the nodes they share and the replica flavors."""

    services: Annotated[list[FleetService], Field(min_length=1)]
    nodes: Annotated[list[NodeGroup], Field(min_length=1)]
    flavors: Annotated[list[FlavorSpec], Field(min_length=1)]

    @field_validator("services")
    @classmethod
    def _unique_services(cls, services: list[FleetService]) -> list[FleetService]:
        _check_unique([s.name for s in services], "services")
        return services

    @model_validator(mode="after")
    def _nodes_hold_a_flavor(self) -> FleetSpec:
        _check_unique([f.name for f in self.flavors], "flavors")
        _check_unique([n.name for n in self.node_list], "nodes")
        small = min(self.flavors, key=lambda f: (f.cpus, f.memory_mb))
        for i, group in enumerate(self.nodes):
            fits = any(
                f.cpus <= group.cpus and f.memory_mb <= group.memory_mb for f in self.flavors
            )
            if not fits:
                raise ValueError(
                    f"nodes[{i}] {group.name!r} ({group.cpus:g} CPUs, {group.memory_mb} MB) is "
                    f"smaller than the smallest flavor {small.name!r} ({small.cpus:g} CPUs, "
                    f"{small.memory_mb} MB)"
                )
        return self

    @property
    def node_list(self) -> list[NodeSpec]:
        """Every node, groups expanded, in spec order."""
        return [n for g in self.nodes for n in g.expand()]


def load_fleet(path: str | Path) -> FleetSpec:
    """Load and check a fleet spec (one-line :class:`~edgewise.errors.SpecError` on a fault).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    FleetSpec
        The checked spec.
    """
    return load_spec(path, FleetSpec)
