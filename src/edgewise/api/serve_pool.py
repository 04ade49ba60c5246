"""The pool a service runs: its flavors, its model variants and the policy over both.

A service spec may declare several model variants (each with its accuracy) and a
``min_accuracy``; a flavors catalog may offer several flavors. :func:`build_pool` turns
them into what the live controller executes, as the planner and the simulator see it:
the :class:`~edgewise.serving.policies.FlavorOption` of every flavor that fits the SLO,
one :class:`~edgewise.serving.policies.ModelVariant` per eligible variant with its
capacity in each of those flavors, the policy (wrapped in a
:class:`~edgewise.serving.policies.VariantPolicy` when there is a choice of variant),
the CPUs Ray reserves per replica (the smallest flavor's) and the starting pool (one
replica of the smallest flavor, serving the most accurate variant).

Deciding the pool is pure given a ``capacity_of(model, flavor)`` function; where the
capacities come from (the knowledge base's profiles, a measurement now, a live probe)
is the caller's effect (:func:`service_pool` reads them from the knowledge base, as
``edgewise serve`` does, measuring a missing one when asked, and derates them next to
declared neighbours). :func:`eligible_variants` refuses a spec whose variants all fall
below ``min_accuracy`` before anything starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from edgewise.errors import InfeasibleError, SpecError

if TYPE_CHECKING:
    from edgewise.config import FlavorSpec, ServiceSpec
    from edgewise.config import ModelVariant as VariantSpec
    from edgewise.serving.live import FlavorCapacity
    from edgewise.serving.policies import FlavorOption, ModelVariant, Policy

__all__ = ["ServicePool", "build_pool", "derated", "eligible_variants", "service_pool"]

CapacityOf = Callable[[str, "FlavorSpec"], "FlavorCapacity"]


@dataclass(frozen=True)
class ServicePool:
    """What the live controller runs for a service: flavors, variants, policy, start.

    Attributes
    ----------
    options : tuple of FlavorOption
        The flavors the replicas may run in, smallest first, with the capacity of the
        variant served at the start (the controller's ``flavors``).
    variants : tuple of ModelVariant
        Every eligible variant with its capacity in each of ``options``' flavors, most
        accurate first (one when the service has no choice of model).
    policy : Policy
        The policy the controller runs: wrapped in a ``VariantPolicy`` with several
        variants.
    cpus_per_replica : float
        What Ray reserves per replica (``RuntimeConfig.cpus_per_replica``): the smallest
        flavor's CPUs; a replica of a larger flavor applies its own quota in place.
    max_replicas : int
        The deployment's most replicas (``RuntimeConfig.max_replicas``): every flavor's
        most together, and no more than fit the host at the smallest flavor's CPUs.
    initial : dict of str to int
        The starting pool (``LiveController.start_pool``): one replica of the smallest
        flavor.
    capacities : dict of (str, str) to FlavorCapacity
        The capacity of every (model, flavor) pair kept, with where it came from.
    notes : tuple of str
        One line per flavor or variant left out, and why.
    alone_rps : dict of (str, str) to float
        Where capacities were derated next to neighbours (:func:`service_pool`), the
        capacity of each pair alone; else empty.
    """

    options: tuple[FlavorOption, ...]
    variants: tuple[ModelVariant, ...]
    policy: Policy
    cpus_per_replica: float
    max_replicas: int
    initial: dict[str, int]
    capacities: dict[tuple[str, str], FlavorCapacity]
    notes: tuple[str, ...] = ()
    alone_rps: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The model the deployment serves at the start (the most accurate eligible)."""
        return self.variants[0].ref

    @property
    def variant(self) -> str | None:
        """``LiveController``'s ``variant``: the starting model when it may switch, else ``None``."""
        return self.model if len(self.variants) > 1 else None

    @property
    def pooled(self) -> bool:
        """Whether the controller runs several flavors or switches variant."""
        return len(self.options) > 1 or len(self.variants) > 1

    def sources(self) -> list[str]:
        """One line per (model, flavor) pair: its capacity and where it came from."""
        return [
            f"{model} in {flavor}: {cap.option.capacity_rps:.1f} rps per replica ({cap.source})"
            for (model, flavor), cap in self.capacities.items()
        ]


def eligible_variants(spec: ServiceSpec, where: str = "service") -> tuple[VariantSpec, ...]:
    """The spec's variants at or above its ``min_accuracy``, most accurate first.

    A model named twice (two batch sizes) is kept once, at its first mention.

    Parameters
    ----------
    spec : ServiceSpec
        The loaded service spec.
    where : str
        The file the spec came from, for the error message.

    Returns
    -------
    tuple of config.ModelVariant
        The eligible variants, most accurate first (ties: in the spec's order).

    Raises
    ------
    SpecError
        If every variant falls below ``min_accuracy``.
    """
    ok = [v for v in spec.variants if v.accuracy >= spec.min_accuracy]
    if not ok:
        best = max(spec.variants, key=lambda v: v.accuracy)
        raise SpecError(
            f"{where}: min_accuracy {spec.min_accuracy:g} is above every model variant's "
            f"accuracy (the most accurate, {best.model}, has {best.accuracy:g})"
        )
    seen: set[str] = set()
    unique = []
    for v in sorted(ok, key=lambda v: -v.accuracy):
        if v.model not in seen:
            seen.add(v.model)
            unique.append(v)
    return tuple(unique)


def _fits(
    variants: Sequence[VariantSpec], flavors: Sequence[FlavorSpec], capacity_of: CapacityOf
) -> tuple[dict[tuple[str, str], FlavorCapacity], dict[tuple[str, str], str]]:
    """Every (model, flavor) capacity that meets the SLO, and why each other pair misses it."""
    from edgewise.serving.live import FlavorTooSmall

    caps: dict[tuple[str, str], FlavorCapacity] = {}
    misses: dict[tuple[str, str], str] = {}
    for v in variants:
        for f in flavors:
            try:
                caps[(v.model, f.name)] = capacity_of(v.model, f)
            except FlavorTooSmall as err:
                misses[(v.model, f.name)] = str(err)
    return caps, misses


def _served(
    variants: Sequence[VariantSpec],
    flavors: Sequence[FlavorSpec],
    caps: dict[tuple[str, str], FlavorCapacity],
    misses: dict[tuple[str, str], str],
) -> tuple[list[VariantSpec], list[FlavorSpec], list[str]]:
    """The variants served and the flavors every one of them fits, with a note on the rest.

    Variants are taken most accurate first; one that fits none of the flavors the
    variants already taken share is left out (a variant switch keeps the pool's flavors).
    """
    kept: list[VariantSpec] = []
    common = list(flavors)
    notes: list[str] = []
    for v in variants:
        fit = [f for f in common if (v.model, f.name) in caps]
        if not fit:
            where = ", ".join(f.name for f in common)
            notes.append(f"model variant {v.model} left out: it meets the SLO in none of {where}")
            continue
        kept.append(v)
        common = fit
    for f in flavors:
        if f in common:
            continue
        why = next(
            (misses[(v.model, f.name)] for v in kept if (v.model, f.name) in misses),
            "too small for the variants served",
        )
        notes.append(f"flavor {f.name} left out: {why}")
    return kept, common, notes


def build_pool(
    spec: ServiceSpec,
    flavors: Sequence[FlavorSpec],
    capacity_of: CapacityOf,
    policy: Policy,
    *,
    max_replicas_of: Callable[[FlavorSpec], int] | None = None,
    where: str = "service",
) -> ServicePool:
    """The pool a service runs: every eligible variant in every flavor that fits the SLO.

    Parameters
    ----------
    spec : ServiceSpec
        The service: its variants, ``min_accuracy`` and SLO.
    flavors : sequence of FlavorSpec
        The candidate flavors (a catalog, or the one flavor named).
    capacity_of : callable
        ``capacity_of(model, flavor)``: one replica's capacity under the SLO (from the
        knowledge base, measured, or probed live); raises
        :class:`~edgewise.serving.live.FlavorTooSmall` where one request misses the SLO.
    policy : Policy
        The scaling policy; wrapped in a ``VariantPolicy`` when several variants serve.
    max_replicas_of : callable, optional
        The most replicas of a flavor the deployment may run (e.g. what fits this host);
        default: the flavor's own ``max_replicas``.
    where : str
        The service spec's file, for error messages.

    Returns
    -------
    ServicePool
        Flavors smallest first, variants most accurate first, the wrapped policy and
        the starting pool; ``notes`` names what was left out.

    Raises
    ------
    SpecError
        If every variant falls below ``min_accuracy``.
    InfeasibleError
        If no eligible variant meets the SLO in any flavor (one line: what one request
        takes in each).
    """
    from edgewise.serving.policies import ModelVariant, VariantPolicy

    variants = eligible_variants(spec, where)
    ordered = sorted(flavors, key=lambda f: f.cpus)
    caps, misses = _fits(variants, ordered, capacity_of)
    if not caps:
        raise InfeasibleError(f"no model variant fits any flavor: {'; '.join(misses.values())}")
    kept, common, notes = _served(variants, ordered, caps, misses)
    limit = max_replicas_of or (lambda f: f.max_replicas)

    def options_of(model: str) -> tuple[FlavorOption, ...]:
        return tuple(_limited(caps[(model, f.name)].option, limit(f)) for f in common)

    served = tuple(ModelVariant(v.model, v.accuracy, options_of(v.model)) for v in kept)
    wrapped: Policy = policy
    if len(served) > 1:
        wrapped = VariantPolicy(policy, served, min_accuracy=spec.min_accuracy)
    options = served[0].flavors
    return ServicePool(
        options=options,
        variants=served,
        policy=wrapped,
        cpus_per_replica=common[0].cpus,
        max_replicas=_most_replicas(options, common[0], max_replicas_of),
        initial={common[0].name: 1},
        capacities={(v.model, f.name): caps[(v.model, f.name)] for v in kept for f in common},
        notes=tuple(notes),
    )


def _most_replicas(
    options: Sequence[FlavorOption],
    smallest: FlavorSpec,
    max_replicas_of: Callable[[FlavorSpec], int] | None,
) -> int:
    """Every flavor's most replicas together, bounded by what Ray can reserve on the host.

    Ray reserves the smallest flavor's CPUs per replica, so with a host limit
    (``max_replicas_of``) no more replicas than fit at those CPUs can be placed.
    """
    total = sum(o.max_replicas for o in options)
    if max_replicas_of is not None:
        total = min(total, max_replicas_of(smallest))
    return max(1, total)


def _limited(option: FlavorOption, most: int) -> FlavorOption:
    """``option`` with at most ``most`` replicas."""
    import dataclasses

    return dataclasses.replace(option, max_replicas=min(option.max_replicas, most))


def derated(
    cap: FlavorCapacity, factor: float, *, slo_ms: float, percentile: float
) -> FlavorCapacity:
    """``cap`` slowed down ``factor`` times next to neighbours (``cap`` itself at 1 or less).

    Raises
    ------
    FlavorTooSmall
        If one request, slowed down, misses the SLO in that flavor.
    """
    from edgewise.api.colocation import colocated_capacity
    from edgewise.serving.live import FlavorCapacity, too_small

    if factor <= 1.0:
        return cap
    beside = colocated_capacity(cap, factor, slo_ms=slo_ms, percentile=percentile)
    slowed = cap.service_ms * factor
    if not beside.reachable:
        raise too_small(
            cap.option.name,
            slowed,
            slo_ms=slo_ms,
            percentile=percentile,
            takes="takes next to the neighbours",
        )
    return FlavorCapacity(beside.colocated, slowed, f"{cap.source}, derated x{factor:.2f}")


def service_pool(
    spec: ServiceSpec,
    flavors: Sequence[FlavorSpec],
    store: Any,
    policy: Policy,
    *,
    measure: bool = True,
    local: bool = True,
    slowdown_of: Callable[[str], float] | None = None,
    where: str = "service",
) -> ServicePool:
    """The pool ``edgewise serve`` runs, with every capacity from the knowledge base.

    Parameters
    ----------
    spec, flavors, policy, where
        As for :func:`build_pool`.
    store : KnowledgeBase
        Where the capacity profiles are (a missing one is measured now with ``measure``,
        else it is an error naming the command that measures it).
    measure : bool
        Measure a missing profile (about a minute per (model, flavor) pair).
    local : bool
        A local Ray: each flavor's replicas are limited to what fits this host.
    slowdown_of : callable, optional
        ``slowdown_of(model)``: the predicted slowdown next to the declared neighbours;
        each capacity is derated by it (:func:`derated`), the one alone kept in
        ``alone_rps``.

    Returns
    -------
    ServicePool
        See :func:`build_pool`.
    """
    from edgewise.serving.live import flavor_option, replicas_that_fit

    slo_ms, pct = spec.slo.latency_ms, spec.slo.percentile
    alone: dict[tuple[str, str], float] = {}

    def capacity_of(model: str, flavor: FlavorSpec) -> FlavorCapacity:
        cap = flavor_option(
            model,
            flavor,
            slo_ms=slo_ms,
            percentile=pct,
            kb=store,
            measure=measure,
            max_replicas=replicas_that_fit(flavor) if local else None,
        )
        if slowdown_of is None:
            return cap
        alone[(model, flavor.name)] = cap.option.capacity_rps
        return derated(cap, slowdown_of(model), slo_ms=slo_ms, percentile=pct)

    limit = replicas_that_fit if local else None
    pool = build_pool(spec, flavors, capacity_of, policy, max_replicas_of=limit, where=where)
    return replace(pool, alone_rps=alone)
