"""The replay use case: a compressed trace segment against the live system, per policy.

:func:`replay` starts Ray, probes one replica of the model through the HTTP path for its
capacity, cuts the segment out of the trace (scaled to a peak that fits the host) and
replays it once per policy on a fresh deployment (:func:`edgewise.serving.replay.replay_policy`,
which stores each run in the knowledge base). With ``simulate`` it also runs the
simulator over the same segment with the same policy, profile and start-up time
(:func:`edgewise.api.simulate.simulate_segment`), so the two can be compared. Ray, the
load generator and the knowledge base are the effects; the policies decide purely.
A service's pool (several flavors at once, model variants under ``min_accuracy``) is
replayed by :func:`edgewise.api.replay_pool.replay_pool`, which shares the checks here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.api.colocation import (
    ColocatedCapacity,
    Slowdown,
    colocated_capacity,
    neighbour_slowdown,
)
from edgewise.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

    from edgewise.config import FlavorSpec
    from edgewise.serving.live import FlavorCapacity
    from edgewise.serving.policies import FlavorOption
    from edgewise.serving.replay import ReplayResult, Segment
    from edgewise.sim.serving import SimResult

__all__ = ["REPLICA_STARTUP_S", "PolicyReplay", "ReplayOutcome", "replay"]

Progress = Callable[[str, int, int], None]

#: Replica start-up measured here: 2-8 s (a new Ray worker + the model).
REPLICA_STARTUP_S = 5.0


@dataclass(frozen=True)
class PolicyReplay:
    """One policy's live replay and, when asked, its simulation on the same segment."""

    live: ReplayResult
    simulated: SimResult | None = None
    speedup: float = 1.0

    @property
    def policy(self) -> str:
        """The policy's name."""
        return self.live.policy

    @property
    def sim_cost(self) -> float | None:
        """The simulated cost in trace time (the live cost's unit)."""
        return None if self.simulated is None else self.simulated.cost * self.speedup

    def comparison(self) -> dict[str, Any]:
        """The simulator against the live run: attainment difference and cost ratio."""
        if self.simulated is None or self.sim_cost is None:
            return {}
        live = self.live
        return {
            "sim_slo_attainment": self.simulated.slo_attainment,
            "sim_cost": self.sim_cost,
            "sim_live_attainment_diff": self.simulated.slo_attainment - live.slo_attainment,
            "sim_live_cost_ratio": self.sim_cost / live.cost if live.cost > 0 else math.nan,
        }

    def as_dict(self) -> dict[str, Any]:
        """The live summary, plus the comparison when simulated."""
        return {**self.live.to_dict(), **self.comparison()}


