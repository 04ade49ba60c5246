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
flavors in proportion to their SLO capacity, the planner's assumption) (queued requests
wait it out, the excess beyond ``queue_per_replica`` per replica is rejected with a 503).
The metrics policies see are computed lazily per segment of constant pool
(:mod:`edgewise.sim.fluid`); the attainment (fraction of requests within the SLO;
rejected requests and cold-start waits count as violations) is computed at the end,
vectorised over every second (:mod:`edgewise.sim.scoring`).
:mod:`edgewise.sim.events` simulates the same queue request by request for validation.

A service with several model variants is simulated with each variant's flavors (the same
names, its own service times): a decision naming another variant switches the service
times from that second on (at once: live replicas load the new model beside the served
one within seconds and answer with the old meanwhile), and every second is scored with
the variant that served it. Every decision as executed (replicas per flavor, the
variant) is kept in :attr:`SimResult.executed`, the live controller's form, so a live
replay can be compared with the simulation decision by decision.

The policy decides purely; :class:`_Simulation` is the adapter that builds its context,
applies its decision to the :class:`edgewise.sim.pool.ReplicaPool` and keeps the books.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewise.clock import VirtualClock
from edgewise.serving.cost import CostMeter, FlavorPrice
from edgewise.serving.policies.base import (
    Policy,
    PolicyState,
    ScalingContext,
    ScalingDecision,
    WindowMetrics,
)
from edgewise.sim.fluid import SimState, advance
from edgewise.sim.model import SimConfig, SimFlavor
from edgewise.sim.pool import AppliedDecision, ReplicaPool, price_per_hour
from edgewise.sim.scoring import MinuteSeries, attainment_per_second, minute_series

__all__ = [
    "REVERSAL_S",
    "WINDOW_S",
    "MinuteSeries",
    "SimConfig",
    "SimFlavor",
    "SimResult",
    "simulate",
]

#: Most recent seconds of metrics a policy sees.
WINDOW_S = 60
#: Reversal horizon: a scale action opposite to the previous one within this is a reversal.
REVERSAL_S = 300.0


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
    minutes: MinuteSeries | None = None
    decisions: int = 0
    wall_s: float = 0.0  # wall-clock seconds the simulation took (set by the caller)
    cpu_s: float = 0.0  # CPU seconds of this process meanwhile (shared machines: less noisy)
    executed: list[dict[str, Any]] = field(default_factory=list)
    """Every decision as executed: ``t``, ``replicas`` per flavor, ``variant`` (when asked)."""
    variant_switches: int = 0

    def to_dict(self, series: bool = False) -> dict[str, Any]:
        """JSON-able figures; with ``series``, also ``series_per_minute``."""
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
            out["series_per_minute"] = self.minutes.as_dict() if self.minutes else {}
        return out


@dataclass
class _RateHistory:
    """Mean arrival rates of the closed history bins, as the policy's context holds them."""

    bin_s: float
    rates: tuple[float, ...]
    end: float = 0.0

    def close_bins(self, i: int, arrivals: np.ndarray) -> None:
        """Close every bin that ends by second ``i``."""
        while self.end + self.bin_s <= i:
            lo = int(self.end)
            self.rates = (*self.rates, float(arrivals[lo : lo + int(self.bin_s)].mean()))
            self.end += self.bin_s


@dataclass
class _ActionLog:
    """Scoring of the decisions: actions and reversals after the warm-up."""

    scale_actions: int = 0
    vertical_actions: int = 0
    reversals: int = 0
    decisions: int = 0
    last_dir: int = 0
    last_dir_t: float = field(default=-np.inf)

    def horizontal(self, i: int, before_price: float, after_price: float) -> None:
        """A horizontal action at second ``i``; the direction is up or down by price.

        For a single flavor this is more or fewer replicas; a change of mix is up or down
        by what it costs. An action opposite to the last within :data:`REVERSAL_S` is a
        reversal.
        """
        self.scale_actions += 1
        direction = int(np.sign(round(after_price - before_price, 12)))
        if direction != 0:
            if (
                self.last_dir != 0
                and direction != self.last_dir
                and i - self.last_dir_t < REVERSAL_S
            ):
                self.reversals += 1
            self.last_dir, self.last_dir_t = direction, float(i)


