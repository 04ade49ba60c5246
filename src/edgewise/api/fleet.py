"""Fleet use cases: several services on one pool of nodes, planned and simulated.

:func:`~edgewise.api.fleet_kb.kb_slowdown` is the planner's slowdown function from the
knowledge base's interference models; :func:`fleet_setup` loads a fleet spec and builds each service's replica options, their
service-time profiles and the derate function; :func:`plan_fleet_spec` answers one
window (``plan --fleet``); :func:`simulate_fleet` plans every window of a trace with
ours and the interference-blind baselines and serves each service with its true
slowdown on the node it landed on (``simulate serving --fleet``, ``bench fleet``).

Effects: reading the spec, the trace and the knowledge base. The planning
(:mod:`edgewise.planning.fleet`) and the simulation (:mod:`edgewise.sim.fleet`) are pure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.api.fleet_kb import InterferenceModelInfo, kb_slowdown
from edgewise.errors import (
    EnvironmentProblem,
    InfeasibleError,
    SpecError,
    TraceError,
    UnknownNameError,
)
from edgewise.planning.fleet import (
    BLIND_RULES,
    MAX_SLOWDOWN,
    DerateFn,
    FleetPlan,
    Node,
    ServiceOptions,
    SlowdownFn,
    grid_rate,
    plan_blind,
    plan_fleet,
)
from edgewise.planning.fleet_spec import FleetSpec, load_fleet
from edgewise.planning.serving import ReplicaOption
from edgewise.sim.fleet import (
    SLO_TARGET,
    PolicyOutcome,
    ReplicaClass,
    capacity_curve,
    compare_policies,
    plan_classes,
    shifted_rates,
    simulate_service,
    window_peaks,
)
from edgewise.sim.model import SimConfig
from edgewise.sim.queueing import ServiceProfile, lognormal_profile, speed_factor

if TYPE_CHECKING:
    pass

__all__ = [
    "POLICIES",
    "SLO_TARGET",
    "FleetSetup",
    "FleetSimulation",
    "FleetWindowPlan",
    "InterferenceModelInfo",
    "PolicyOutcome",
    "Progress",
    "fleet_setup",
    "kb_slowdown",
    "plan_fleet_spec",
    "simulate_fleet",
]

#: Policies compared: ours first, then the interference-blind baselines.
POLICIES: tuple[str, ...] = ("ours", *BLIND_RULES)
#: Slowdowns the derate function is tabulated at (interpolated between, in log).
_FACTORS = np.geomspace(1.0, MAX_SLOWDOWN, 65)


# --------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class FleetSetup:
    """A loaded fleet: planner inputs, service-time profiles and the derate function."""

    spec: FleetSpec
    services: tuple[ServiceOptions, ...]
    nodes: tuple[Node, ...]
    memory_mb: Mapping[str, int]
    profiles: Mapping[tuple[str, str, str], ServiceProfile]
    """Service times alone per (service, model, flavor), at the flavor's CPUs."""
    profile_sources: Mapping[str, str]
    """Where each model's service times come from."""
    derate: DerateFn
    service_of: Mapping[ReplicaOption, str]

    @property
    def models(self) -> list[str]:
        """The zoo models of every service's variants, sorted."""
        return sorted({o.model for s in self.services for o in s.options})


def _base_profile(model: str, declared_ms: float | None, kb: str | None) -> ServiceProfile:
    from edgewise.api.simulate import service_profile

    prof = service_profile(model, kb)
    if prof.source.startswith("KB capacity profile") or declared_ms is None:
        return prof
    return ServiceProfile(
        lognormal_profile(declared_ms).samples_ms,
        1.0,
        f"fleet spec: lognormal, median {declared_ms:g} ms at 1 CPU, sigma 0.25",
    )