@dataclass(frozen=True)
class ReplayOutcome:
    """The replayed segment, the probed capacity and every policy's run."""

    trace: str
    start: pd.Timestamp
    hours: float
    speedup: float
    duration_s: float
    peak_rps: float
    model: str
    ingress: str
    flavor: str
    max_replicas: int
    capacity_rps_per_replica: float
    capacity_source: str
    runs: tuple[PolicyReplay, ...]
    colocation: ColocatedCapacity | None = None
    """Capacity alone and next to the declared neighbours, when there are any."""
    slowdown: Slowdown | None = None
    """The profile pillar's predicted slowdown next to the declared neighbours."""

    @property
    def results(self) -> list[ReplayResult]:
        """The live results, one per policy in order."""
        return [r.live for r in self.runs]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the setting and one entry per policy."""
        return {
            "trace": self.trace,
            "start": str(self.start),
            "hours": self.hours,
            "speedup": self.speedup,
            "peak_rps": self.peak_rps,
            "model": self.model,
            "ingress": self.ingress,
            "flavor": self.flavor,
            "max_replicas": self.max_replicas,
            "capacity_rps_per_replica": self.capacity_rps_per_replica,
            "capacity_source": self.capacity_source,
            **(
                {
                    "neighbours": list(self.slowdown.neighbours),
                    "slowdown_source": self.slowdown.source,
                    **self.colocation.as_dict(),
                }
                if self.colocation is not None and self.slowdown is not None
                else {}
            ),
            "policies": {r.policy: r.as_dict() for r in self.runs},
        }


def check_replay_inputs(
    model: str, slo_ms: float, percentile: float, hours: float, speedup: float
) -> None:
    """Refuse wrong inputs before anything starts (Ray, a replica, a load generator).

    Raises
    ------
    UnknownNameError, SpecError
        A model the zoo does not know, or an option out of range (named as its flag).
    """
    from edgewise.workloads.zoo import check_model_name

    check_model_name(model)
    for option, value, ok in (
        ("--slo-ms", slo_ms, slo_ms > 0),
        ("--percentile", percentile, 0 < percentile < 100),
        ("--hours", hours, hours > 0),
        ("--speedup", speedup, speedup > 0),
    ):
        if not (ok and math.isfinite(value)):
            raise SpecError(f"{option}: {value:g} is out of range")


def check_policy_names(policies: Sequence[str]) -> list[str]:
    """The policy names, in order, once every one is known (else one line naming it)."""
    from edgewise.serving.policies import POLICY_NAMES

    for p in policies:
        if p not in POLICY_NAMES:
            raise SpecError(f"--policy: unknown policy {p!r} (known: {', '.join(POLICY_NAMES)})")
    return list(policies)


@dataclass(frozen=True)
class _ReplaySetup:
    """What every policy's replay of one segment shares."""

    trace: str
    segment: Segment
    hours: float
    model: str
    flavor: FlavorSpec
    cap: FlavorCapacity
    max_replicas: int
    slo_ms: float
    percentile: float
    seed: int
    store: Any
    port: int
    ingress: str
    inputs: dict[str, Any]
    simulate: bool
    colocation: ColocatedCapacity | None = None
    slowdown: Slowdown | None = None

    @property
    def option(self) -> FlavorOption:
        """What the policies plan with: the capacity alone, or next to the neighbours."""
        return self.colocation.colocated if self.colocation is not None else self.cap.option

    def outcome(self, runs: tuple[PolicyReplay, ...]) -> ReplayOutcome:
        """The replay's result: this setup and the runs."""
        return ReplayOutcome(
            trace=self.trace,
            start=self.segment.start,
            hours=self.hours,
            speedup=self.segment.speedup,
            duration_s=self.segment.duration_s,
            peak_rps=self.inputs["peak_rps"],
            model=self.model,
            ingress=self.ingress,
            flavor=self.flavor.name,
            max_replicas=self.max_replicas,
            capacity_rps_per_replica=self.option.capacity_rps,
            capacity_source=self.cap.source,
            runs=runs,
            colocation=self.colocation,
            slowdown=self.slowdown,
        )

    def announce(self, policy: str) -> str:
        """The line that says what the replay of ``policy`` is about to do."""
        seg, option = self.segment, self.option
        return (
            f"{policy}: {self.hours:g} trace hours from {seg.start} at x{seg.speedup:g} "
            f"({seg.duration_s:.0f} s), peak {self.inputs['peak_rps']:.1f} rps, capacity "
            f"{option.capacity_rps:.1f} rps per replica, up to {self.max_replicas} of "
            f"{self.flavor.name}"
        )


def _probe(
    model: str,
    flavor: FlavorSpec,
    max_replicas: int,
    slo_ms: float,
    percentile: float,
    port: int,
    seed: int,
    ingress: str,
) -> FlavorCapacity:
    """One replica's capacity under the SLO, probed through the live HTTP path."""
    from edgewise.serving.runtime import probe_capacity

    return probe_capacity(
        model,
        flavor,
        slo_ms=slo_ms,
        percentile=percentile,
        max_replicas=max_replicas,
        port=port,
        seed=seed,
        ingress=ingress,
    )


def _replay_one(setup: _ReplaySetup, policy: str) -> PolicyReplay:
    """Replay the segment live with ``policy`` (stored in the KB), and simulate it if asked."""
    from edgewise.api.simulate import simulate_segment
    from edgewise.serving.replay import replay_policy

    live = replay_policy(
        setup.segment,
        policy,
        setup.model,
        setup.flavor,
        setup.option,
        slo_ms=setup.slo_ms,
        percentile=setup.percentile,
        seed=setup.seed,
        kb=setup.store,
        port=setup.port,
        inputs=setup.inputs,
        startup_s=REPLICA_STARTUP_S,
        ingress=setup.ingress,
    )
    sim = None
    if setup.simulate:
        sim = simulate_segment(
            setup.segment,
            policy,
            setup.option,
            setup.cap.service_ms * (setup.colocation.slowdown if setup.colocation else 1.0),
            slo_ms=setup.slo_ms,
            percentile=setup.percentile,
            startup_s=REPLICA_STARTUP_S,
            seed=setup.seed,
        )
    return PolicyReplay(live, sim, setup.segment.speedup)


