"""Types every autoscaling policy shares: context in, decision and state out.

A policy is pure: ``decide(ctx) -> (decision, state)``. The context is an immutable
snapshot (time, replicas, windowed metrics, SLO, flavor options, rate history and the
previous state); the decision says how many replicas of each flavor to run and how many
CPUs each should get. The caller (the simulator or the live controller) applies the
decision and stores the state, which is plain JSON so that it survives a restart. This
is the shape of Ray Serve's custom autoscaling policy, with vertical scaling added.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias, cast

import numpy as np

_EMPTY = np.zeros(0)
_EMPTY.flags.writeable = False

#: JSON-serialisable policy state (the live controller persists it in the KB).
PolicyState: TypeAlias = dict[str, Any]

#: ``future_rate(t0, t1)``: the largest true arrival rate (rps) over ``[t0, t1]``.
FutureRate: TypeAlias = Callable[[float, float], float]


@dataclass(frozen=True)
class FlavorOption:
    """A replica size the policy may use, with its measured SLO capacity.

    Attributes
    ----------
    name : str
        Flavor name.
    cpus : float
        CPUs of one replica at its nominal size.
    capacity_rps : float
        Largest Poisson arrival rate one replica at nominal size keeps within the SLO.
    price_per_hour : float
        Price of one replica at nominal size (vertical growth is billed pro rata).
    max_replicas : int
        Most replicas of this flavor.
    max_cpus : float
        Largest CPU quota a running replica may be raised to in place (flavor or host
        limit); equal to ``cpus`` when the flavor cannot grow vertically.
    service_ms_mean : float
        Mean service time of one request at nominal size (converts utilisation to rate).
    service_ms_quantiles : tuple of float
        Sorted service-time quantiles (ms) of one request at nominal size, from the
        capacity profile; with them a policy can size the replica *pool* (a shared
        queue, M/G/c) instead of adding per-replica capacities. Empty: unknown.

    """

    name: str
    cpus: float
    capacity_rps: float
    price_per_hour: float
    max_replicas: int
    max_cpus: float = 0.0
    service_ms_mean: float = 0.0
    service_ms_quantiles: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.max_cpus < self.cpus:
            object.__setattr__(self, "max_cpus", self.cpus)
        q = tuple(sorted(float(v) for v in self.service_ms_quantiles))
        object.__setattr__(self, "service_ms_quantiles", q)


def service_quantiles(samples_ms: np.ndarray, n: int = 64) -> tuple[float, ...]:
    """``n`` mid-point quantiles of a service-time sample, for :class:`FlavorOption`."""
    s = np.asarray(samples_ms, dtype=float)
    if s.size == 0:
        return ()
    q = np.quantile(s, (np.arange(n) + 0.5) / n)
    return tuple(float(v) for v in q)


@dataclass(frozen=True)
class WindowMetrics:
    """Per-second observations over the recent window, oldest first.

    Every field is a read-only float array (any sequence given is converted).

    Attributes
    ----------
    arrival_rps : numpy.ndarray
        Requests that arrived in each second.
    ongoing_requests : numpy.ndarray
        Requests in the deployment (queued or in service, including those waiting for
        a replica to start), mean over each second.
    cpu_utilisation : numpy.ndarray
        Mean CPU use of ready replicas over their CPU quota, in [0, 1].
    latency_p99_ms : numpy.ndarray
        Estimated 99th-percentile latency of the requests of each second (nan: none).

    """

    arrival_rps: np.ndarray = field(default_factory=lambda: _EMPTY)
    ongoing_requests: np.ndarray = field(default_factory=lambda: _EMPTY)
    cpu_utilisation: np.ndarray = field(default_factory=lambda: _EMPTY)
    latency_p99_ms: np.ndarray = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        for name in ("arrival_rps", "ongoing_requests", "cpu_utilisation", "latency_p99_ms"):
            value = getattr(self, name)
            if (
                type(value) is np.ndarray
                and value.dtype == np.float64
                and not value.flags.writeable
            ):
                continue  # already a read-only float array (the simulator's fast path)
            arr = np.asarray(value, dtype=float).view()
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    if type(mapping) is MappingProxyType:
        return mapping
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ScalingContext:
    """Everything a policy may look at, as an immutable value.

    Attributes
    ----------
    now : float
        Current time in seconds (trace time in the simulator). The only clock.
    period_s : float
        Control period: the policy is asked again after this long.
    startup_s : float
        Expected start-up time of a new replica.
    replicas : Mapping[str, int]
        Replicas per flavor, ready or starting.
    starting : Mapping[str, int]
        Of those, how many are still starting.
    cpus_per_replica : Mapping[str, float]
        Current CPU quota of each replica of a flavor.
    metrics : WindowMetrics
        Observations of the last seconds.
    slo_ms, slo_percentile : float
        Latency bound and the percentile that must stay under it.
    flavors : tuple of FlavorOption
        Flavors this policy may use, with capacities from the capacity profiles.
    rate_history : tuple of float
        Observed mean arrival rate (rps) of each past history bin, oldest first.
    time_scale : float
        Trace seconds per context second: 1 live in real time and in the simulator, the
        speedup in a compressed replay (a trace day then lasts ``86400 / time_scale``).
    history_bin_s : float
        Length of one history bin.
    history_end : float
        Time at which the last bin of ``rate_history`` ends.
    policy_state : Mapping[str, Any]
        State returned by the previous decision (empty at first).
    future_rate : FutureRate or None
        Clairvoyance for the oracle only: largest true rate over an interval.

    """

    now: float
    period_s: float
    startup_s: float
    replicas: Mapping[str, int]
    starting: Mapping[str, int]
    cpus_per_replica: Mapping[str, float]
    metrics: WindowMetrics
    slo_ms: float
    slo_percentile: float
    flavors: tuple[FlavorOption, ...]
    rate_history: tuple[float, ...] = ()
    history_bin_s: float = 3600.0
    time_scale: float = 1.0
    history_end: float = 0.0
    policy_state: Mapping[str, Any] = field(default_factory=dict)
    future_rate: FutureRate | None = None

    def __post_init__(self) -> None:
        for name in ("replicas", "starting", "cpus_per_replica", "policy_state"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if not self.flavors:
            raise ValueError("a scaling context needs at least one flavor")

    def flavor(self, name: str) -> FlavorOption:
        """The option called ``name``."""
        for f in self.flavors:
            if f.name == name:
                return f
        raise KeyError(name)

    def ready(self, flavor: str) -> int:
        """Ready (serving) replicas of ``flavor``."""
        return max(0, self.replicas.get(flavor, 0) - self.starting.get(flavor, 0))

    @property
    def total_replicas(self) -> int:
        return sum(self.replicas.values())

    @property
    def total_ready(self) -> int:
        return sum(self.ready(f.name) for f in self.flavors)

    def cpus(self, flavor: str) -> float:
        """Current CPUs per replica of ``flavor`` (its nominal size when unset)."""
        return float(self.cpus_per_replica.get(flavor, self.flavor(flavor).cpus))


@dataclass(frozen=True)
class ScalingDecision:
    """Target replicas per flavor and CPUs per replica (vertical), with a reason.

    ``variant`` names the model variant (a model reference) every replica should serve;
    ``None`` keeps the one served (policies that do not choose variants leave it so).
    """

    replicas: Mapping[str, int]
    cpus_per_replica: Mapping[str, float]
    reason: str = ""
    variant: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "replicas", _frozen(self.replicas))
        object.__setattr__(self, "cpus_per_replica", _frozen(self.cpus_per_replica))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "replicas": dict(self.replicas),
            "cpus_per_replica": dict(self.cpus_per_replica),
            "reason": self.reason,
        }
        if self.variant is not None:
            out["variant"] = self.variant
        return out


class Policy(Protocol):
    """An autoscaling policy: pure ``decide`` plus its name and control period.

    ``name`` and ``period_s`` are read-only (policies are frozen dataclasses).
    """

    @property
    def name(self) -> str:
        """The policy's name."""
        ...

    @property
    def period_s(self) -> float:
        """Seconds between two decisions."""
        ...

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        """Decide replicas and CPUs for ``ctx``; return the decision and the new state."""
        ...