def fleet_setup(
    spec: FleetSpec | str | Path,
    kb: str | None = None,
    measured: Mapping[tuple[str, str], ServiceProfile] | None = None,
) -> FleetSetup:
    """Replica options of every (service, variant, flavor) with capacities from profiles.

    Each variant's service times come from its knowledge-base capacity profile, else
    from the spec's ``service_ms`` (a lognormal around that median), else the default
    lognormal; they are scaled to each flavor's CPUs and the capacity is the
    simulator's M/G/1 capacity under the service's SLO (:func:`capacity_curve`). The
    derate function interpolates that capacity over slowdowns.

    Parameters
    ----------
    spec : FleetSpec or path
        The fleet, or its YAML file.
    kb : str, optional
        Knowledge-base URL for capacity profiles.
    measured : mapping, optional
        Service times per (model, flavor) probed through the live path, used as they are.
    """
    fleet = spec if isinstance(spec, FleetSpec) else load_fleet(spec)
    base: dict[str, ServiceProfile] = {}
    profiles: dict[tuple[str, str, str], ServiceProfile] = {}
    curves: dict[ReplicaOption, np.ndarray] = {}
    service_of: dict[ReplicaOption, str] = {}
    services = []
    for svc in fleet.services:
        options = []
        for v in svc.variants:
            if v.model not in base:
                base[v.model] = _base_profile(v.model, svc.service_ms.get(v.model), kb)
            for f in fleet.flavors:
                prof = (measured or {}).get((v.model, f.name)) or base[v.model].scaled(
                    float(speed_factor(base[v.model].cpus, f.cpus)), f.cpus
                )
                curve = capacity_curve(prof, svc.slo.latency_ms, svc.slo.percentile, _FACTORS)
                opt = ReplicaOption(
                    v.model, f.name, v.accuracy, float(curve[0]), f.price_per_hour,
                    f.max_replicas, f.cpus,
                )  # fmt: skip
                profiles[(svc.name, v.model, f.name)] = prof
                curves[opt] = curve
                service_of[opt] = svc.name
                options.append(opt)
        services.append(ServiceOptions(svc.name, tuple(options), svc.min_accuracy))
    log_f = np.log(_FACTORS)

    def derate(option: ReplicaOption, factor: float) -> float:
        curve = curves.get(option)
        if curve is None:
            return option.capacity_rps / max(factor, 1.0)
        return float(np.interp(np.log(max(factor, 1.0)), log_f, curve))

    return FleetSetup(
        spec=fleet,
        services=tuple(services),
        nodes=tuple(Node(n.name, n.cpus, n.memory_mb, n.price_per_hour) for n in fleet.node_list),
        memory_mb={f.name: f.memory_mb for f in fleet.flavors},
        profiles=profiles,
        profile_sources={
            **{m: p.source for m, p in base.items()},
            **{f"{m}/{f}": p.source for (m, f), p in (measured or {}).items()},
        },
        derate=derate,
        service_of=service_of,
    )


def _plan(
    policy: str, setup: FleetSetup, rates: Mapping[str, float], slowdown: SlowdownFn
) -> FleetPlan:
    if policy == "ours":
        return plan_fleet(
            setup.services, rates, setup.nodes, setup.memory_mb, slowdown, setup.derate
        )
    return plan_blind(policy, setup.services, rates, setup.nodes, setup.memory_mb, slowdown)


@dataclass(frozen=True)
class FleetWindowPlan:
    """One window planned by every policy (``plan --fleet``)."""

    plans: tuple[FleetPlan, ...]
    capacity_rps: Mapping[str, Mapping[str, float]]
    interference: Mapping[str, InterferenceModelInfo]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: each policy's placement, cost and capacities next to the rates."""
        return {
            "policies": {
                p.policy: {**p.as_dict(), "capacity_rps": dict(self.capacity_rps[p.policy])}
                for p in self.plans
            },
            "interference_models": {m: i.as_dict() for m, i in self.interference.items()},
        }


def plan_fleet_spec(
    *,
    fleet: str | Path | FleetSpec,
    rates_rps: Mapping[str, float] | None = None,
    policies: Sequence[str] = POLICIES,
    kb: str | None = None,
) -> FleetWindowPlan:
    """Plan one window of a fleet: ours and the blind baselines, at the given rates.

    Parameters
    ----------
    fleet : path or FleetSpec
        The fleet spec.
    rates_rps : mapping, optional
        Rate per service name (default: each service's ``peak_rps``).
    policies : sequence of str
        Among :data:`POLICIES`.
    kb : str, optional
        Knowledge base of the interference models and capacity profiles.

    Raises
    ------
    EdgewiseError
        One line: a bad spec, an unknown policy or service, an infeasible fleet.
    """
    _check_policies(policies)
    setup = fleet_setup(fleet, kb)
    rates = {s.name: s.peak_rps for s in setup.spec.services}
    for name, rate in (rates_rps or {}).items():
        if name not in rates:
            raise UnknownNameError(f"no service {name!r} in the fleet; known: {', '.join(rates)}")
        if not rate >= 0:
            raise SpecError(f"rate of service {name!r} must be >= 0, got {rate}")
        rates[name] = float(rate)
    slowdown, info = kb_slowdown(setup.models, kb)
    plans = tuple(_plan(p, setup, rates, slowdown) for p in policies)
    return FleetWindowPlan(plans, {p.policy: p.capacity_rps(setup.derate) for p in plans}, info)


