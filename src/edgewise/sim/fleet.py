"""A fleet of services over days, simulated window by window on the fluid simulator.

Each service's replicas in one planning window fall into *classes*: replicas of one
flavor running one model variant at one true slowdown (the node they landed on). A
class is a :class:`~edgewise.sim.model.SimFlavor` whose service times are the variant's,
scaled to the flavor's CPUs and multiplied by the slowdown; the window is then the
simulator's constant ready pool (:func:`edgewise.sim.fluid.advance`) and its attainment
the simulator's (:func:`edgewise.sim.scoring.attainment_per_second`). The fluid backlog
left at the end of a window carries into the next, so an overloaded window hurts the
next one as it would live. Replicas are ready at the start of their window (the plan is
known ahead and start-ups are hidden), so windows compare placements, not start-up.

Pure computation: the caller hands in the per-second rates, the seeded arrivals and
the classes of every window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgewise.planning.fleet import DerateFn, FleetPlan
from edgewise.planning.serving import ReplicaOption
from edgewise.serving.policies.base import FlavorOption, service_quantiles
from edgewise.sim.fluid import SimState, advance
from edgewise.sim.model import SimConfig, SimFlavor
from edgewise.sim.pool import ReplicaPool
from edgewise.sim.queueing import ServiceProfile, prob_within, wait_parameters
from edgewise.sim.scoring import attainment_per_second

__all__ = [
    "CALM_STEP_S",
    "SLO_TARGET",
    "PolicyOutcome",
    "ReplicaClass",
    "ServiceOutcome",
    "capacity_curve",
    "compare_policies",
    "plan_classes",
    "replica_class",
    "shifted_rates",
    "simulate_service",
    "window_peaks",
]


def capacity_curve(
    profile: ServiceProfile, slo_ms: float, percentile: float, factors: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Capacity of one replica (M/G/1) with its service times ``factors`` times slower.

    At factor 1 this is :func:`edgewise.sim.queueing.capacity_rps` of ``profile``: the
    largest Poisson rate with ``percentile`` % of requests within ``slo_ms``, by the
    simulator's own queueing model; one bisection runs for every factor at once.

    Parameters
    ----------
    profile : ServiceProfile
        Service times alone.
    slo_ms, percentile : float
        The SLO.
    factors : sequence of float
        Slowdowns (>= 1).

    Returns
    -------
    numpy.ndarray
        Capacity (rps) per factor; 0 where even an idle replica misses the SLO.
    """
    f = np.asarray(factors, dtype=float)
    mean_s = profile.mean_ms / 1000.0 * f
    x = np.full(f.shape, slo_ms / 1000.0)
    ones = np.ones(f.shape)
    target = percentile / 100.0

    def ok(rate: np.ndarray) -> np.ndarray:
        pw, th = wait_parameters(rate, ones, mean_s, profile.cv2)
        return np.asarray(prob_within(x, pw, th, f, profile) >= target)

    idle = ok(np.full(f.shape, 1e-9))
    lo, hi = np.zeros(f.shape), 1.0 / mean_s
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
    return np.where(idle, lo, 0.0)


@dataclass(frozen=True)
class ReplicaClass:
    """``count`` replicas of one service alike in flavor, variant and true slowdown."""

    flavor: SimFlavor
    count: int


def replica_class(
    name: str,
    cpus: float,
    capacity_rps: float,
    profile: ServiceProfile,
    slowdown: float,
    count: int,
) -> ReplicaClass:
    """A class of replicas whose service times are ``profile``'s times ``slowdown``.

    Parameters
    ----------
    name : str
        Unique name of the class within its service and window.
    cpus : float
        CPUs of one replica.
    capacity_rps : float
        Capacity of one replica at this slowdown (it weights the routing).
    profile : ServiceProfile
        Service times at ``cpus``, alone.
    slowdown : float
        True slowdown next to the replica's neighbours (>= 1).
    count : int
        Replicas in the class.
    """
    slowed = profile.scaled(slowdown)
    option = FlavorOption(
        name=name,
        cpus=cpus,
        capacity_rps=capacity_rps,
        price_per_hour=0.0,
        max_replicas=max(count, 1),
        service_ms_mean=slowed.mean_ms,
        service_ms_quantiles=service_quantiles(slowed.samples_ms),
    )
    return ReplicaClass(SimFlavor(option, slowed), int(count))