# --------------------------------------------------------------------------- helpers

#: The shortest duration a policy works at in a compressed replay: the per-second
#: metrics it reads cannot resolve less.
MIN_DURATION_S = 1.0
#: The shortest control period: a live decision takes effect only after the controller
#: applied it (Ray calls, a knowledge-base write) and the per-second metrics showed it,
#: and live decisions a second apart drift from the simulated ones by their timing alone
#: (a pool replay at 1 s matched 17 of 40; at 15 s, 3 of 3). A hold is no shorter either.
MIN_PERIOD_S = 5.0


def at_speedup(policy: Any, speedup: float) -> Any:
    """``policy`` with its durations kept in trace time on a clock ``speedup`` × faster.

    Every field named ``*_s`` of a policy is a duration on its clock (control period,
    averaging windows, holds, delays). Replayed ``speedup`` times faster, a trace day at
    1440× lasts 60 s: a 60 s window would average the whole day and a 15 s period would
    decide four times in it, so a policy would scale by the day's mean rather than the
    hour's. Divided by ``speedup`` (never below :data:`MIN_DURATION_S`, nor the control
    period below :data:`MIN_PERIOD_S`), each duration spans the trace time it spans live. A zero stays zero (it means "none" or "the
    inner policy's"); a wrapped policy (``inner``) is scaled too. ``speedup <= 1``
    returns ``policy`` unchanged.
    """
    import dataclasses

    if speedup <= 1.0 or isinstance(policy, type) or not dataclasses.is_dataclass(policy):
        return policy
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        if f.name == "inner":
            changes[f.name] = at_speedup(value, speedup)
        elif f.name.endswith("_s") and _is_number(value) and value > 0:
            floor = MIN_PERIOD_S if f.name in ("period_s", "hold_s") else MIN_DURATION_S
            changes[f.name] = max(floor, value / speedup)
    return dataclasses.replace(cast(Any, policy), **changes)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mean_last(values: np.ndarray, seconds: float) -> float:
    """Mean of the last ``seconds`` entries of a per-second series (0 when empty)."""
    tail = values[-max(1, round(seconds)) :]
    return float(np.add.reduce(tail)) / tail.size if tail.size else 0.0