def _colocate(
    cap: FlavorCapacity,
    model: str,
    neighbours: Sequence[str],
    slo_ms: float,
    percentile: float,
    seed: int,
    store: Any,
) -> tuple[FlavorOption, ColocatedCapacity | None, Slowdown | None]:
    """The option the policies plan with: ``cap`` alone, or derated next to ``neighbours``."""
    if not neighbours:
        return cap.option, None, None
    slowdown = neighbour_slowdown(app=model, neighbours=neighbours, kb=store)
    coloc = colocated_capacity(
        cap, slowdown.factor, slo_ms=slo_ms, percentile=percentile, seed=seed
    )
    return coloc.colocated, coloc, slowdown


def replay(
    *,
    trace: str = "bikeshare",
    time_col: str | None = None,
    value_col: str | None = None,
    start: str | None = None,
    hours: float = 12.0,
    speedup: float = 120.0,
    policies: Sequence[str] = ("edgewise",),
    slo_ms: float = 150.0,
    percentile: float = 99.0,
    model: str = "mobilenet_v2",
    flavors: Path | None = None,
    flavor: str | None = None,
    peak_rps: float | None = None,
    port: int = 8000,
    seed: int = 0,
    ingress: str = "proxy",
    simulate: bool = False,
    neighbours: Sequence[str] = (),
    peak_fraction: float = 0.7,
    kb: str | None = None,
    progress: Progress | None = None,
) -> ReplayOutcome:
    """Replay a compressed trace segment on Ray Serve, once per policy.

    Parameters
    ----------
    trace, time_col, value_col, start
        ``'bikeshare'`` or a CSV path, its columns, and the segment's start (default:
        the last ``hours`` of the trace).
    hours, speedup : float
        Trace hours replayed, and trace seconds per wall second.
    policies, model, slo_ms, percentile
        Policy names (replayed in order), the zoo model served, and the SLO.
    flavors, flavor
        Flavors YAML and flavor name (:func:`edgewise.api.serve.pick_flavor`).
    peak_rps, peak_fraction : float
        Peak rate of the segment; default ``peak_fraction`` of what the host's replicas
        serve at the capacity the policies plan with.
    neighbours : sequence of str
        Workloads beside every replica (``stress:cpu=0.5``, ``model@RATErps``): the
        capacity is derated by the slowdown the interference model predicts next to them.
    port, seed, ingress, simulate
        HTTP port, seed of the arrivals, ``'proxy'`` or ``'haproxy'``, and whether to
        also simulate each policy over the same segment.
    kb, progress
        Knowledge-base URL (``None``: the default one); ``progress(phase, done, total)``
        says what starts (the probe, then each policy's replay with the segment's facts).

    Returns
    -------
    ReplayOutcome
        The segment, the capacity and every run.
    """
    from edgewise.api.serve import pick_flavor
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.live import replicas_that_fit
    from edgewise.serving.replay import select_segment
    from edgewise.serving.runtime import RaySession
    from edgewise.workloads.traces import load_trace

    names = check_policy_names(policies)
    check_replay_inputs(model, slo_ms, percentile, hours, speedup)
    series = load_trace(trace, time_col, value_col)
    fl = pick_flavor(flavors, flavor)
    store = KnowledgeBase.open(kb)
    n_max = replicas_that_fit(fl)
    report = progress or (lambda _phase, _done, _total: None)
    runs = []
    with RaySession(ingress=ingress):
        report(f"probing one {model} replica in flavor {fl.name} through HTTP ...", 0, len(names))
        cap = _probe(model, fl, n_max, slo_ms, percentile, port, seed, ingress)
        option, coloc, slowdown = _colocate(cap, model, neighbours, slo_ms, percentile, seed, store)
        peak = peak_rps or peak_fraction * option.capacity_rps * n_max
        setup = _ReplaySetup(
            trace=trace,
            segment=select_segment(series, start, hours, speedup, peak),
            hours=hours,
            model=model,
            flavor=fl,
            cap=cap,
            max_replicas=n_max,
            slo_ms=slo_ms,
            percentile=percentile,
            seed=seed,
            store=store,
            port=port,
            ingress=ingress,
            inputs={"trace": trace, "hours": hours, "flavor": fl.name, "peak_rps": peak},
            simulate=simulate,
            colocation=coloc,
            slowdown=slowdown,
        )
        for i, p in enumerate(names):
            report(setup.announce(p), i, len(names))
            runs.append(_replay_one(setup, p))
    return setup.outcome(tuple(runs))
