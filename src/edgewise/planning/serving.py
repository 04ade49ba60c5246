"""Cost-minimising serving configuration (Barista): which model variants, flavors and counts.

Pure functions, no effects: the caller measures capacities (``edgewise.serving.capacity``),
builds :class:`ReplicaOption` values and stores the returned :class:`ServingPlan`.

The problem, with one integer variable n_o per option o = (model variant, flavor)::

    minimise  Σ_o p_o n_o   subject to   Σ_o μ_o n_o ≥ λ,   Σ_{o in flavor f} n_o ≤ N_f,
              n_o ∈ ℕ,   over the options whose accuracy is at least the minimum.

A flavor's replica limit N_f is shared by the model variants that run in it (the
smallest ``max_replicas`` among its options).

:func:`plan_exact` solves it with ``scipy.optimize.milp`` (HiGHS) and breaks cost ties
towards fewer replicas, then more headroom. :func:`plan_heuristic` is the Barista-style
greedy rule (most cost-effective option first, then the cheapest single option covering
the remainder). :func:`plan_bruteforce` enumerates small instances, for checking both.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from edgewise.errors import InfeasibleError

if TYPE_CHECKING:
    from edgewise.config import FlavorCatalog, ServiceSpec

#: A plan covers the rate when its capacity is at least ``rate * (1 - COVER_RTOL)``.
COVER_RTOL = 1e-9

Planner = Callable[..., "ServingPlan"]


@dataclass(frozen=True)
class ReplicaOption:
    """One way to run a replica: a model variant in a flavor, with its measured capacity.

    Attributes
    ----------
    model, flavor : str
        Model variant and flavor names.
    accuracy : float
        The variant's accuracy in [0, 1].
    capacity_rps : float
        Largest Poisson arrival rate one replica sustains within the SLO (0: never).
    price_per_hour : float
        Price of one replica of this flavor.
    max_replicas : int
        Most replicas of this flavor the plan may use, shared by every variant in it.
    cpus : float
        CPUs of the flavor (informational; the planner does not use it).
    """

    model: str
    flavor: str
    accuracy: float
    capacity_rps: float
    price_per_hour: float
    max_replicas: int
    cpus: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.flavor)


@dataclass(frozen=True)
class ServingPlan:
    """Replica counts per (model, flavor), with their cost and capacity against a rate."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    cost_per_hour: float = 0.0
    capacity_rps: float = 0.0
    rate_rps: float = 0.0

    @property
    def headroom(self) -> float:
        """``capacity / rate - 1``; infinite for a positive capacity at rate 0, else 0."""
        if self.rate_rps <= 0:
            return math.inf if self.capacity_rps > 0 else 0.0
        return self.capacity_rps / self.rate_rps - 1.0

    @property
    def replicas(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (counts as a list of rows)."""
        return {
            "counts": [
                {"model": m, "flavor": f, "replicas": n}
                for (m, f), n in sorted(self.counts.items())
            ],
            "cost_per_hour": self.cost_per_hour,
            "capacity_rps": self.capacity_rps,
            "rate_rps": self.rate_rps,
            "headroom": None if math.isinf(self.headroom) else self.headroom,
            "replicas": self.replicas,
        }


def make_plan(
    options: Sequence[ReplicaOption], counts: Sequence[int] | np.ndarray, rate_rps: float
) -> ServingPlan:
    """Build the :class:`ServingPlan` of integer ``counts`` (aligned with ``options``)."""
    merged: dict[tuple[str, str], int] = {}
    cost = 0.0
    capacity = 0.0
    for opt, n in zip(options, counts, strict=True):
        n = int(n)
        if n <= 0:
            continue
        merged[opt.key] = merged.get(opt.key, 0) + n
        cost += opt.price_per_hour * n
        capacity += opt.capacity_rps * n
    return ServingPlan(counts=merged, cost_per_hour=cost, capacity_rps=capacity, rate_rps=rate_rps)


def covers(capacity_rps: float, rate_rps: float) -> bool:
    """Whether ``capacity_rps`` serves ``rate_rps`` (within :data:`COVER_RTOL`)."""
    return capacity_rps >= rate_rps * (1.0 - COVER_RTOL)


def eligible_options(
    options: Sequence[ReplicaOption], rate_rps: float, min_accuracy: float = 0.0
) -> list[ReplicaOption]:
    """The options a plan may use, or an :class:`InfeasibleError` saying why none can do.

    Checks, in order: some variant reaches ``min_accuracy``; some of those has a positive
    capacity (the SLO is not below a lone request's latency everywhere); the replica
    limits allow ``rate_rps``. An option with capacity 0 (a flavor too small for the SLO)
    is left out while another fits: :func:`unfit_options` lists them.
    """
    if rate_rps < 0 or not math.isfinite(rate_rps):
        raise ValueError(f"rate must be a finite number >= 0, got {rate_rps}")
    for o in options:
        if o.capacity_rps < 0 or o.price_per_hour < 0 or o.max_replicas < 0:
            raise ValueError(f"option {o.model}/{o.flavor}: negative capacity, price or limit")
    if not options:
        raise InfeasibleError("no replica options: the service has no model variant or flavor")
    accurate = [o for o in options if o.accuracy >= min_accuracy]
    if not accurate:
        best = max(options, key=lambda o: o.accuracy)
        raise InfeasibleError(
            f"no model variant reaches the minimum accuracy {min_accuracy:g} "
            f"(best: {best.model} at {best.accuracy:g})"
        )
    fast = [o for o in accurate if o.capacity_rps > 0]
    if not fast:
        raise InfeasibleError(
            "the latency SLO is below a lone request's latency for every model variant and "
            f"flavor ({len(accurate)} tried): capacity 0 rps everywhere"
        )
    limits = flavor_limits(options)
    usable = [o for o in fast if limits[o.flavor] > 0]
    best_per_flavor: dict[str, float] = {}
    for o in usable:
        best_per_flavor[o.flavor] = max(best_per_flavor.get(o.flavor, 0.0), o.capacity_rps)
    max_rate = sum(limits[f] * mu for f, mu in best_per_flavor.items())
    if not covers(max_rate, rate_rps):
        raise InfeasibleError(
            f"rate {rate_rps:g} rps exceeds the {max_rate:.6g} rps that the replica limits "
            f"allow (max_replicas per flavor, accuracy >= {min_accuracy:g})"
        )
    return usable


def unfit_options(
    options: Sequence[ReplicaOption], min_accuracy: float = 0.0
) -> list[ReplicaOption]:
    """Accurate enough options whose flavor is too small for the SLO (capacity 0).

    :func:`eligible_options` leaves them out of a plan while another option fits (it is
    an error only when none does); a caller says which, so that a flavor missing from
    the plan is explained rather than silent.
    """
    return [o for o in options if o.accuracy >= min_accuracy and o.capacity_rps <= 0]


def flavor_limits(options: Sequence[ReplicaOption]) -> dict[str, int]:
    """Replica limit of each flavor: the smallest ``max_replicas`` among its options."""
    limits: dict[str, int] = {}
    for o in options:
        limits[o.flavor] = min(limits.get(o.flavor, o.max_replicas), o.max_replicas)
    return limits


def prune_dominated(options: Sequence[ReplicaOption]) -> list[ReplicaOption]:
    """Drop options beaten by another of the same flavor (no dearer, no slower).

    Both share the flavor's limit, so swapping a replica of the dominated option for
    one of the other never costs more, serves less or adds replicas. Between equals the
    more accurate (then the first) stays.
    """
    kept: list[ReplicaOption] = []
    for j, oj in enumerate(options):
        beaten = False
        for i, oi in enumerate(options):
            if i == j or oi.flavor != oj.flavor:
                continue
            if oi.price_per_hour <= oj.price_per_hour and oi.capacity_rps >= oj.capacity_rps:
                strictly = (
                    oi.price_per_hour < oj.price_per_hour or oi.capacity_rps > oj.capacity_rps
                )
                if strictly or (oi.accuracy, -i) > (oj.accuracy, -j):
                    beaten = True
                    break
        if not beaten:
            kept.append(oj)
    return kept


def _tie_key(plan: ServingPlan) -> tuple[float, int, float]:
    return (round(plan.cost_per_hour, 9), plan.replicas, -plan.capacity_rps)


def plan_exact(
    options: Sequence[ReplicaOption], rate_rps: float, min_accuracy: float = 0.0
) -> ServingPlan:
    """Cheapest plan covering ``rate_rps``, by integer programming (scipy ``milp``, HiGHS).

    Among plans of equal cost it takes the one with fewer replicas, then more capacity:
    a second solve, restricted to the optimal cost, breaks the tie. (Folding the
    tie-break into one objective made HiGHS's tail an order of magnitude slower.)

    Parameters
    ----------
    options : sequence of ReplicaOption
        Every (model variant, flavor) a replica can use.
    rate_rps : float
        Request rate to cover (>= 0). Rate 0 gives the empty plan.
    min_accuracy : float
        Variants below this accuracy are not used.

    Raises
    ------
    InfeasibleError
        One line: no accurate enough variant, SLO unattainable, or rate above the limits.
    """
    if rate_rps == 0:
        return ServingPlan(rate_rps=0.0)
    limits = flavor_limits(options)
    usable = prune_dominated(eligible_options(options, rate_rps, min_accuracy))
    price = np.array([o.price_per_hour for o in usable], dtype=float)
    cap = np.array([o.capacity_rps for o in usable], dtype=float)
    # An optimal plan never holds more replicas of one option than cover the rate alone.
    upper = np.array(
        [min(limits[o.flavor], math.ceil(rate_rps / o.capacity_rps)) for o in usable],
        dtype=float,
    )
    bounds = Bounds(np.zeros(len(usable)), upper)
    cover = LinearConstraint((cap / rate_rps)[None, :], lb=1.0, ub=np.inf)
    shared = [f for f in limits if sum(o.flavor == f for o in usable) > 1]
    if shared:
        rows = np.array([[1.0 if o.flavor == f else 0.0 for o in usable] for f in shared])
        cover = LinearConstraint(
            np.vstack([(cap / rate_rps)[None, :], rows]),
            lb=np.concatenate([[1.0], np.full(len(shared), -np.inf)]),
            ub=np.concatenate([[np.inf], [limits[f] for f in shared]]),
        )
    # Tie-break: replicas, minus a capacity term < 0.5 in total (never outweighs a replica).
    tie = 1.0 - 0.5 * cap / (float(cap @ upper) + 1.0)

    best = _solve(usable, limits, price, [cover], bounds, rate_rps)
    budget = LinearConstraint(price[None, :], lb=-np.inf, ub=best.cost_per_hour * (1 + 1e-9))
    try:
        alt = _solve(usable, limits, tie, [cover, budget], bounds, rate_rps)
    except InfeasibleError:  # pragma: no cover - the first optimum satisfies the budget
        return best
    return alt if _tie_key(alt) < _tie_key(best) else best


#: HiGHS settings: proven optimum (no gap), tight feasibility (matches COVER_RTOL), and
#: no primal heuristics or symmetry detection, which cost more than they save at this size.
_HIGHS_OPTIONS: dict[str, Any] = {
    "mip_rel_gap": 0.0,
    "presolve": False,
    "mip_feasibility_tolerance": 1e-9,
    "primal_feasibility_tolerance": 1e-9,
    "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rins": False,
    "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False,
    "mip_heuristic_run_zi_round": False,
    "mip_heuristic_run_shifting": False,
    "mip_heuristic_run_feasibility_jump": False,
    "mip_detect_symmetry": False,
}


def _solve(
    options: Sequence[ReplicaOption],
    limits: dict[str, int],
    objective: np.ndarray,
    constraints: list[LinearConstraint],
    bounds: Bounds,
    rate_rps: float,
) -> ServingPlan:
    with warnings.catch_warnings():
        # scipy warns that options beyond its documented few go to HiGHS verbatim.
        warnings.filterwarnings("ignore", message="Unrecognized options", category=RuntimeWarning)
        res = milp(
            objective,
            constraints=constraints,
            integrality=np.ones(len(options)),
            bounds=bounds,
            options=dict(_HIGHS_OPTIONS),
        )
    if res.x is None:
        raise InfeasibleError(f"rate {rate_rps:g} rps cannot be covered: {res.message}")
    return _repair(options, np.round(res.x), rate_rps, limits)


def _repair(
    options: Sequence[ReplicaOption], counts: np.ndarray, rate_rps: float, limits: dict[str, int]
) -> ServingPlan:
    """Plan of the rounded solver counts; adds the cheapest replica if rounding undershot."""
    counts = np.maximum(counts, 0).astype(int)
    plan = make_plan(options, counts, rate_rps)
    while not covers(plan.capacity_rps, rate_rps):  # pragma: no cover - solver tolerance only
        used = _used(options, counts)
        spare = [i for i, o in enumerate(options) if used[o.flavor] < limits[o.flavor]]
        i = min(spare, key=lambda j: options[j].price_per_hour / options[j].capacity_rps)
        counts[i] += 1
        plan = make_plan(options, counts, rate_rps)
    return plan


def plan_heuristic(
    options: Sequence[ReplicaOption], rate_rps: float, min_accuracy: float = 0.0
) -> ServingPlan:
    """Barista's greedy plan: fill with the most cost-effective option, cover the rest cheaply.

    Options are taken in order of price per request/s (ties: larger capacity). Each takes
    as many whole replicas as fit under the remaining rate and its limit; an option at
    its limit passes the remainder to the next. Once less than one replica of the
    current option is left, the cheapest single option that covers that remainder alone
    (``ceil`` replicas within its limit) finishes the plan. Where shared flavor limits
    stop the fill short, the last filled replicas are freed until one option covers the
    rest (the exact plan if none can). Feasible whenever :func:`plan_exact` is; never
    cheaper.

    Raises
    ------
    InfeasibleError
        Same one-line reasons as :func:`plan_exact`.
    """
    if rate_rps == 0:
        return ServingPlan(rate_rps=0.0)
    usable = eligible_options(options, rate_rps, min_accuracy)
    limits = flavor_limits(options)
    order = sorted(
        range(len(usable)),
        key=lambda i: (usable[i].price_per_hour / usable[i].capacity_rps, -usable[i].capacity_rps),
    )
    counts = [0] * len(usable)
    remaining = rate_rps
    for i in order:
        opt = usable[i]
        spare = limits[opt.flavor] - _used(usable, counts)[opt.flavor]
        whole = min(math.floor(remaining / opt.capacity_rps), spare)
        counts[i] += whole
        remaining -= whole * opt.capacity_rps
        if covers(rate_rps - remaining, rate_rps):
            break
        if whole < spare:
            # Less than one replica of this option is left to cover: the cheapest option
            # covering it alone (this one, at worst) finishes the plan.
            cover = _cheapest_cover(usable, limits, counts, remaining)
            assert cover is not None  # option i has a spare replica that covers it
            j, k = cover
            counts[j] += k
            break
    plan = make_plan(usable, counts, rate_rps)
    if covers(plan.capacity_rps, rate_rps):
        return plan
    # Variants of one flavor share its replica limit, so the fill can exhaust a flavor
    # before the rate is covered (found by the brute-force property test: two free
    # 0.5 rps replicas took both slots, 0.25 rps left). Free the last filled replicas
    # one at a time until one option covers the rest alone; if no single option can,
    # the exact planner decides.
    for i in reversed(order):
        while counts[i] > 0:
            counts[i] -= 1
            remaining += usable[i].capacity_rps
            cover = _cheapest_cover(usable, limits, counts, remaining)
            if cover is not None:
                counts[cover[0]] += cover[1]
                return make_plan(usable, counts, rate_rps)
    return plan_exact(options, rate_rps, min_accuracy)


def _used(options: Sequence[ReplicaOption], counts: Sequence[int] | np.ndarray) -> dict[str, int]:
    used = {o.flavor: 0 for o in options}
    for o, n in zip(options, counts, strict=True):
        used[o.flavor] += int(n)
    return used


def _cheapest_cover(
    options: Sequence[ReplicaOption],
    limits: dict[str, int],
    counts: Sequence[int],
    remaining: float,
) -> tuple[int, int] | None:
    """(option index, replicas) covering ``remaining`` alone at least cost, within limits."""
    used = _used(options, counts)
    best: tuple[tuple[float, int, float], int, int] | None = None
    for j, o in enumerate(options):
        spare = limits[o.flavor] - used[o.flavor]
        k = max(1, math.ceil(remaining * (1.0 - COVER_RTOL) / o.capacity_rps))
        if k > spare:
            continue
        key = (k * o.price_per_hour, k, -k * o.capacity_rps)
        if best is None or key < best[0]:
            best = (key, j, k)
    return None if best is None else (best[1], best[2])


def plan_bruteforce(
    options: Sequence[ReplicaOption],
    rate_rps: float,
    min_accuracy: float = 0.0,
    max_combinations: int = 2_000_000,
) -> ServingPlan:
    """Optimal plan by enumerating every count vector (small instances only).

    Same objective and tie-break as :func:`plan_exact`; a reference for tests and the
    ``bench plan`` harness. Raises ``ValueError`` above ``max_combinations`` vectors.
    """
    if rate_rps == 0:
        return ServingPlan(rate_rps=0.0)
    usable = eligible_options(options, rate_rps, min_accuracy)
    limits = flavor_limits(options)
    size = math.prod(limits[o.flavor] + 1 for o in usable)
    if size > max_combinations:
        raise ValueError(f"{size} count vectors to enumerate, above {max_combinations}")
    cap = np.array([o.capacity_rps for o in usable])
    price = np.array([o.price_per_hour for o in usable])
    grid = np.indices([limits[o.flavor] + 1 for o in usable]).reshape(len(usable), -1).T
    ok = grid @ cap >= rate_rps * (1.0 - COVER_RTOL)
    for f, limit in limits.items():
        in_f = np.array([o.flavor == f for o in usable])
        ok &= grid[:, in_f].sum(axis=1) <= limit
    feasible = grid[ok]
    costs = np.round(feasible @ price, 9)  # equal costs tie despite float rounding
    order = np.lexsort((-(feasible @ cap), feasible.sum(axis=1), costs))
    return make_plan(usable, feasible[order[0]], rate_rps)


PLANNERS: dict[str, Planner] = {"exact": plan_exact, "heuristic": plan_heuristic}


def replica_options(
    service: ServiceSpec,
    catalog: FlavorCatalog,
    capacity: Mapping[tuple[str, str], float],
) -> list[ReplicaOption]:
    """One :class:`ReplicaOption` per (service variant, flavor), with measured capacities.

    Parameters
    ----------
    service, catalog
        The service's variants (model, accuracy) and the flavors (price, limit, CPUs).
    capacity : mapping
        Capacity (rps) of one replica of each ``(model, flavor)`` under the service's SLO.

    Raises
    ------
    KeyError
        If a (model, flavor) pair has no capacity.
    """
    return [
        ReplicaOption(
            model=v.model,
            flavor=f.name,
            accuracy=v.accuracy,
            capacity_rps=float(capacity[(v.model, f.name)]),
            price_per_hour=f.price_per_hour,
            max_replicas=f.max_replicas,
            cpus=f.cpus,
        )
        for v in service.variants
        for f in catalog.flavors
    ]


# --------------------------------------------------------------------------- rate from a forecast


@dataclass(frozen=True)
class ForecastRate:
    """The rate to provision for over a forecast horizon, and why.

    Attributes
    ----------
    rate_rps : float
        The peak of the forecast's upper bound, in requests/s: what the plan must cover.
    step : int
        Horizon step (0-based) at which that upper bound peaks.
    upper_peak, mean_peak : float
        Peak of the upper bound and of the point forecast (trace units).
    level : int
        Central interval level in percent; its upper bound is the (50 + level/2)% quantile.
    method : str
        The forecaster that produced it (for ``auto``, the one it chose).
    rps_per_unit : float
        Requests/s per trace unit.
    horizon : int
        Steps forecast.
    """

    rate_rps: float
    step: int
    upper_peak: float
    mean_peak: float
    level: int
    method: str
    rps_per_unit: float
    horizon: int

    @property
    def mean_peak_rps(self) -> float:
        return self.mean_peak * self.rps_per_unit

    def reason(self) -> str:
        """One line: which rate and why."""
        return (
            f"planning for {self.rate_rps:.3g} rps: the peak of the {self.level}% upper bound "
            f"of the {self.method} forecast over the next {self.horizon} steps (step "
            f"{self.step + 1}; the point forecast peaks at {self.mean_peak_rps:.3g} rps)"
        )


def forecast_rate(
    history: Sequence[float] | np.ndarray,
    season_lengths: Sequence[int],
    horizon: int,
    *,
    rps_per_unit: float = 1.0,
    level: int = 90,
    method: str = "auto",
    seed: int = 0,
) -> ForecastRate:
    """Forecast the next ``horizon`` steps of a load trace and take the rate to plan for.

    The rate is the largest value of the ``level``% upper bound over the horizon (a
    replica count must cover the busiest step, and the upper bound guards against an
    under-forecast), converted to requests/s by ``rps_per_unit``.

    Parameters
    ----------
    history : array-like
        The trace so far, one value per step (e.g. requests per hour).
    season_lengths : sequence of int
        Seasons in steps, for :func:`edgewise.forecast.make_forecaster`.
    horizon : int
        Steps ahead to cover (at least the replica start-up time).
    rps_per_unit : float
        Requests/s that one trace unit stands for (``1 / step_seconds`` for counts per step).
    level : int
        Interval level in percent (90: plan for the 95% upper quantile).
    method : str
        Forecaster name (default ``'auto'``: chosen by rolling-origin validation).
    seed : int
        Seed of the forecaster's error compensation.
    """
    from edgewise.forecast import make_forecaster

    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if not rps_per_unit > 0:
        raise ValueError(f"rps_per_unit must be positive, got {rps_per_unit}")
    y = np.asarray(history, dtype=float)
    model = make_forecaster(method, season_lengths, horizon=horizon, seed=seed)
    res = model.fit(y).predict(horizon, (level,))
    upper = np.maximum(res.upper[level], 0.0)
    step = int(np.argmax(upper))
    return ForecastRate(
        rate_rps=float(upper[step]) * rps_per_unit,
        step=step,
        upper_peak=float(upper[step]),
        mean_peak=float(np.max(res.mean)),
        level=int(level),
        method=res.method or method,
        rps_per_unit=float(rps_per_unit),
        horizon=int(horizon),
    )
