"""The serve use case: a service's model on Ray Serve behind HTTP, autoscaled to its SLO.

:func:`serve` reads the service and flavor specs, finds (or measures) the model's
capacity in the flavor, starts the deployment and runs the live controller with the
policy until ``seconds`` pass or ``stop`` is set. Starting Ray, the knowledge base and
the clock are the effects; every scaling decision is the policy's pure ``decide``.
:func:`pick_flavor` is the flavor choice every live command shares. Next to declared
neighbours (``neighbours=``, or the service spec's ``neighbours:``; ``host`` as observed)
the capacity the controller plans with is derated by the predicted slowdown
(:mod:`edgewise.api.colocation`). Without a named flavor, the smallest flavor of the
catalog that meets the SLO serves, and each smaller one is left out with a note.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.api.colocation import Slowdown, colocated_capacity, neighbour_slowdown, observed
from edgewise.config import FlavorSpec, load_flavors, load_service
from edgewise.errors import SpecError

if TYPE_CHECKING:
    from edgewise.config import ServiceSpec
    from edgewise.serving.controller import ControllerResult
    from edgewise.serving.live import FlavorCapacity
    from edgewise.serving.policies import FlavorOption, Policy

__all__ = ["ServeOutcome", "ServingStarted", "pick_flavor", "serve"]


def pick_flavor(flavors: Path | None, name: str | None) -> FlavorSpec:
    """The flavor named ``name`` in the catalog ``flavors`` (default: its smallest).

    Parameters
    ----------
    flavors : Path, optional
        Flavors YAML; ``None`` is the built-in 0.5-CPU flavor.
    name : str, optional
        Flavor name; ``None`` picks the one with the fewest CPUs.

    Returns
    -------
    FlavorSpec
        The flavor.
    """
    from edgewise.serving.live import DEFAULT_FLAVOR

    if flavors is None:
        return DEFAULT_FLAVOR
    catalog = load_flavors(flavors)
    if name is None:
        return min(catalog.flavors, key=lambda f: f.cpus)
    for f in catalog.flavors:
        if f.name == name:
            return f
    known = ", ".join(f.name for f in catalog.flavors)
    raise SpecError(f"{flavors}: no flavor named {name!r} (known: {known})")


@dataclass(frozen=True)
class ServingStarted:
    """What is served where, once the first replica is ready."""

    model: str
    service: str
    url: str
    slo_ms: float
    slo_percentile: float
    flavor: str
    capacity_rps: float
    policy: str
    capacity_alone_rps: float | None = None
    """The capacity alone when it was derated next to neighbours (else ``None``)."""
    neighbours: tuple[str, ...] = ()
    slowdown: float = 1.0
    slowdown_source: str = "alone: no neighbours declared"
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Flavors left out because they are too small for the SLO, one line each."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


@dataclass(frozen=True)
class ServeOutcome:
    """What the controller did while the service ran."""

    started: ServingStarted
    decisions: int
    scale_actions: int
    vertical_actions: int
    cost: float
    resumed: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


def _capacity(
    model: str, flavor: FlavorSpec, spec: ServiceSpec, store: Any, *, measure: bool, local: bool
) -> FlavorCapacity:
    """One replica's capacity under the service's SLO (limited to what fits a local host)."""
    from edgewise.serving.live import flavor_option, replicas_that_fit

    return flavor_option(
        model,
        flavor,
        slo_ms=spec.slo.latency_ms,
        percentile=spec.slo.percentile,
        kb=store,
        measure=measure,
        max_replicas=replicas_that_fit(flavor) if local else None,
    )


@dataclass(frozen=True)
class _Chosen:
    """The flavor that serves, the capacity planned with, and how it was derived."""

    flavor: FlavorSpec
    cap: FlavorCapacity
    alone_rps: float
    notes: tuple[str, ...]


def _choose(
    flavors: Path | None,
    flavor: str | None,
    capacity_alone: Callable[[FlavorSpec], FlavorCapacity],
    slowdown: Slowdown | None,
    spec: ServiceSpec,
) -> _Chosen:
    """The named flavor, or the smallest of the catalog that meets the SLO (derated)."""
    from edgewise.serving.live import FlavorCapacity, first_fitting, too_small

    candidates = (
        load_flavors(flavors).flavors
        if flavors is not None and flavor is None
        else [pick_flavor(flavors, flavor)]
    )
    alone: dict[str, float] = {}
    factor = 1.0 if slowdown is None else slowdown.factor

    def capacity_of(fl: FlavorSpec) -> FlavorCapacity:
        cap = capacity_alone(fl)
        alone[fl.name] = cap.option.capacity_rps
        if factor <= 1.0:
            return cap
        slo, pct = spec.slo.latency_ms, spec.slo.percentile
        beside = colocated_capacity(cap, factor, slo_ms=slo, percentile=pct)
        slowed = cap.service_ms * factor
        if not beside.reachable:
            takes = "takes next to the neighbours"
            raise too_small(fl.name, slowed, slo_ms=slo, percentile=pct, takes=takes)
        return FlavorCapacity(beside.colocated, slowed, f"{cap.source}, derated x{factor:.2f}")

    got = first_fitting(candidates, capacity_of)
    return _Chosen(got.flavor, got.capacity, alone[got.flavor.name], got.notes)


def _control(
    runtime: Any,
    policy: Policy,
    option: FlavorOption,
    spec: ServiceSpec,
    store: Any,
    seconds: float,
    stop: threading.Event | None,
) -> ControllerResult:
    """Run the live controller on ``runtime`` from one replica until ``seconds`` or ``stop``."""
    from edgewise.serving.controller import LiveController

    ctl = LiveController(
        runtime,
        policy,
        option,
        slo_ms=spec.slo.latency_ms,
        slo_percentile=spec.slo.percentile,
        startup_s=spec.startup_s,
        kb=store,
        run_key=f"serve-{spec.name}",
    )
    ctl.start(1)
    return ctl.run(seconds if seconds > 0 else math.inf, stop)


def serve(
    *,
    service: Path,
    flavors: Path | None = None,
    flavor: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    policy: str = "edgewise",
    seconds: float = 0.0,
    measure: bool = True,
    ingress: str = "proxy",
    neighbours: Sequence[str] | None = None,
    kb: str | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[ServingStarted], None] | None = None,
) -> ServeOutcome:
    """Serve the service's model on Ray Serve, autoscaled by ``policy`` to its SLO.

    Parameters
    ----------
    service : Path
        Service YAML (model variants and SLO); the most accurate variant that meets
        the service's accuracy floor is served.
    flavors, flavor
        Flavors YAML and the flavor to run replicas in (:func:`pick_flavor`); without
        ``flavor``, the smallest of the catalog that meets the SLO (next to the
        neighbours), each smaller one left out with a note.
    host, port : str, int
        Where the HTTP ingress listens.
    address : str, optional
        Ray cluster address (default: a local Ray).
    policy : str
        Autoscaling policy name.
    seconds : float
        Stop after this long (0: until ``stop`` is set).
    measure : bool
        Measure a missing capacity profile now (else it is an error).
    ingress : str
        ``'proxy'`` (Ray Serve's HTTP proxy) or ``'haproxy'``.
    neighbours : sequence of str, optional
        Workloads beside every replica (``host``, ``stress:RES=V,...``, ``MODEL``,
        ``MODEL@RATErps``; default: the service spec's ``neighbours:``): the capacity is
        derated by the predicted slowdown next to them (solo, with a note, where the
        knowledge base has no interference model for the model).
    kb : str, optional
        Knowledge-base URL; ``None`` is the default one.
    stop : threading.Event, optional
        Set it to stop serving.
    on_ready : callable, optional
        Called once with :class:`ServingStarted` when the first replica is ready.

    Returns
    -------
    ServeOutcome
        The controller's decisions, actions and cost.
    """
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.policies import make_policy
    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

    spec = load_service(service)
    variant = max(spec.variants, key=lambda v: (v.accuracy >= spec.min_accuracy, -v.accuracy))
    store = KnowledgeBase.open(kb)
    slowdown = _slowdown(variant.model, spec, neighbours, store)
    chosen = _choose(
        flavors,
        flavor,
        lambda f: _capacity(variant.model, f, spec, store, measure=measure, local=address is None),
        slowdown,
        spec,
    )
    fl, cap = chosen.flavor, chosen.cap
    pol = make_policy(policy)
    cfg = RuntimeConfig(
        model=variant.model,
        app=spec.name,
        cpus_per_replica=fl.cpus,
        initial_replicas=1,
        max_replicas=cap.option.max_replicas,
        host=host,
        port=port,
        address=address,
        ingress=ingress,
        kb=store.url,  # the replicas resolve NAME:vN in the same registry
    )
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(1, timeout_s=180)
        started = _started(variant.model, spec, f"{rt.url}/predict", policy, chosen, slowdown)
        if on_ready is not None:
            on_ready(started)
        res = _control(rt, pol, cap.option, spec, store, seconds, stop)
    return ServeOutcome(
        started=started,
        decisions=res.decisions,
        scale_actions=res.scale_actions,
        vertical_actions=res.vertical_actions,
        cost=res.cost,
        resumed=res.resumed,
    )


def _slowdown(
    model: str, spec: ServiceSpec, neighbours: Sequence[str] | None, store: Any
) -> Slowdown | None:
    """The predicted slowdown next to ``neighbours`` (default: the spec's); ``None``: none."""
    near = observed(spec.neighbours if neighbours is None else neighbours)
    return neighbour_slowdown(app=model, neighbours=near, kb=store) if near else None


def _started(
    model: str,
    spec: ServiceSpec,
    url: str,
    policy: str,
    chosen: _Chosen,
    slowdown: Slowdown | None,
) -> ServingStarted:
    """What is served where, with how the flavor and the capacity were chosen."""
    beside: dict[str, Any] = {}
    if slowdown is not None:
        beside = {
            "capacity_alone_rps": chosen.alone_rps,
            "neighbours": slowdown.neighbours,
            "slowdown": slowdown.factor,
            "slowdown_source": slowdown.origin(),
        }
    return ServingStarted(
        model=model,
        service=spec.name,
        url=url,
        slo_ms=spec.slo.latency_ms,
        slo_percentile=spec.slo.percentile,
        flavor=chosen.flavor.name,
        capacity_rps=chosen.cap.option.capacity_rps,
        policy=policy,
        notes=chosen.notes,
        **beside,
    )