def plan_classes(
    plan: FleetPlan,
    service: str,
    derate: DerateFn,
    profiles: Mapping[tuple[str, str, str], ServiceProfile],
    error: float = 0.0,
) -> list[ReplicaClass]:
    """The replicas of ``service`` in ``plan``, grouped by variant, flavor and slowdown.

    Parameters
    ----------
    plan : FleetPlan
        One window's plan; its slowdowns are taken as the truth, their excess over 1
        scaled by ``1 + error``.
    service : str
        The service.
    derate : DerateFn
        Capacity of a replica at a slowdown (weights the routing).
    profiles : mapping
        Service times alone per (service, model, flavor).
    error : float
        Relative error of the predicted excess slowdown (0.2: the truth is 20 % worse
        than predicted), to see how a plan holds up when the model is wrong.
    """
    groups: dict[tuple[str, str, float], tuple[ReplicaOption, int]] = {}
    for r, s in zip(plan.replicas, plan.slowdowns, strict=True):
        if r.service == service:
            true = 1.0 + (s.factor - 1.0) * (1.0 + error)
            key = (r.model, r.option.flavor, round(max(true, 1.0), 3))
            groups[key] = (r.option, groups.get(key, (r.option, 0))[1] + 1)
    return [
        replica_class(
            f"{m}/{fl}@{f:.3f}", opt.cpus, derate(opt, f), profiles[(service, m, fl)], f, n
        )
        for (m, fl, f), (opt, n) in groups.items()
    ]


@dataclass(frozen=True)
class ServiceOutcome:
    """One service over every window: requests, those within the SLO, rejections."""

    requests: float
    within_slo: float
    rejected: float

    @property
    def slo_attainment(self) -> float:
        """Fraction of requests served within the SLO (1 without a request)."""
        return self.within_slo / self.requests if self.requests > 0 else 1.0


#: Seconds per evaluation step where a window is never overloaded (see :func:`_window`).
CALM_STEP_S = 10


def _window(
    lam: np.ndarray,
    arrivals: np.ndarray,
    classes: Sequence[ReplicaClass],
    config: SimConfig,
    backlog: float,
) -> tuple[float, float, float]:
    """(requests within the SLO, rejected requests, backlog at the end) of one window.

    A window that starts with no backlog and whose rate never exceeds what its replicas
    can serve keeps no backlog, so each second's attainment depends on that second's
    rate alone: it is evaluated every :data:`CALM_STEP_S` seconds (at the step's mean
    rate, the trace being linear within its bins) and weighted by the step's arrivals.
    Any other window is simulated second by second.
    """
    flavors = [c.flavor for c in classes if c.count > 0]
    counts = {c.flavor.name: c.count for c in classes if c.count > 0}
    service_rate = sum(counts[f.name] / f.mean_service_s for f in flavors)
    calm = backlog <= 0 and lam.size >= CALM_STEP_S and float(lam.max()) < service_rate
    if calm:
        k = lam.size // CALM_STEP_S * CALM_STEP_S
        lam_s = lam[:k].reshape(-1, CALM_STEP_S).mean(axis=1)
        arr_s = arrivals[:k].reshape(-1, CALM_STEP_S).sum(axis=1)
        if k < lam.size:
            lam_s = np.append(lam_s, lam[k:].mean())
            arr_s = np.append(arr_s, arrivals[k:].sum())
        lam, arrivals = lam_s, arr_s
    state = SimState.empty(lam, arrivals, [f.name for f in flavors])
    state.backlog[0] = backlog
    advance(state, ReplicaPool.of(flavors, counts), flavors, config, lam.size)
    ok = attainment_per_second(state, flavors, config)
    if calm:
        return float((ok * arrivals).sum()), 0.0, 0.0
    rejected = np.minimum(arrivals, state.rejected / np.maximum(lam, 1e-12) * arrivals)
    return float((ok * arrivals).sum()), float(rejected.sum()), float(state.backlog[-1])