def max_block_mean(values: np.ndarray, block_s: int, seconds: float) -> float:
    """Largest mean over consecutive ``block_s``-second blocks of the last ``seconds``."""
    tail = values[-max(1, round(seconds)) :]
    if not tail.size:
        return 0.0
    full = tail.size - tail.size % block_s
    best = float(tail[tail.size - full :].reshape(-1, block_s).mean(axis=1).max()) if full else 0.0
    if tail.size % block_s:
        best = max(best, float(tail[: tail.size % block_s].mean()))
    return best


def replicas_for_rate(rate_rps: float, capacity_rps: float, max_replicas: int) -> int:
    """Fewest replicas of capacity ``capacity_rps`` covering ``rate_rps`` (capped)."""
    if rate_rps <= 0:
        return 0
    if capacity_rps <= 0:
        return max_replicas
    return min(max_replicas, math.ceil(rate_rps / capacity_rps * (1 - 1e-9)))


def clamp_replicas(n: float, lo: int, hi: int) -> int:
    """``n`` rounded up and clamped to ``[lo, hi]``; never negative."""
    return int(max(0, max(lo, min(hi, math.ceil(n - 1e-9)))))


def check_json_state(state: Mapping[str, Any]) -> PolicyState:
    """Round-trip ``state`` through JSON (raises TypeError if it is not JSON)."""
    return dict(json.loads(json.dumps(dict(state), allow_nan=False)))


def nominal_cpus(ctx: ScalingContext) -> dict[str, float]:
    """Every flavor at its nominal CPU size."""
    return {f.name: f.cpus for f in ctx.flavors}


def primary_flavor(ctx: ScalingContext, name: str | None) -> FlavorOption:
    """The flavor a single-flavor baseline scales: ``name`` or the first offered."""
    return ctx.flavor(name) if name else ctx.flavors[0]


def single_flavor_decision(
    ctx: ScalingContext,
    flavor: FlavorOption,
    replicas: int,
    reason: str,
) -> ScalingDecision:
    """Decision keeping every other flavor at zero and CPUs at nominal size."""
    counts = {f.name: 0 for f in ctx.flavors}
    counts[flavor.name] = max(0, int(replicas))
    return ScalingDecision(replicas=counts, cpus_per_replica=nominal_cpus(ctx), reason=reason)


@dataclass(frozen=True)
class Deployment:
    """The one deployment a single-flavor baseline scales, as a tick finds it.

    Attributes
    ----------
    flavor : FlavorOption
        Its flavor.
    current : int
        Replicas asked for (starting ones included).
    ready : int
        Replicas that serve.
    """

    flavor: FlavorOption
    current: int
    ready: int


class SingleFlavorPolicy(ABC):
    """What the reactive baselines (HPA, KPA, Ray Serve) share: one deployment scaled.

    :meth:`decide` finds the deployment (the ``flavor`` field, or the first offered),
    asks :meth:`recommend` for its replica count, clamps that count to
    ``[min_replicas, max_replicas]`` and keeps every other flavor at zero.
    """

    flavor: str | None
    min_replicas: int

    @abstractmethod
    def recommend(self, ctx: ScalingContext, dep: Deployment) -> tuple[int, str, PolicyState]:
        """Replicas wanted (before clamping), the reason, and the state to keep."""

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        """This tick's decision and the state the next tick is handed."""
        option = primary_flavor(ctx, self.flavor)
        dep = Deployment(option, ctx.replicas.get(option.name, 0), ctx.ready(option.name))
        wanted, reason, state = self.recommend(ctx, dep)
        replicas = clamp_replicas(wanted, self.min_replicas, option.max_replicas)
        return single_flavor_decision(ctx, option, replicas, reason), state