def _read_only(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


def _future_from(lam: np.ndarray) -> Callable[[float, float], float]:
    def future(t0: float, t1: float) -> float:
        lo = max(0, int(np.floor(t0)))
        hi = min(lam.size, int(np.ceil(t1)) + 1)
        return float(lam[lo:hi].max()) if hi > lo else 0.0

    return future


class _Simulation:
    """One run's mutable parts: the pool, the series, the books and the policy's state."""

    def __init__(
        self,
        policy: Policy,
        state: SimState,
        flavors: Sequence[SimFlavor],
        config: SimConfig,
        history: Sequence[float],
        initial: Mapping[str, int],
        future_rate: Callable[[float, float], float],
        variants: Mapping[str, Sequence[SimFlavor]] | None = None,
        variant: str | None = None,
        record: bool = False,
    ) -> None:
        self.policy = policy
        self.state = state
        self.flavors = tuple(flavors)
        self.options = tuple(f.option for f in flavors)
        self.variants = {k: tuple(v) for k, v in (variants or {}).items()}
        self.variant = variant
        # (first second, flavors) of every stretch served by one variant
        self.epochs: list[tuple[int, str | None, tuple[SimFlavor, ...]]] = [
            (0, variant, self.flavors)
        ]
        self.executed: list[dict[str, Any]] = []
        self.record = record
        self.variant_switches = 0
        self.config = config
        self.clock = VirtualClock(0.0)
        self.pool = ReplicaPool.of(flavors, initial)
        self.history = _RateHistory(config.history_bin_s, tuple(float(v) for v in history))
        self.log = _ActionLog()
        self.policy_state: PolicyState = {}
        self.future_rate = future_rate
        prices = {
            f.name: FlavorPrice(f.name, f.option.cpus, f.option.price_per_hour) for f in flavors
        }
        self.meter = CostMeter(prices, start=float(config.warmup_s))
        for n in self.pool.names:
            self.meter.update(0.0, n, self.pool.ready[n], self.pool.cpus[n])
        # Read-only views: the window slices handed to the policy need no copy.
        self.views = tuple(
            _read_only(a) for a in (state.arrivals, state.ongoing, state.util, state.p99)
        )

    def advance(self, s: int) -> None:
        """Compute the series up to second ``s``."""
        advance(self.state, self.pool, self.flavors, self.config, s)

    def context(self, i: int) -> ScalingContext:
        """What the policy sees at second ``i`` (the series are computed up to ``i``)."""
        arrivals, ongoing, util, p99 = self.views
        lo = max(0, i - WINDOW_S)
        maps = self.pool.maps()
        return ScalingContext(
            now=self.clock.now(),
            period_s=float(self.policy.period_s),
            startup_s=float(self.config.startup_s),
            replicas=maps.replicas,
            starting=maps.starting,
            cpus_per_replica=maps.cpus_per_replica,
            metrics=WindowMetrics(
                arrival_rps=arrivals[lo:i],
                ongoing_requests=ongoing[lo:i],
                cpu_utilisation=util[lo:i],
                latency_p99_ms=p99[lo:i],
            ),
            slo_ms=self.config.slo_ms,
            slo_percentile=self.config.slo_percentile,
            flavors=self.options,
            rate_history=self.history.rates,
            history_bin_s=self.history.bin_s,
            time_scale=self.config.time_scale,
            history_end=self.history.end,
            policy_state=self.policy_state,
            future_rate=self.future_rate,
        )

    def _changes_nothing(self, decision: ScalingDecision) -> bool:
        totals, cpus = self.pool.maps().replicas, self.pool.cpus
        return all(
            decision.replicas.get(n, totals[n]) == totals[n]
            and abs(decision.cpus_per_replica.get(n, cpus[n]) - cpus[n]) <= 1e-9
            for n in self.pool.names
        )

    def control(self, i: int) -> None:
        """One control period at second ``i``: observe, decide, apply, keep the books."""
        self.clock.advance_to(float(i))
        self.advance(i)
        if self.pool.pop_due(float(i)):
            self.state.rewind(i)
        self.history.close_bins(i, self.state.arrivals)
        decision, self.policy_state = self.policy.decide(self.context(i))
        self.log.decisions += 1
        if self.config.check_state:
            self.policy_state = json.loads(json.dumps(self.policy_state, allow_nan=False))
        self._switch_variant(i, decision.variant)
        if not self._changes_nothing(decision):
            before = price_per_hour(self.flavors, self.pool.maps().replicas)
            applied = self.pool.apply(decision, self.flavors, i, self.config.startup_s)
            self._after_apply(i, applied, before)
        if self.record:
            self.executed.append(
                {
                    "t": float(i),
                    "replicas": dict(self.pool.maps().replicas),
                    "variant": self.variant,
                }
            )

    def _switch_variant(self, i: int, ref: str | None) -> None:
        """Serve ``ref``'s service times from second ``i`` on (when it is another one)."""
        if ref is None or ref == self.variant or ref not in self.variants:
            return
        self.variant = ref
        self.flavors = self.variants[ref]
        self.options = tuple(f.option for f in self.flavors)
        self.epochs.append((i, ref, self.flavors))
        self.state.rewind(i)
        self.variant_switches += 1

    def _attainment(self) -> np.ndarray:
        """Each second's attainment, scored with the variant that served it."""
        _, first, flavors = self.epochs[0]
        ok = attainment_per_second(self.state, flavors, self.config)
        scored: dict[str | None, np.ndarray] = {first: ok.copy()}
        for start, ref, flavors in self.epochs[1:]:
            if ref not in scored:
                scored[ref] = attainment_per_second(self.state, flavors, self.config)
            ok[start:] = scored[ref][start:]
        return ok

    def _after_apply(self, i: int, applied: AppliedDecision, before_price: float) -> None:
        """Rewind stale series, meter the new pool and count the actions."""
        pool = self.pool
        if applied.ready_changed:
            self.state.rewind(i)
        if pool.startups:
            self.state.rewind(pool.next_event())
        if applied.horizontal or applied.vertical:
            for n in pool.names:
                self.meter.update(float(i), n, pool.total(n), pool.cpus[n])
        if i < self.config.warmup_s:
            return
        if applied.horizontal:
            after_price = price_per_hour(self.flavors, pool.maps().replicas)
            self.log.horizontal(i, before_price, after_price)
        if applied.vertical:
            self.log.vertical_actions += 1

    def result(self, series: bool) -> SimResult:
        """Compute the rest of the series and score the run."""
        state, config = self.state, self.config
        n_sec = state.n_sec
        self.advance(n_sec)
        cost = self.meter.total(float(n_sec))
        w = config.warmup_s
        ok = self._attainment()
        lam, req = state.lam, state.arrivals[w:]
        total_req = float(req.sum())
        attain = float((ok[w:] * req).sum() / total_req) if total_req > 0 else 1.0
        rej_req = float(
            np.sum(np.minimum(req, state.rejected[w:] / np.maximum(lam[w:], 1e-12) * req))
        )
        return SimResult(
            policy=getattr(self.policy, "name", type(self.policy).__name__),
            slo_attainment=attain,
            cost=cost,
            scale_actions=self.log.scale_actions,
            vertical_actions=self.log.vertical_actions,
            reversals_5min=self.log.reversals,
            requests=total_req,
            rejected=rej_req,
            replica_seconds=dict(self.meter.replica_seconds),
            minutes=minute_series(state, w) if series else None,
            decisions=self.log.decisions,
            executed=self.executed,
            variant_switches=self.variant_switches,
        )


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
    variants: Mapping[str, Sequence[SimFlavor]] | None = None,
    variant: str | None = None,
    record_decisions: bool = False,
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
    variants : mapping, optional
        Each model variant's flavors (the names of ``flavors``, its own service times),
        for a policy that decides variants (:class:`edgewise.serving.policies.VariantPolicy`).
    variant : str, optional
        The variant served at time 0 (``flavors`` are its flavors).
    record_decisions : bool
        Keep every executed decision in :attr:`SimResult.executed`.

    Returns
    -------
    SimResult
        Attainment, cost, actions and (with ``series``) the per-minute series.
    """
    lam = np.maximum(np.asarray(rate_rps, dtype=float), 0.0)
    n_sec = lam.size
    if n_sec == 0:
        raise ValueError("empty rate series")
    arrivals = np.random.default_rng(config.seed).poisson(lam).astype(float)
    state = SimState.empty(lam, arrivals, [f.name for f in flavors])
    sim = _Simulation(
        policy,
        state,
        flavors,
        config,
        history,
        initial or {flavors[0].name: 1},
        future_rate or _future_from(lam),
        variants,
        variant,
        record_decisions,
    )
    period = float(policy.period_s)
    t = 0.0
    next_progress = 0.0
    while t < n_sec:
        i = int(t)
        if progress is not None and i >= next_progress:
            progress(i / n_sec)
            next_progress = i + n_sec / 100.0
        sim.control(i)
        t += period
    return sim.result(series)
