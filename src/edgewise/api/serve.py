"""The serve use case: a service's model on Ray Serve behind HTTP, autoscaled to its SLO.

:func:`serve` reads the service and flavor specs, finds (or measures) the model's
capacity in the flavor, starts the deployment and runs the live controller with the
policy until ``seconds`` pass or ``stop`` is set. Starting Ray, the knowledge base and
the clock are the effects; every scaling decision is the policy's pure ``decide``. The
knowledge base records which version served from when (``serve started``) until when
(``stopped``), and each switch of model variant in between (``variant switched``), see
:mod:`edgewise.api.served`.
:func:`pick_flavor` is the flavor choice every live command shares. Next to declared
neighbours (``neighbours=``, or the service spec's ``neighbours:``; ``host`` as observed)
the capacity the controller plans with is derated by the predicted slowdown
(:mod:`edgewise.api.colocation`). The controller runs the service's pool
(:func:`edgewise.api.serve_pool.service_pool`): every flavor of the catalog that meets
the SLO (or the one named), a flavor too small left out with a note, and with several
model variants the cheapest one at or above ``min_accuracy`` for the rate, switched in
place.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.api.colocation import (
    Slowdown,
    neighbour_slowdown,
    observed,
)
from edgewise.config import FlavorSpec, load_flavors, load_service
from edgewise.errors import SpecError

if TYPE_CHECKING:
    from edgewise.api.serve_pool import ServicePool
    from edgewise.config import ServiceSpec
    from edgewise.serving.controller import ControllerResult

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


def _control(
    runtime: Any,
    pool: ServicePool,
    spec: ServiceSpec,
    store: Any,
    seconds: float,
    stop: threading.Event | None,
    on_variant: Callable[[str], None] | None = None,
) -> ControllerResult:
    """Run the live controller on ``runtime`` from the pool's start until ``seconds`` or ``stop``.

    ``on_variant(ref)`` is called after each switch of model variant.
    """
    from edgewise.serving.controller import LiveController

    ctl = LiveController(
        runtime,
        pool.policy,
        pool.options,
        variant=pool.variant,
        slo_ms=spec.slo.latency_ms,
        slo_percentile=spec.slo.percentile,
        startup_s=spec.startup_s,
        kb=store,
        run_key=f"serve-{spec.name}",
        gate=True,
        on_variant=on_variant,
    )
    ctl.start_pool(pool.initial)
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
        Service YAML (model variants and SLO): the most accurate variant at or above
        ``min_accuracy`` serves first, a cheaper eligible one when the rate asks for it.
    flavors, flavor
        Flavors YAML and the flavor to run replicas in (:func:`pick_flavor`); without
        ``flavor``, every flavor of the catalog that meets the SLO (next to the
        neighbours) joins the pool, each too small left out with a note.
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
    from edgewise.api.served import recorded_serving
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.runtime import ServingRuntime

    spec = load_service(service)
    store = KnowledgeBase.open(kb)
    # the neighbours are checked (and each variant's slowdown predicted) before any
    # capacity is measured: an unknown neighbour is one line before anything starts
    slowdowns: dict[str, Slowdown | None] = {
        v.model: _slowdown(v.model, spec, neighbours, store) for v in spec.variants
    }
    pool = _pool(
        spec,
        service,
        flavors,
        flavor,
        store,
        policy,
        measure,
        address,
        neighbours,
        slowdowns,
    )
    cfg = _runtime_config(pool, spec, store.url, host, port, address, ingress)
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(1, timeout_s=180)
        with recorded_serving(store, spec.name, pool.model) as served:
            started = _started(pool, spec, f"{rt.url}/predict", policy, slowdowns.get(pool.model))
            if on_ready is not None:
                on_ready(started)
            res = _control(rt, pool, spec, store, seconds, stop, served.switched)
    return ServeOutcome(
        started=started,
        decisions=res.decisions,
        scale_actions=res.scale_actions,
        vertical_actions=res.vertical_actions,
        cost=res.cost,
        resumed=res.resumed,
    )


def _pool(
    spec: ServiceSpec,
    service: Path,
    flavors: Path | None,
    flavor: str | None,
    store: Any,
    policy: str,
    measure: bool,
    address: str | None,
    neighbours: Sequence[str] | None,
    slowdowns: dict[str, Slowdown | None],
) -> ServicePool:
    """The pool the controller runs: every eligible variant in every flavor that fits.

    The catalog's flavors (or the one named) that meet the SLO next to the neighbours
    join it; ``slowdowns`` gets each variant's predicted slowdown as it is looked up.
    """
    from edgewise.api.serve_pool import service_pool
    from edgewise.serving.policies import make_policy

    def slowdown_of(model: str) -> float:
        if model not in slowdowns:
            slowdowns[model] = _slowdown(model, spec, neighbours, store)
        got = slowdowns[model]
        return 1.0 if got is None else got.factor

    candidates = (
        load_flavors(flavors).flavors
        if flavors is not None and flavor is None
        else [pick_flavor(flavors, flavor)]
    )
    return service_pool(
        spec,
        candidates,
        store,
        make_policy(policy),
        measure=measure,
        local=address is None,
        slowdown_of=slowdown_of,
        where=str(service),
    )


def _runtime_config(
    pool: ServicePool,
    spec: ServiceSpec,
    kb_url: str,
    host: str,
    port: int,
    address: str | None,
    ingress: str,
) -> Any:
    """The live deployment: Ray reserves the smallest flavor's CPUs, one replica to start."""
    from edgewise.serving.runtime import RuntimeConfig

    return RuntimeConfig(
        model=pool.model,
        app=spec.name,
        cpus_per_replica=pool.cpus_per_replica,
        initial_replicas=1,
        max_replicas=pool.max_replicas,
        host=host,
        port=port,
        address=address,
        ingress=ingress,
        kb=kb_url,  # the replicas resolve NAME:vN in the same registry
    )


def _slowdown(
    model: str, spec: ServiceSpec, neighbours: Sequence[str] | None, store: Any
) -> Slowdown | None:
    """The predicted slowdown next to ``neighbours`` (default: the spec's); ``None``: none."""
    near = observed(spec.neighbours if neighbours is None else neighbours)
    return neighbour_slowdown(app=model, neighbours=near, kb=store) if near else None


def _started(
    pool: ServicePool,
    spec: ServiceSpec,
    url: str,
    policy: str,
    slowdown: Slowdown | None,
) -> ServingStarted:
    """What is served where: the pool's flavors, the capacity in its smallest, the notes."""
    first = pool.options[0]
    beside: dict[str, Any] = {}
    if slowdown is not None:
        beside = {
            "capacity_alone_rps": pool.alone_rps[(pool.model, first.name)],
            "neighbours": slowdown.neighbours,
            "slowdown": slowdown.factor,
            "slowdown_source": slowdown.origin(),
        }
    return ServingStarted(
        model=pool.model,
        service=spec.name,
        url=url,
        slo_ms=spec.slo.latency_ms,
        slo_percentile=spec.slo.percentile,
        flavor=", ".join(o.name for o in pool.options),
        capacity_rps=first.capacity_rps,
        policy=policy,
        notes=pool.notes,
        **beside,
    )
