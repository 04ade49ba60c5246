"""Serving simulator: the real policy objects on a virtual clock, weeks of trace in seconds.

Time advances on an :class:`edgewise.clock.VirtualClock` in trace seconds. Arrivals are a
non-homogeneous Poisson process of the per-second rates (counts per second, seeded).
Every control period the policy is asked ``decide(ctx)`` with a context built from what
the simulated system shows (arrivals, ongoing requests, CPU use, p99 of the last
minute, hourly rate history) and its decision is applied: new replicas become ready
after the start-up delay, a scale-in removes starting then idle replicas, CPU quotas
change in place at once. Cost comes from :class:`edgewise.serving.cost.CostMeter`,
exactly as in the live system.

Requests are not simulated one by one. Between two changes of the ready pool each flavor
is an M/G/c queue (:mod:`edgewise.sim.queueing`) fed its share of the rate, plus a fluid
backlog that carries overload and cold starts across seconds (traffic splits across
flavors in proportion to their SLO capacity, the planner's assumption) (queued requests wait it
out, the excess beyond ``queue_per_replica`` per replica is rejected with a 503). The
metrics policies see are computed lazily per segment of constant pool; the attainment
(fraction of requests within the SLO; rejected requests and cold-start waits count as
violations) is computed at the end, vectorised over every second.
:mod:`edgewise.sim.events` simulates the same queue request by request for validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from edgewise.clock import VirtualClock
from edgewise.serving.cost import CostMeter, FlavorPrice
from edgewise.serving.policies.base import (
    FlavorOption,
    Policy,
    ScalingContext,
    ScalingDecision,
    WindowMetrics,
)
from edgewise.sim.queueing import (
    ServiceProfile,
    p99_estimate_ms,
    prob_within,
    speed_factor,
    wait_parameters,
)

#: Seconds a lazily computed segment runs ahead of the clock.
_AHEAD_S = 300
#: Most recent seconds of metrics a policy sees.
WINDOW_S = 60
#: Reversal horizon: a scale action opposite to the previous one within this is a reversal.
REVERSAL_S = 300.0


@dataclass(frozen=True)
class SimFlavor:
    """A flavor in the simulator: what the policy sees, and its true service times."""

    option: FlavorOption
    profile: ServiceProfile

    @property
    def name(self) -> str:
        return self.option.name


@dataclass(frozen=True)
class SimConfig:
    """Simulation settings.

    Attributes
    ----------
    slo_ms, slo_percentile : float
        Latency bound and the percentile it applies to (the policy's target).
    startup_s : int
        Seconds from asking for a replica to its readiness.
    queue_per_replica : int
        Queued requests per ready replica beyond which requests are rejected.
    max_speedup : float
        Most a request speeds up with CPUs above its flavor's.
    warmup_s : int
        Leading seconds excluded from attainment, cost and counts.
    seed : int
        Seed of the arrivals.
    check_state : bool
        JSON round-trip every policy state (slower; for tests).
    """

    slo_ms: float = 100.0
    slo_percentile: float = 99.0
    startup_s: int = 60
    queue_per_replica: int = 64
    max_speedup: float = 2.0
    warmup_s: int = 0
    seed: int = 0
    history_bin_s: float = 3600.0
    time_scale: float = 1.0
    check_state: bool = False


@dataclass
class SimResult:
    """Outcome of one simulated run (everything after the warm-up)."""

    policy: str
    slo_attainment: float
    cost: float
    scale_actions: int
    vertical_actions: int
    reversals_5min: int
    requests: float
    rejected: float
    replica_seconds: dict[str, float]
    minutes: dict[str, list[Any]] = field(default_factory=dict)
    decisions: int = 0
    wall_s: float = 0.0  # wall-clock seconds the simulation took (set by the caller)
    cpu_s: float = 0.0  # CPU seconds of this process meanwhile (shared machines: less noisy)

    def to_dict(self, series: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "slo_attainment": self.slo_attainment,
            "cost": self.cost,
            "scale_actions": self.scale_actions,
            "vertical_actions": self.vertical_actions,
            "reversals_5min": self.reversals_5min,
            "requests": self.requests,
            "rejected": self.rejected,
            "replica_hours": {k: v / 3600.0 for k, v in self.replica_seconds.items()},
            "decisions": self.decisions,
            "sim_wall_s": round(self.wall_s, 3),
            "sim_cpu_s": round(self.cpu_s, 3),
        }
        if series:
            out["series_per_minute"] = self.minutes
        return out


class _Pool:
    """Replica bookkeeping: ready counts, start-up events, CPU quotas."""

    def __init__(self, flavors: Sequence[SimFlavor]) -> None:
        self.names = [f.name for f in flavors]
        self.ready = {n: 0 for n in self.names}
        self.cpus = {f.name: f.option.cpus for f in flavors}
        self.events: list[list[Any]] = []  # [ready_at, flavor, count], ready_at ascending
        self.version = 0  # bumped on every change (the simulator caches views per version)

    def starting(self, name: str) -> int:
        return sum(e[2] for e in self.events if e[1] == name)

    def total(self, name: str) -> int:
        return self.ready[name] + self.starting(name)

    def next_event(self) -> float:
        return self.events[0][0] if self.events else float("inf")

    def pop_due(self, t: float) -> bool:
        changed = False
        while self.events and self.events[0][0] <= t:
            _, name, k = self.events.pop(0)
            self.ready[name] += k
            changed = True
        if changed:
            self.version += 1
        return changed

    def cancel_starting(self, name: str, k: int) -> int:
        """Cancel up to ``k`` starting replicas of ``name``, newest first; how many."""
        done = 0
        for e in reversed(self.events):
            if done >= k:
                break
            if e[1] == name:
                take = min(e[2], k - done)
                e[2] -= take
                done += take
        self.events = [e for e in self.events if e[2] > 0]
        return done


def simulate(
    policy: Policy,
    rate_rps: np.ndarray,
    flavors: Sequence[SimFlavor],
    config: SimConfig,
    history: Sequence[float] = (),
    initial: dict[str, int] | None = None,
    future_rate: Callable[[float, float], float] | None = None,
    progress: Callable[[float], None] | None = None,
    series: bool = True,
) -> SimResult:
    """Run ``policy`` over per-second true rates ``rate_rps`` (the first ``warmup_s`` unscored).

    Parameters
    ----------
    policy : Policy
        The policy object (pure ``decide``).
    rate_rps : numpy.ndarray
        True arrival rate of every second.
    flavors : sequence of SimFlavor
        Flavors the policy may use, with their service-time profiles.
    config : SimConfig
        Settings.
    history : sequence of float
        Mean rates of the history bins that end at time 0 (for forecasting).
    initial : dict, optional
        Ready replicas per flavor at time 0 (default: one of the first flavor).
    future_rate : callable, optional
        Passed to the policy's context (the oracle); default: from ``rate_rps``.
    progress : callable, optional
        Called with the fraction done now and then.
    series : bool
        Whether to build the per-minute time series.
    """
    lam = np.maximum(np.asarray(rate_rps, dtype=float), 0.0)
    n_sec = lam.size
    if n_sec == 0:
        raise ValueError("empty rate series")
    rng = np.random.default_rng(config.seed)
    arrivals = rng.poisson(lam).astype(float)
    names = [f.name for f in flavors]
    by_name = {f.name: f for f in flavors}
    options = tuple(f.option for f in flavors)
    mean_s = {f.name: f.profile.mean_ms / 1000.0 for f in flavors}
    clock = VirtualClock(0.0)

    pool = _Pool(flavors)
    for name, k in (initial or {names[0]: 1}).items():
        pool.ready[name] = int(k)
    pool.version += 1

    # Per-second outputs.
    backlog = np.zeros(n_sec + 1)
    rejected = np.zeros(n_sec)
    ongoing = np.zeros(n_sec)
    util = np.zeros(n_sec)
    p99 = np.full(n_sec, np.nan)
    ready_n = {n: np.zeros(n_sec, dtype=np.int32) for n in names}
    cpus_s = {n: np.zeros(n_sec) for n in names}
    computed = 0

    def fill(i0: int, i1: int) -> None:
        """Metrics of seconds [i0, i1) under the current (constant) ready pool."""
        r = {n: pool.ready[n] for n in names}
        fac = {
            n: float(speed_factor(by_name[n].option.cpus, pool.cpus[n], config.max_speedup))
            for n in names
        }
        cap_f = {n: r[n] / (mean_s[n] * fac[n]) for n in names}
        cap = sum(cap_f.values())
        weight = {n: r[n] * _route_weight(by_name[n], fac[n]) for n in names}
        wsum = sum(weight.values())
        total_ready = sum(r.values())
        bound = config.queue_per_replica * max(
            1, total_ready + sum(pool.starting(n) for n in names)
        )
        seg_lam = lam[i0:i1]
        a = arrivals[i0:i1]
        for n in names:
            ready_n[n][i0:i1] = r[n]
            cpus_s[n][i0:i1] = pool.cpus[n]
        b0 = backlog[i0]
        if b0 <= 0 and (seg_lam.size == 0 or seg_lam.max() <= cap):
            backlog[i0 + 1 : i1 + 1] = 0.0
            rejected[i0:i1] = 0.0
        else:
            b = b0
            for k in range(i1 - i0):
                b = b + seg_lam[k] - cap
                over = 0.0
                if b > bound:
                    over = b - bound
                    b = bound
                b = max(0.0, b)
                rejected[i0 + k] = over
                backlog[i0 + k + 1] = b
        bq = backlog[i0:i1]
        if total_ready == 0 or cap <= 0:
            ongoing[i0:i1] = bq + a
            util[i0:i1] = 0.0
            p99[i0:i1] = np.where(a > 0, np.inf, np.nan)
            return
        delay = bq / cap
        occ = bq.copy()
        worst = np.zeros(i1 - i0)
        for n in names:
            if r[n] == 0:
                continue
            share = a * (weight[n] / wsum)
            s_mean = mean_s[n] * fac[n]
            pw, th = wait_parameters(
                share,
                np.full(share.shape, r[n]),
                np.full(share.shape, s_mean),
                by_name[n].profile.cv2,
            )
            rho = np.minimum(share * s_mean / r[n], 0.999)
            lq = pw * rho / (1.0 - rho) * (1.0 + by_name[n].profile.cv2) / 2.0
            occ += share * s_mean + lq
            worst = np.maximum(
                worst,
                p99_estimate_ms(pw, th, np.full(share.shape, fac[n]), by_name[n].profile, delay),
            )
        ongoing[i0:i1] = occ
        util[i0:i1] = np.where(bq > 0, 1.0, np.minimum(1.0, a / cap))
        p99[i0:i1] = np.where(a > 0, worst, np.nan)

    def advance(s: int) -> None:
        nonlocal computed
        s = min(s, n_sec)
        while computed < s:
            pool.pop_due(computed)
            end = int(min(n_sec, max(s, computed + _AHEAD_S), np.ceil(pool.next_event())))
            if end <= computed:
                end = computed + 1
            fill(computed, end)
            computed = end

    # Cost and actions.
    prices = {f.name: FlavorPrice(f.name, f.option.cpus, f.option.price_per_hour) for f in flavors}
    meter = CostMeter(prices, start=float(config.warmup_s))
    for n in names:
        meter.update(0.0, n, pool.ready[n], pool.cpus[n])
    scale_actions = vertical_actions = reversals = decisions = 0
    last_dir = 0
    last_dir_t = -np.inf

    bin_s = config.history_bin_s
    hist: tuple[float, ...] = tuple(float(v) for v in history)
    hist_end = 0.0
    state: dict[str, Any] = {}
    truth = future_rate or _future_from(lam)
    period = float(policy.period_s)
    t = 0.0
    next_progress = 0.0
    # Read-only views: the window slices handed to the policy need no copy or conversion.
    views = []
    for arr in (arrivals, ongoing, util, p99):
        v = arr.view()
        v.flags.writeable = False
        views.append(v)
    arr_ro, ongoing_ro, util_ro, p99_ro = views
    startup_f = float(config.startup_s)
    pool_key = -1
    pool_maps: tuple[Any, Any, Any] = (None, None, None)
    while t < n_sec:
        i = int(t)
        if progress is not None and i >= next_progress:
            progress(i / n_sec)
            next_progress = i + n_sec / 100.0
        clock.advance_to(float(i))
        advance(i)
        due = pool.pop_due(float(i))
        if due and computed > i:
            computed = i
        while hist_end + bin_s <= i:
            lo = int(hist_end)
            hist = (*hist, float(arrivals[lo : lo + int(bin_s)].mean()))
            hist_end += bin_s
        lo = max(0, i - WINDOW_S)
        metrics = WindowMetrics(
            arrival_rps=arr_ro[lo:i],
            ongoing_requests=ongoing_ro[lo:i],
            cpu_utilisation=util_ro[lo:i],
            latency_p99_ms=p99_ro[lo:i],
        )
        # The replica maps only change with the pool: build them once per change.
        if pool.version != pool_key:
            tot = {n: pool.total(n) for n in names}
            pool_maps = (
                MappingProxyType(tot),
                MappingProxyType({n: tot[n] - pool.ready[n] for n in names}),
                MappingProxyType(dict(pool.cpus)),
            )
            pool_key = pool.version
        totals_map, starting_map, cpus_map = pool_maps
        ctx = ScalingContext(
            now=clock.now(),
            period_s=period,
            startup_s=startup_f,
            replicas=totals_map,
            starting=starting_map,
            cpus_per_replica=cpus_map,
            metrics=metrics,
            slo_ms=config.slo_ms,
            slo_percentile=config.slo_percentile,
            flavors=options,
            rate_history=hist,
            history_bin_s=bin_s,
            time_scale=config.time_scale,
            history_end=hist_end,
            policy_state=state,
            future_rate=truth,
        )
        decision, state = policy.decide(ctx)
        decisions += 1
        if config.check_state:
            state = json.loads(json.dumps(state, allow_nan=False))
        same = all(
            decision.replicas.get(n, totals_map[n]) == totals_map[n]
            and abs(decision.cpus_per_replica.get(n, pool.cpus[n]) - pool.cpus[n]) <= 1e-9
            for n in names
        )
        if same:
            t += period
            continue
        before_price = sum(totals_map[n] * by_name[n].option.price_per_hour for n in names)
        changed_pool, horiz, vert = _apply(decision, pool, by_name, i, config.startup_s)
        if changed_pool and computed > i:
            computed = i
        if pool.events and computed > pool.next_event():
            computed = int(pool.next_event())
        scored = i >= config.warmup_s
        if horiz or vert:
            for n in names:
                meter.update(float(i), n, pool.total(n), pool.cpus[n])
        if horiz and scored:
            scale_actions += 1
            # Direction of a horizontal action: more or fewer replicas by price (for a
            # single flavor, by count; a change of mix is up or down by what it costs).
            after_price = sum(pool.total(n) * by_name[n].option.price_per_hour for n in names)
            direction = int(np.sign(round(after_price - before_price, 12)))
            if direction != 0:
                if last_dir != 0 and direction != last_dir and i - last_dir_t < REVERSAL_S:
                    reversals += 1
                last_dir, last_dir_t = direction, float(i)
        if vert and scored:
            vertical_actions += 1
        t += period
    advance(n_sec)
    cost = meter.total(float(n_sec))

    w = config.warmup_s
    ok = _attainment_per_second(
        lam, arrivals, backlog[:-1], rejected, ready_n, cpus_s, flavors, config
    )
    req = arrivals[w:]
    total_req = float(req.sum())
    attain = float((ok[w:] * req).sum() / total_req) if total_req > 0 else 1.0
    rej_req = float(np.sum(np.minimum(req, rejected[w:] / np.maximum(lam[w:], 1e-12) * req)))
    minutes = _minutes(lam, arrivals, ready_n, cpus_s, p99, w) if series else {}
    return SimResult(
        policy=getattr(policy, "name", type(policy).__name__),
        slo_attainment=attain,
        cost=cost,
        scale_actions=scale_actions,
        vertical_actions=vertical_actions,
        reversals_5min=reversals,
        requests=total_req,
        rejected=rej_req,
        replica_seconds=dict(meter.replica_seconds),
        minutes=minutes,
        decisions=decisions,
    )


def _apply(
    decision: ScalingDecision,
    pool: _Pool,
    by_name: dict[str, SimFlavor],
    i: int,
    startup_s: int,
) -> tuple[bool, bool, bool]:
    """Apply a decision at second ``i``: (ready pool changed, horizontal action, vertical)."""
    changed = horiz = vert = False
    pool.version += 1
    for name, f in by_name.items():
        target = int(decision.replicas.get(name, pool.total(name)))
        target = max(0, min(target, f.option.max_replicas))
        have = pool.total(name)
        if target > have:
            horiz = True
            if startup_s <= 0:
                pool.ready[name] += target - have
                changed = True
            else:
                pool.events.append([float(i + startup_s), name, target - have])
        elif target < have:
            horiz = True
            cut = have - target
            cut -= pool.cancel_starting(name, cut)
            if cut > 0:
                pool.ready[name] -= cut
                changed = True
        cpus = float(decision.cpus_per_replica.get(name, pool.cpus[name]))
        cpus = min(max(cpus, 0.05), f.option.max_cpus)
        if abs(cpus - pool.cpus[name]) > 1e-9:
            pool.cpus[name] = cpus
            vert = True
            if pool.ready[name] > 0:
                changed = True
    return changed, horiz, vert


def _route_weight(flavor: SimFlavor, factor: Any) -> Any:
    """Share of traffic per replica: its SLO capacity (speed for a flavor with none)."""
    cap = flavor.option.capacity_rps
    if cap > 0:
        return cap / factor
    return 1000.0 / (flavor.profile.mean_ms * factor)


def _future_from(lam: np.ndarray) -> Callable[[float, float], float]:
    def future(t0: float, t1: float) -> float:
        lo = max(0, int(np.floor(t0)))
        hi = min(lam.size, int(np.ceil(t1)) + 1)
        return float(lam[lo:hi].max()) if hi > lo else 0.0

    return future


def _attainment_per_second(
    lam: np.ndarray,
    arrivals: np.ndarray,
    backlog: np.ndarray,
    rejected: np.ndarray,
    ready_n: dict[str, np.ndarray],
    cpus_s: dict[str, np.ndarray],
    flavors: Sequence[SimFlavor],
    config: SimConfig,
) -> np.ndarray:
    """Fraction of each second's requests served within the SLO (0 for rejected ones)."""
    n = lam.size
    mean_s = {f.name: f.profile.mean_ms / 1000.0 for f in flavors}
    fac = {f.name: speed_factor(f.option.cpus, cpus_s[f.name], config.max_speedup) for f in flavors}
    cap_f = {f.name: ready_n[f.name] / (mean_s[f.name] * fac[f.name]) for f in flavors}
    cap = sum(cap_f.values(), np.zeros(n))
    weight = {f.name: ready_n[f.name] * _route_weight(f, fac[f.name]) for f in flavors}
    wsum = np.maximum(sum(weight.values(), np.zeros(n)), 1e-12)
    delay = np.where(cap > 0, backlog / np.maximum(cap, 1e-12), np.inf)
    x = config.slo_ms / 1000.0 - delay
    ok = np.zeros(n)
    for f in flavors:
        c = ready_n[f.name].astype(float)
        rows = np.nonzero((c > 0) & (x > 0))[0]
        if rows.size == 0:
            continue
        share = lam[rows] * weight[f.name][rows] / wsum[rows]
        s_mean = mean_s[f.name] * fac[f.name][rows]
        pw, th = wait_parameters(share, c[rows], s_mean, f.profile.cv2)
        p = prob_within(x[rows], pw, th, fac[f.name][rows], f.profile)
        ok[rows] += p * (weight[f.name][rows] / wsum[rows])
    kept = 1.0 - np.minimum(1.0, rejected / np.maximum(lam, 1e-12))
    return ok * kept


def _minutes(
    lam: np.ndarray,
    arrivals: np.ndarray,
    ready_n: dict[str, np.ndarray],
    cpus_s: dict[str, np.ndarray],
    p99: np.ndarray,
    start: int,
) -> dict[str, list[Any]]:
    """Per-minute series for plots: rate, ready replicas, mean CPUs per replica, p99.

    ``p99_ms`` is the median over the minute of the per-second p99 estimates.
    """
    m = (lam.size - start) // 60
    if m <= 0:
        return {}
    sl = slice(start, start + 60 * m)

    def per_min(x: np.ndarray) -> np.ndarray:
        return np.asarray(x[sl], dtype=float).reshape(m, 60)

    replicas = sum((per_min(v) for v in ready_n.values()), np.zeros((m, 60)))
    cpu_total = sum((per_min(ready_n[k]) * per_min(cpus_s[k]) for k in ready_n), np.zeros((m, 60)))
    with np.errstate(invalid="ignore", divide="ignore"):
        cpus = np.where(replicas > 0, cpu_total / np.maximum(replicas, 1), 0.0).mean(axis=1)
    p = per_min(p99)
    has = ~np.isnan(p).all(axis=1)
    p99_min = np.full(m, -1.0)
    if has.any():
        p99_min[has] = np.nanmedian(p[has], axis=1)
    p99_list: list[float | None] = [
        round(float(v), 2) if 0 <= v < np.inf else None for v in p99_min
    ]
    return {
        "minute": [float(i) for i in range(m)],
        "rate_rps": per_min(lam).mean(axis=1).round(4).tolist(),
        "arrivals_rps": per_min(arrivals).mean(axis=1).round(4).tolist(),
        "replicas": replicas.mean(axis=1).round(3).tolist(),
        "cpus_per_replica": np.round(cpus, 3).tolist(),
        "p99_ms": p99_list,  # None: no request, or no replica to serve it
    }
