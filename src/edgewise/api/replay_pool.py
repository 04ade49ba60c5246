"""The replay use case on a service's pool: several flavors and model variants at once.

:func:`replay_pool` reads a service spec (its variants, ``min_accuracy`` and SLO) and a
flavors catalog, finds every (variant, flavor) pair's capacity (the knowledge base's
capacity profile where there is one, else a probe of one replica through the live
HTTP path: the probes are what a replay's set-up costs, so a stored profile is always
taken first, and each pair says where its figure came from), builds the pool
(:func:`edgewise.api.serve_pool.build_pool`), and replays the segment once per policy
on one deployment that mixes the flavors and switches the variant
(:func:`edgewise.serving.replay.replay_live`). Each policy is also simulated on the same
segment with the same pool (:func:`edgewise.serving.replay.replay_simulated`), and
:func:`pool_agreement` (pure) says how far the live run executed the simulator's
decisions. Ray, the load generator and the knowledge base are the effects; the policies
decide purely. Bad input (every variant below ``min_accuracy``, no flavor that fits
any variant by the stored profiles) is refused before any process starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.api.replay import (
    REPLICA_STARTUP_S,
    PolicyReplay,
    check_policy_names,
    check_replay_inputs,
)
from edgewise.api.serve_pool import ServicePool, build_pool, eligible_variants

if TYPE_CHECKING:
    import pandas as pd

    from edgewise.config import FlavorSpec, ServiceSpec
    from edgewise.serving.live import FlavorCapacity, FlavorTooSmall
    from edgewise.serving.replay import ReplayResult, Segment

__all__ = [
    "PoolAgreement",
    "PoolPolicyReplay",
    "PoolReplayOutcome",
    "pool_agreement",
    "replay_pool",
]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PoolAgreement:
    """How far a live replay executed the simulator's decisions on the same segment.

    Attributes
    ----------
    decisions : int
        Decisions compared (the first ones of each run, as many as the shorter has).
    matched : int
        Of those, the ones where the live run executed the simulator's replicas per
        flavor and its variant.
    live_flavors, sim_flavors : dict of str to int
        The most replicas of each flavor at once.
    live_switches, sim_switches : int
        Variant switches.
    """

    decisions: int
    matched: int
    live_flavors: dict[str, int]
    sim_flavors: dict[str, int]
    live_switches: int
    sim_switches: int

    @property
    def share(self) -> float:
        """The share of decisions that matched (NaN when none were compared)."""
        return self.matched / self.decisions if self.decisions else math.nan

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {
            "decisions": self.decisions,
            "matched": self.matched,
            "live_flavors": self.live_flavors,
            "sim_flavors": self.sim_flavors,
            "live_variant_switches": self.live_switches,
            "sim_variant_switches": self.sim_switches,
        }


def _most_at_once(executed: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The most replicas of each flavor any decision executed."""
    most: dict[str, int] = {}
    for e in executed:
        for name, n in e["replicas"].items():
            most[name] = max(most.get(name, 0), int(n))
    return most


def pool_agreement(
    live: Sequence[Mapping[str, Any]],
    simulated: Sequence[Mapping[str, Any]],
    live_switches: int,
    sim_switches: int,
) -> PoolAgreement:
    """Compare two runs' executed decisions (``replicas`` per flavor and ``variant``), in order.

    Parameters
    ----------
    live, simulated : sequence of dict
        The decisions as executed (:attr:`ReplayResult.executed`, :attr:`SimResult.executed`).
    live_switches, sim_switches : int
        Each run's variant switches.

    Returns
    -------
    PoolAgreement
        Matched decisions, replicas per flavor at most, and variant switches.
    """
    n = min(len(live), len(simulated))
    matched = sum(
        1
        for a, b in zip(live[:n], simulated[:n], strict=True)
        if {k: v for k, v in a["replicas"].items() if v}
        == {k: v for k, v in b["replicas"].items() if v}
        and a.get("variant") == b.get("variant")
    )
    return PoolAgreement(
        decisions=n,
        matched=matched,
        live_flavors=_most_at_once(live),
        sim_flavors=_most_at_once(simulated),
        live_switches=live_switches,
        sim_switches=sim_switches,
    )


@dataclass(frozen=True)
class PoolPolicyReplay:
    """One policy's live replay on the pool, its simulation, and their agreement."""

    run: PolicyReplay
    agreement: PoolAgreement

    @property
    def policy(self) -> str:
        """The policy's name."""
        return self.run.policy

    def as_dict(self) -> dict[str, Any]:
        """The live summary, the simulator's figures and the agreement."""
        return {
            **self.run.as_dict(),
            "variant_switches": self.run.live.variant_switches,
            "agreement": self.agreement.as_dict(),
        }