def window_peaks(rate: np.ndarray, window_s: int) -> np.ndarray:
    """The peak of ``rate`` in every window of ``window_s`` seconds (the last may be short)."""
    k = -(-rate.size // window_s)
    padded = np.zeros(k * window_s)
    padded[: rate.size] = rate
    return padded.reshape(k, window_s).max(axis=1)


def shifted_rates(
    base: np.ndarray, seconds: int, services: Mapping[str, tuple[int, float]]
) -> dict[str, np.ndarray]:
    """Each service's rates: ``base`` shifted by its hours and scaled to its peak.

    Parameters
    ----------
    base : numpy.ndarray
        Per-second rates, at least ``seconds`` plus the largest shift long.
    seconds : int
        Seconds per service.
    services : mapping
        ``name -> (shift_hours, peak_rps)``: a service shifted by ``h`` hours sees at
        second ``t`` what an unshifted one saw at ``t - 3600 h``.

    Raises
    ------
    ValueError
        ``base`` is too short, or a service's slice holds no request.
    """
    hours = max(h for h, _ in services.values())
    out = {}
    for name, (shift, peak) in services.items():
        lo = (hours - shift) * 3600
        seg = np.asarray(base[lo : lo + seconds], dtype=float)
        if seg.size < seconds:
            raise ValueError(f"too short for {seconds} s shifted by {hours} hours")
        top = float(seg.max())
        if top <= 0:
            raise ValueError(f"the window of service {name!r} holds no request")
        out[name] = seg * (peak / top)
    return out


def _signature(classes: Sequence[ReplicaClass]) -> tuple[tuple[str, int, float], ...]:
    return tuple(
        sorted((c.flavor.name, c.count, c.flavor.option.capacity_rps) for c in classes if c.count)
    )


def simulate_service(
    rate_rps: np.ndarray,
    arrivals: np.ndarray,
    windows: Sequence[Sequence[ReplicaClass]],
    window_s: int,
    config: SimConfig,
    cache: dict[Any, tuple[float, float, float]] | None = None,
) -> ServiceOutcome:
    """Serve one service's per-second rates with each window's replica classes.

    Parameters
    ----------
    rate_rps, arrivals : numpy.ndarray
        True rate and Poisson arrivals of every second.
    windows : sequence of sequences of ReplicaClass
        The classes of window ``k``, which covers seconds ``[k * window_s, (k+1) * window_s)``.
    window_s : int
        Seconds per window.
    config : SimConfig
        The SLO and the queue settings (its ``warmup_s`` and ``startup_s`` are unused).
    cache : dict, optional
        Outcomes of windows already simulated with the same rates, keyed by window,
        classes and starting backlog: share one between runs over the same rates and
        arrivals (policies that placed a service alike) to simulate each window once.

    Returns
    -------
    ServiceOutcome
        Totals over every window.
    """
    lam = np.maximum(np.asarray(rate_rps, dtype=float), 0.0)
    arr = np.asarray(arrivals, dtype=float)
    if lam.shape != arr.shape:
        raise ValueError("rates and arrivals differ in length")
    need = -(-lam.size // window_s)
    if len(windows) < need:
        raise ValueError(f"{len(windows)} windows for {need} windows of rates")
    cfg = replace(config, warmup_s=0, startup_s=0)
    within = rejected = backlog = 0.0
    for k in range(need):
        sl = slice(k * window_s, min(lam.size, (k + 1) * window_s))
        key = (k, _signature(windows[k]), round(backlog, 6))
        if cache is not None and key in cache:
            ok, rej, backlog = cache[key]
        else:
            ok, rej, backlog = _window(lam[sl], arr[sl], windows[k], cfg, backlog)
            if cache is not None:
                cache[key] = (ok, rej, backlog)
        within += ok
        rejected += rej
    return ServiceOutcome(float(arr.sum()), within, rejected)


# --------------------------------------------------------------------------- scoring policies

#: SLO attainment a service must reach not to count as below its SLO.
SLO_TARGET = 0.995


@dataclass
class PolicyOutcome:
    """One policy over the whole run, accumulated window by window.

    Attributes
    ----------
    policy : str
        ``ours``, ``ray-spread`` or ``first-fit``.
    cost : float
        Price of the nodes in use, summed over the windows (the bill).
    replica_cost : float
        The replicas at their flavors' prices, summed likewise (for comparison).
    node_hours : float
        Hours of nodes in use.
    max_nodes : int
        Most nodes in use in one window.
    unplaced_replica_hours : float
        Hours of replicas a blind baseline found no room for.
    requests, served : float
        Requests arrived, and those not rejected.
    attainment : dict
        SLO attainment per service.
    notes : dict
        Fallbacks and remarks of the plans, each once (a dict keeps their order).
    plan_wall_s, plan_cpu_s : float
        Wall-clock and CPU seconds spent planning.
    """

    policy: str
    cost: float = 0.0
    replica_cost: float = 0.0
    node_hours: float = 0.0
    max_nodes: int = 0
    unplaced_replica_hours: float = 0.0
    requests: float = 0.0
    served: float = 0.0
    attainment: dict[str, float] = field(default_factory=dict)
    notes: dict[str, None] = field(default_factory=dict)
    plan_wall_s: float = 0.0
    plan_cpu_s: float = 0.0

    def below_slo(self) -> list[str]:
        """Services whose attainment is under :data:`SLO_TARGET`."""
        return [s for s, a in self.attainment.items() if a < SLO_TARGET]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures."""
        below = self.below_slo()
        return {
            "cost": round(self.cost, 6),
            "cost_per_served_request": self.cost / self.served if self.served > 0 else None,
            "cost_per_million_served": 1e6 * self.cost / self.served if self.served > 0 else None,
            "replica_cost": round(self.replica_cost, 6),
            "node_hours": round(self.node_hours, 3),
            "max_nodes_used": self.max_nodes,
            "unplaced_replica_hours": round(self.unplaced_replica_hours, 3),
            "requests": self.requests,
            "served": self.served,
            "slo_attainment": dict(self.attainment),
            "services_below_slo": len(below),
            "below_slo": below,
            "notes": list(self.notes),
            "plan_wall_s": round(self.plan_wall_s, 3),
            "plan_cpu_s": round(self.plan_cpu_s, 3),
        }


def compare_policies(outcomes: Sequence[PolicyOutcome]) -> dict[str, Any]:
    """Ours against the cheapest blind baseline that meets every SLO (else the cheapest).

    Returns
    -------
    dict
        ``services_below_slo`` (ours), ``best_blind`` (the baseline compared with),
        ``best_blind_meets_every_slo`` and ``cost_ratio_vs_best_blind`` (ours over it;
        ``None`` for a free baseline); empty without ours, only the first without a
        baseline.
    """
    ours = next((o for o in outcomes if o.policy == "ours"), None)
    if ours is None:
        return {}
    out: dict[str, Any] = {"services_below_slo": len(ours.below_slo())}
    blind = [o for o in outcomes if o.policy != "ours"]
    if not blind:
        return out
    meeting = [o for o in blind if not o.below_slo()]
    best = min(meeting or blind, key=lambda o: o.cost)
    out["best_blind"] = best.policy
    out["best_blind_meets_every_slo"] = bool(meeting)
    out["cost_ratio_vs_best_blind"] = ours.cost / best.cost if best.cost > 0 else None
    return out