def _check_policies(policies: Sequence[str]) -> None:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise UnknownNameError(f"unknown fleet policy {unknown[0]!r}; known: {', '.join(POLICIES)}")


# --------------------------------------------------------------------------- simulation


def _service_rates(spec: FleetSpec, trace: str | Path, days: float) -> dict[str, np.ndarray]:
    """Per-second rates of every service: one trace, shifted and scaled per service."""
    from edgewise.api.simulate import load_workload

    hours = max(s.shift_hours for s in spec.services)
    # whole hours beyond the window, so that every shifted slice is complete
    wl = load_workload(trace, (math.ceil(days * 24) + hours + 1) / 24.0, peak_rps=1.0)
    try:
        return shifted_rates(
            wl.rate_rps[wl.warmup_s :],
            round(days * 86400),
            {s.name: (s.shift_hours, s.peak_rps) for s in spec.services},
        )
    except ValueError as err:
        raise TraceError(f"{trace}: {err}") from None


@dataclass(frozen=True)
class FleetSimulation:
    """Every policy over the same fleet and trace; ``as_dict()`` is ``bench fleet``'s JSON."""

    setup: FleetSetup
    trace: str
    days: float
    window_s: int
    seed: int
    slowdown_error: float
    outcomes: tuple[PolicyOutcome, ...]
    interference: Mapping[str, InterferenceModelInfo]

    def comparison(self) -> dict[str, Any]:
        """Ours against the cheapest blind baseline that meets every SLO (else the cheapest)."""
        return compare_policies(self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able report."""
        spec = self.setup.spec
        synthetic = sorted(m for m, i in self.interference.items() if i.synthetic)
        return {
            "trace": self.trace,
            "days": self.days,
            "window_s": self.window_s,
            "seed": self.seed,
            "slo_target": SLO_TARGET,
            "nodes": len(self.setup.nodes),
            "node_cpus": sum(n.cpus for n in self.setup.nodes),
            "services": [
                {
                    "name": s.name,
                    "models": [v.model for v in s.variants],
                    "slo_ms": s.slo.latency_ms,
                    "slo_percentile": s.slo.percentile,
                    "min_accuracy": s.min_accuracy,
                    "peak_rps": s.peak_rps,
                    "shift_hours": s.shift_hours,
                }
                for s in spec.services
            ],
            "service_profiles": dict(self.setup.profile_sources),
            "interference_models": {m: i.as_dict() for m, i in self.interference.items()},
            "interference_synthetic": synthetic,
            "interference_source": (
                "knowledge base"
                + (f" (synthetic fixture models for {', '.join(synthetic)})" if synthetic else "")
            ),
            "true_slowdown": "the knowledge base's interference model, the one ours plans "
            "with: each replica next to its neighbours on the node it landed on, its excess "
            "over 1 times 1 + slowdown_error",
            "slowdown_error": self.slowdown_error,
            "rate_per_window": "the peak of each service's true rate in the window, rounded up "
            "to a 2 % grid, the same for every policy (placement is compared, not "
            "forecasting)",
            "cost_model": "price per hour of every node holding a replica, per window",
            "policies": {o.policy: o.as_dict() for o in self.outcomes},
            **self.comparison(),
        }


Progress = Callable[[str, int, int], None]


def _plan_windows(
    setup: FleetSetup,
    policies: Sequence[str],
    peaks: Mapping[str, np.ndarray],
    window_s: int,
    slowdown: SlowdownFn,
    error: float,
    progress: Progress | None,
) -> tuple[dict[str, PolicyOutcome], dict[str, dict[str, list[list[ReplicaClass]]]]]:
    """Plan every window with every policy: the books and each service's classes."""
    outcomes = {p: PolicyOutcome(p) for p in policies}
    classes: dict[str, dict[str, list[list[ReplicaClass]]]] = {
        p: {s.name: [] for s in setup.services} for p in policies
    }
    n_win = len(next(iter(peaks.values())))
    hours = window_s / 3600.0
    for k in range(n_win):
        if progress is not None:
            progress("planning", k, n_win)
        rates = {name: grid_rate(float(v[k])) for name, v in peaks.items()}
        for p in policies:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                plan = _plan(p, setup, rates, slowdown)
            except InfeasibleError as err:
                raise InfeasibleError(f"{p}, window {k} (hour {k * hours:g}): {err}") from None
            out = outcomes[p]
            out.plan_wall_s += time.perf_counter() - t0
            out.plan_cpu_s += time.process_time() - c0
            out.cost += plan.cost_per_hour * hours
            out.replica_cost += plan.replica_cost_per_hour * hours
            out.node_hours += plan.nodes_used * hours
            out.max_nodes = max(out.max_nodes, plan.nodes_used)
            out.unplaced_replica_hours += len(plan.unplaced) * hours
            out.notes.update(dict.fromkeys(plan.notes))
            for s in setup.services:
                classes[p][s.name].append(
                    plan_classes(plan, s.name, setup.derate, setup.profiles, error)
                )
    return outcomes, classes


def simulate_fleet(
    *,
    fleet: str | Path | FleetSpec,
    trace: str | Path = "bikeshare",
    days: float = 14.0,
    window_s: int = 3600,
    policies: Sequence[str] = POLICIES,
    seed: int = 0,
    kb: str | None = None,
    min_interference_models: int = 0,
    slowdown_error: float = 0.0,
    progress: Progress | None = None,
) -> FleetSimulation:
    """Plan and serve a fleet over ``days`` of a trace with ours and the blind baselines.

    Each service's rate is the last ``days`` of ``trace``, shifted by its
    ``shift_hours`` and scaled to its ``peak_rps``; arrivals are Poisson per second
    (seeded per service, the same for every policy). Every ``window_s`` each policy
    plans for the window's peak rate of each service; the simulator serves every
    replica with its true slowdown on the node it landed on (the knowledge base's
    interference model) and scores the attainment per service. Cost is what the nodes
    in use cost.

    Parameters
    ----------
    fleet : path or FleetSpec
        The fleet spec.
    trace : str or Path
        ``'bikeshare'`` (or another vendored trace) or a CSV path.
    days : float
        Days simulated.
    window_s : int
        Seconds per planning window.
    policies : sequence of str
        Among :data:`POLICIES`.
    seed : int
        Seed of the arrivals.
    kb : str, optional
        Knowledge base of the interference models and capacity profiles.
    min_interference_models : int
        Fewest of the fleet's models that must have an interference model (a benchmark
        with none would compare placements under no interference at all).
    slowdown_error : float
        The true excess slowdown is the predicted one times ``1 + slowdown_error``
        (0: the model is right; 0.2: interference 20 % worse than predicted).
    progress : callable, optional
        ``progress(stage, done, total)``.

    Raises
    ------
    EdgewiseError
        One line: a bad spec or trace, an unknown policy, a window ours cannot plan,
        too few interference models.
    """
    _check_policies(policies)
    if window_s < 60:
        raise SpecError(f"window of {window_s} s: plan at least every 60 s")
    if not days > 0 or not slowdown_error > -1:
        raise SpecError(f"days must be > 0 and the slowdown error > -1: {days}, {slowdown_error}")
    setup = fleet_setup(fleet, kb)
    models = setup.models
    slowdown, info = kb_slowdown(models, kb)
    if len(info) < min_interference_models:
        missing = [m for m in models if m not in info]
        raise EnvironmentProblem(
            f"the knowledge base has interference models of {len(info)} of the fleet's "
            f"{len(models)} models (at least {min_interference_models} needed; missing: "
            f"{', '.join(missing)}): profile them with `edgewise profile MODEL`, or pass "
            "--kb with a knowledge base that holds them"
        )
    rates = _service_rates(setup.spec, trace, days)
    peaks = {name: window_peaks(r, window_s) for name, r in rates.items()}
    outcomes, classes = _plan_windows(
        setup, policies, peaks, window_s, slowdown, slowdown_error, progress
    )
    for i, svc in enumerate(setup.spec.services):
        if progress is not None:
            progress("simulating", i, len(setup.spec.services))
        lam = rates[svc.name]
        arrivals = np.random.default_rng([seed, i]).poisson(lam).astype(float)
        config = SimConfig(slo_ms=svc.slo.latency_ms, slo_percentile=svc.slo.percentile)
        shared: dict[Any, tuple[float, float, float]] = {}
        for p in policies:
            got = simulate_service(lam, arrivals, classes[p][svc.name], window_s, config, shared)
            out = outcomes[p]
            out.attainment[svc.name] = got.slo_attainment
            out.requests += got.requests
            out.served += got.requests - got.rejected
    return FleetSimulation(
        setup=setup,
        trace=str(trace),
        days=days,
        window_s=window_s,
        seed=seed,
        slowdown_error=slowdown_error,
        outcomes=tuple(outcomes[p] for p in policies),
        interference=info,
    )