@dataclass(frozen=True)
class PoolReplayOutcome:
    """The replayed segment, the service's pool and every policy's run on it."""

    trace: str
    start: pd.Timestamp
    hours: float
    speedup: float
    duration_s: float
    peak_rps: float
    service: str
    slo_ms: float
    slo_percentile: float
    ingress: str
    flavors: tuple[str, ...]
    variants: tuple[str, ...]
    min_accuracy: float
    capacities: tuple[dict[str, Any], ...]
    """One entry per (model, flavor): ``capacity_rps_per_replica`` and its ``source``."""
    notes: tuple[str, ...]
    runs: tuple[PoolPolicyReplay, ...]

    @property
    def results(self) -> list[ReplayResult]:
        """The live results, one per policy in order."""
        return [r.run.live for r in self.runs]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the setting, the pool and one entry per policy."""
        return {
            "trace": self.trace,
            "start": str(self.start),
            "hours": self.hours,
            "speedup": self.speedup,
            "peak_rps": self.peak_rps,
            "service": self.service,
            "slo_ms": self.slo_ms,
            "slo_percentile": self.slo_percentile,
            "ingress": self.ingress,
            "flavors": list(self.flavors),
            "variants": list(self.variants),
            "min_accuracy": self.min_accuracy,
            "capacities": list(self.capacities),
            "notes": list(self.notes),
            "policies": {r.policy: r.as_dict() for r in self.runs},
        }


def _stored_capacities(
    spec: ServiceSpec, flavors: Sequence[FlavorSpec], store: Any
) -> dict[tuple[str, str], FlavorCapacity | FlavorTooSmall]:
    """Every pair's capacity from the knowledge base's profiles (pairs without one absent)."""
    from edgewise.errors import InfeasibleError
    from edgewise.serving.live import FlavorTooSmall, flavor_option, replicas_that_fit

    found: dict[tuple[str, str], FlavorCapacity | FlavorTooSmall] = {}
    for v in eligible_variants(spec):
        for f in flavors:
            try:
                found[(v.model, f.name)] = flavor_option(
                    v.model,
                    f,
                    slo_ms=spec.slo.latency_ms,
                    percentile=spec.slo.percentile,
                    kb=store,
                    measure=False,
                    max_replicas=replicas_that_fit(f),
                )
            except FlavorTooSmall as err:
                found[(v.model, f.name)] = err
            except InfeasibleError:
                continue  # no stored profile: probed live
    return found


def _capacity_source(
    found: Mapping[tuple[str, str], FlavorCapacity | FlavorTooSmall],
    probe: Callable[[str, FlavorSpec], FlavorCapacity],
) -> Callable[[str, FlavorSpec], FlavorCapacity]:
    """``capacity_of`` for :func:`build_pool`: the stored capacity, else a live probe."""
    from edgewise.serving.live import FlavorTooSmall

    def capacity_of(model: str, flavor: FlavorSpec) -> FlavorCapacity:
        got = found.get((model, flavor.name))
        if got is None:
            return probe(model, flavor)
        if isinstance(got, FlavorTooSmall):
            raise got
        return got

    return capacity_of


@dataclass(frozen=True)
class _PoolSetup:
    """What every policy's replay of the segment on the pool shares."""

    spec: ServiceSpec
    pool: ServicePool
    segment: Segment
    store: Any
    port: int
    ingress: str
    seed: int
    inputs: dict[str, Any]

    def announce(self, policy: str) -> str:
        """The line that says what the replay of ``policy`` is about to do."""
        seg = self.segment
        flavors = ", ".join(f"{o.name} (up to {o.max_replicas})" for o in self.pool.options)
        return (
            f"{policy}: {self.inputs['hours']:g} trace hours from {seg.start} at "
            f"x{seg.speedup:g} ({seg.duration_s:.0f} s), peak {self.inputs['peak_rps']:.1f} "
            f"rps, variants {', '.join(v.ref for v in self.pool.variants)} in {flavors}"
        )


def _simulate(setup: _PoolSetup, policy: str) -> Any:
    """The segment through the simulator with the pool, as the live replay ran it."""
    from edgewise.serving.replay import replay_simulated
    from edgewise.sim.queueing import ServiceProfile
    from edgewise.sim.serving import SimFlavor

    pool = setup.pool

    def sim_flavors(model: str, options: Sequence[Any]) -> list[SimFlavor]:
        caps = pool.capacities
        return [
            SimFlavor(o, ServiceProfile(caps[(model, o.name)].service_ms, o.cpus, "measured"))
            for o in options
        ]

    variants = [(v, sim_flavors(v.ref, v.flavors)) for v in pool.variants]
    return replay_simulated(
        setup.segment,
        policy,
        sim_flavors(pool.model, pool.options),
        slo_ms=setup.spec.slo.latency_ms,
        slo_percentile=setup.spec.slo.percentile,
        startup_s=REPLICA_STARTUP_S,
        seed=setup.seed,
        initial=pool.initial,
        variants=variants if len(variants) > 1 else (),
        min_accuracy=setup.spec.min_accuracy,
    )


def _replay_one(setup: _PoolSetup, policy: str) -> PoolPolicyReplay:
    """Replay the segment live on the pool with ``policy`` (stored), then simulate it."""
    from edgewise.serving.live import sample_body, store_replay
    from edgewise.serving.replay import replay_live
    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

    pool, spec = setup.pool, setup.spec
    body, ctype = sample_body(pool.model, setup.seed)
    cfg = RuntimeConfig(
        model=pool.model,
        app=f"replay-{policy}",
        cpus_per_replica=pool.cpus_per_replica,
        initial_replicas=1,
        max_replicas=pool.max_replicas,
        port=setup.port,
        ingress=setup.ingress,
    )
    with ServingRuntime(cfg) as rt:
        live = replay_live(
            setup.segment,
            policy,
            rt,
            pool.options,
            variants=pool.variants if len(pool.variants) > 1 else (),
            min_accuracy=spec.min_accuracy,
            initial=pool.initial,
            slo_ms=spec.slo.latency_ms,
            slo_percentile=spec.slo.percentile,
            body=body,
            content_type=ctype,
            seed=setup.seed,
            kb=setup.store,
            startup_s=REPLICA_STARTUP_S,
        )
    seg = setup.segment
    store_replay(
        setup.store,
        "replay",
        {
            "policy": policy,
            "model": pool.model,
            "slo_ms": spec.slo.latency_ms,
            "start": str(seg.start),
            "speedup": seg.speedup,
            **setup.inputs,
        },
        live.to_dict(),
        live.series.as_dict(),
        live.cost,
    )
    sim = _simulate(setup, policy)
    agree = pool_agreement(
        live.executed or [], sim.executed, live.variant_switches, sim.variant_switches
    )
    return PoolPolicyReplay(PolicyReplay(live, sim, seg.speedup), agree)


def _candidates(flavors: Path | None, flavor: str | None) -> list[FlavorSpec]:
    """The flavors the pool may use: the catalog, or the one flavor named (or the default)."""
    from edgewise.api.serve import pick_flavor
    from edgewise.config import load_flavors

    if flavors is not None and flavor is None:
        return list(load_flavors(flavors).flavors)
    return [pick_flavor(flavors, flavor)]


def _peak(pool: ServicePool, peak_fraction: float) -> float:
    """``peak_fraction`` of the most the pool's fastest variant serves in one flavor here."""
    return peak_fraction * max(
        o.capacity_rps * o.max_replicas for v in pool.variants for o in v.flavors
    )


def _probe_pair(
    spec: ServiceSpec, port: int, seed: int, ingress: str
) -> Callable[[str, FlavorSpec], FlavorCapacity]:
    """A live probe of one replica of a model in a flavor (for pairs with no stored profile)."""
    from edgewise.serving.live import replicas_that_fit
    from edgewise.serving.runtime import probe_capacity

    def probe(model: str, flavor: FlavorSpec) -> FlavorCapacity:
        cap: FlavorCapacity = probe_capacity(
            model,
            flavor,
            slo_ms=spec.slo.latency_ms,
            percentile=spec.slo.percentile,
            max_replicas=replicas_that_fit(flavor),
            port=port,
            seed=seed,
            ingress=ingress,
        )
        return cap

    return probe


def replay_pool(
    *,
    service: Path,
    trace: str = "bikeshare",
    time_col: str | None = None,
    value_col: str | None = None,
    start: str | None = None,
    hours: float = 12.0,
    speedup: float = 120.0,
    policies: Sequence[str] = ("edgewise",),
    flavors: Path | None = None,
    flavor: str | None = None,
    peak_rps: float | None = None,
    port: int = 8000,
    seed: int = 0,
    ingress: str = "proxy",
    peak_fraction: float = 0.7,
    kb: str | None = None,
    progress: Progress | None = None,
) -> PoolReplayOutcome:
    """Replay a compressed trace segment on the service's pool of flavors and variants.

    Parameters
    ----------
    service : Path
        Service YAML: its variants, ``min_accuracy`` and SLO are replayed.
    trace, time_col, value_col, start
        ``'bikeshare'`` or a CSV path, its columns, and the segment's start (default:
        the last ``hours`` of the trace).
    hours, speedup : float
        Trace hours replayed, and trace seconds per wall second.
    policies : sequence of str
        Policy names, replayed in order (each on the variants when there are several).
    flavors, flavor
        Flavors YAML (every flavor that fits the SLO joins the pool) or one flavor of
        it; neither: the built-in 0.5-CPU flavor.
    peak_rps, peak_fraction : float
        Peak rate of the segment; default ``peak_fraction`` of what the fastest variant's
        replicas of one flavor serve on this host.
    port, seed, ingress, kb, progress
        HTTP port, seed of the arrivals, ``'proxy'`` or ``'haproxy'``, knowledge-base URL
        (``None``: the default one), and ``progress(phase, done, total)`` (each probe,
        then each policy's replay).

    Returns
    -------
    PoolReplayOutcome
        The pool (each capacity with its source), every live run, its simulation and
        their agreement.

    Raises
    ------
    SpecError, InfeasibleError
        A bad spec, variants all below ``min_accuracy``, or no variant that meets the SLO
        in any flavor (before Ray starts when every pair's profile is stored).
    """
    from edgewise.config import load_service
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.policies import make_policy
    from edgewise.serving.replay import select_segment
    from edgewise.serving.runtime import RaySession
    from edgewise.workloads.traces import load_trace

    names = check_policy_names(policies)
    spec = load_service(service)
    variants = eligible_variants(spec, str(service))
    for v in variants:
        check_replay_inputs(v.model, spec.slo.latency_ms, spec.slo.percentile, hours, speedup)
    series = load_trace(trace, time_col, value_col)
    candidates = _candidates(flavors, flavor)
    store = KnowledgeBase.open(kb)
    report = progress or (lambda _phase, _done, _total: None)
    found = _stored_capacities(spec, candidates, store)
    probe = _probe_pair(spec, port, seed, ingress)

    def pool_with(capacity_probe: Callable[[str, FlavorSpec], FlavorCapacity]) -> ServicePool:
        source = _capacity_source(found, capacity_probe)
        return build_pool(spec, candidates, source, make_policy(names[0]), where=str(service))

    def probing(model: str, fl: FlavorSpec) -> FlavorCapacity:
        report(f"probing one {model} replica in flavor {fl.name} through HTTP ...", 0, len(names))
        return probe(model, fl)

    # With every pair's profile stored, a pool that cannot be built fails before Ray starts.
    pool = pool_with(probe) if len(found) == len(variants) * len(candidates) else None
    with RaySession(ingress=ingress):
        pool = pool or pool_with(probing)
        peak = peak_rps or _peak(pool, peak_fraction)
        setup = _PoolSetup(
            spec=spec,
            pool=pool,
            segment=select_segment(series, start, hours, speedup, peak),
            store=store,
            port=port,
            ingress=ingress,
            seed=seed,
            inputs=_inputs(trace, hours, spec, pool, peak),
        )
        runs = tuple(_replay_announced(setup, p, i, names, report) for i, p in enumerate(names))
    return _outcome(setup, trace, hours, runs)


def _replay_announced(
    setup: _PoolSetup, policy: str, i: int, names: Sequence[str], report: Progress
) -> PoolPolicyReplay:
    """Say what the replay of ``policy`` does, then run it."""
    report(setup.announce(policy), i, len(names))
    return _replay_one(setup, policy)


def _inputs(
    trace: str, hours: float, spec: ServiceSpec, pool: ServicePool, peak: float
) -> dict[str, Any]:
    """What each stored replay row records about its setting."""
    return {
        "trace": trace,
        "hours": hours,
        "service": spec.name,
        "flavor": ",".join(o.name for o in pool.options),
        "peak_rps": peak,
    }


def _outcome(
    setup: _PoolSetup, trace: str, hours: float, runs: tuple[PoolPolicyReplay, ...]
) -> PoolReplayOutcome:
    """The replay's result: the setup's segment and pool, and the runs."""
    pool, seg = setup.pool, setup.segment
    return PoolReplayOutcome(
        trace=trace,
        start=seg.start,
        hours=hours,
        speedup=seg.speedup,
        duration_s=seg.duration_s,
        peak_rps=setup.inputs["peak_rps"],
        service=setup.spec.name,
        slo_ms=setup.spec.slo.latency_ms,
        slo_percentile=setup.spec.slo.percentile,
        ingress=setup.ingress,
        flavors=tuple(o.name for o in pool.options),
        variants=tuple(v.ref for v in pool.variants),
        min_accuracy=setup.spec.min_accuracy,
        capacities=tuple(
            {
                "model": model,
                "flavor": fl,
                "capacity_rps_per_replica": cap.option.capacity_rps,
                "source": cap.source,
            }
            for (model, fl), cap in pool.capacities.items()
        ),
        notes=pool.notes,
        runs=runs,
    )
