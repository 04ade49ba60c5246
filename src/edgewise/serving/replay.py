"""Trace replay: a compressed segment of a workload trace against the live system.

``select_segment`` (pure) cuts the segment and the history before it out of a trace and
scales it to a peak rate; ``replay_live`` (effects) starts a deployment, runs the live
controller with a policy in one thread and the open-loop load generator in its own
process, and returns attainment, cost in trace time, scale actions and the time series
for the plot. ``replay_simulated`` runs the same segment through the simulator with the
same policy, flavors, model variants and starting pool, so the two can be compared
decision by decision (each keeps the decisions it executed: replicas per flavor and
the variant).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from edgewise.errors import InfeasibleError, TraceError
from edgewise.serving.controller import ReplicaStep
from edgewise.serving.loadgen import LoadResult
from edgewise.serving.policies import (
    FlavorOption,
    ModelVariant,
    Policy,
    VariantPolicy,
    make_policy,
)
from edgewise.serving.policies.base import at_speedup

if TYPE_CHECKING:
    from edgewise.sim.serving import SimConfig


@dataclass(frozen=True)
class Segment:
    """A trace segment scaled to request rates, with the bins before it."""

    rates_rps: np.ndarray  # mean rate of each trace bin of the segment
    history_rps: np.ndarray  # mean rate of the bins before it (for forecasting)
    bin_s: float  # trace seconds per bin
    speedup: float  # trace seconds per wall second
    start: pd.Timestamp

    @property
    def wall_bin_s(self) -> float:
        return self.bin_s / self.speedup

    @property
    def duration_s(self) -> float:
        return self.rates_rps.size * self.wall_bin_s

    def sim_config(
        self, slo_ms: float, slo_percentile: float, startup_s: float, seed: int
    ) -> SimConfig:
        """The simulator's setting for this segment replayed in wall time."""
        from edgewise.sim.serving import SimConfig

        return SimConfig(
            slo_ms=slo_ms,
            slo_percentile=slo_percentile,
            startup_s=round(startup_s),
            seed=seed,
            history_bin_s=self.wall_bin_s,
            time_scale=self.speedup,
        )

    def per_second(self) -> np.ndarray:
        """The rate of every wall-clock second of the replay."""
        n = math.ceil(self.duration_s)
        idx = np.minimum((np.arange(n) / self.wall_bin_s).astype(int), self.rates_rps.size - 1)
        return self.rates_rps[idx]


def select_segment(
    series: pd.Series,
    start: str | pd.Timestamp | None,
    hours: float,
    speedup: float,
    peak_rps: float,
    history_bins: int = 24 * 7 * 5,
) -> Segment:
    """Cut ``hours`` of ``series`` from ``start`` and scale its peak to ``peak_rps``.

    The scaling factor is set on the segment alone so that its busiest bin asks for
    exactly ``peak_rps``; the history gets the same factor.
    """
    from edgewise.workloads.traces import bin_seconds

    if not speedup > 0:
        raise TraceError(f"speedup must be positive, got {speedup}")
    if not hours > 0:
        raise TraceError(f"hours must be positive, got {hours}")
    bin_s = bin_seconds(series)
    n = max(1, round(hours * 3600.0 / bin_s))
    if start is None:
        i0 = len(series) - n
    else:
        ts = pd.Timestamp(start)
        i0 = int(series.index.searchsorted(ts))
        if i0 >= len(series) or abs((series.index[i0] - ts).total_seconds()) >= bin_s:
            raise TraceError(
                f"start {ts} is outside the trace ({series.index[0]} to {series.index[-1]})",
            )
    if i0 < 0 or i0 + n > len(series):
        raise TraceError(
            f"{hours:g} h from {series.index[max(i0, 0)]} run past the end of the trace "
            f"({series.index[-1]})",
        )
    seg = series.to_numpy(dtype=float)[i0 : i0 + n] / bin_s
    hist = series.to_numpy(dtype=float)[max(0, i0 - history_bins) : i0] / bin_s
    peak = float(seg.max())
    if not peak > 0:
        raise TraceError(f"the segment from {series.index[i0]} has no requests")
    factor = peak_rps / peak
    return Segment(seg * factor, hist * factor, bin_s, speedup, series.index[i0])


@dataclass(frozen=True)
class LoadSeries:
    """Offered rate, served rate (HTTP 200) and p99 latency of each wall second of a load."""

    offered_rps: list[float]
    served_rps: list[float]
    p99_ms: list[float]  # NaN: no request that second; inf: one was not served


@dataclass(frozen=True)
class ReplaySeries:
    """Per wall second of a live replay: the load, the replicas and the trace's rate."""

    offered_rps: list[float]
    served_rps: list[float]
    p99_ms: list[float]
    replicas: list[float]
    cpus: list[float]
    true_rps: list[float]

    def as_dict(self) -> dict[str, list[float]]:
        """One list per series, with the second ``t`` first (as the report stores them)."""
        return {
            "t": [float(t) for t in range(len(self.replicas))],
            "offered_rps": self.offered_rps,
            "served_rps": self.served_rps,
            "p99_ms": self.p99_ms,
            "replicas": self.replicas,
            "cpus": self.cpus,
            "true_rps": self.true_rps,
        }


@dataclass
class ReplayResult:
    """Outcome of one replay with one policy."""

    policy: str
    slo_attainment: float
    cost: float
    scale_actions: int
    vertical_actions: int
    requests: int
    rejected: int
    failed: int
    p50_ms: float
    p99_ms: float
    wall_s: float
    series: ReplaySeries
    load: LoadResult | None = None  # the load generator's per-request records (live runs)
    executed: list[dict[str, Any]] | None = None  # decisions as executed (per flavor, variant)
    variant_switches: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no series)."""
        return {
            "slo_attainment": self.slo_attainment,
            "cost": self.cost,
            "scale_actions": self.scale_actions,
            "vertical_actions": self.vertical_actions,
            "requests": self.requests,
            "rejected_503": self.rejected,
            "failed": self.failed,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "wall_s": self.wall_s,
        }


def per_second_series(
    scheduled_s: np.ndarray,
    latency_ms: np.ndarray,
    status: np.ndarray,
    seconds: int,
) -> LoadSeries:
    """Offered rate, served rate and p99 latency of each wall second of a load run."""
    sec = np.clip(scheduled_s.astype(int), 0, max(0, seconds - 1))
    offered = np.bincount(sec, minlength=seconds).astype(float)
    ok = status == 200
    served = np.bincount(sec[ok], minlength=seconds).astype(float)
    p99 = np.full(seconds, np.nan)
    order = np.argsort(sec, kind="stable")
    bounds = np.searchsorted(sec[order], np.arange(seconds + 1))
    lat = np.where(ok, latency_ms, np.inf)[order]
    for s in range(seconds):
        chunk = lat[bounds[s] : bounds[s + 1]]
        if chunk.size:
            p99[s] = float(np.percentile(chunk, 99)) if np.isfinite(chunk).all() else math.inf
    return LoadSeries(offered.tolist(), served.tolist(), p99.tolist())


def replay_live(
    segment: Segment,
    policy_name: str,
    runtime: Any,
    flavor: FlavorOption | Sequence[FlavorOption],
    *,
    variants: Sequence[ModelVariant] = (),
    min_accuracy: float = 0.0,
    initial: dict[str, int] | None = None,
    slo_ms: float,
    slo_percentile: float = 99.0,
    body: bytes,
    content_type: str = "application/octet-stream",
    startup_s: float = 5.0,
    seed: int = 0,
    kb: Any = None,
    run_key: str | None = None,
    policy_params: dict[str, Any] | None = None,
    initial_replicas: int | None = None,
    timeout_s: float = 10.0,
    trace_time: bool = False,
) -> ReplayResult:
    """Replay ``segment`` against a started ``runtime`` driven by ``policy_name``.

    ``flavor`` is one flavor, or several that the policy mixes (the runtime then runs a
    pool, :meth:`edgewise.serving.runtime.ServingRuntime.set_pool`); with ``variants``
    the policy also picks the model variant (the runtime serves the first eligible one
    at the start). ``initial`` sets the starting replicas per flavor. ``trace_time``:
    the policy's durations in trace time (:func:`replay_policy_for`).
    """
    from edgewise.serving.controller import LiveController
    from edgewise.stats import poisson_arrivals

    flavors = (flavor,) if isinstance(flavor, FlavorOption) else tuple(flavor)
    flavor = flavors[0]
    policy = replay_policy_for(
        policy_name, segment, flavors, variants, min_accuracy, policy_params, trace_time=trace_time
    )
    first_variant = policy.eligible[0].ref if isinstance(policy, VariantPolicy) else None
    per_s = segment.per_second()
    arrivals = poisson_arrivals(per_s, 1.0, seed)
    # A fresh key per replay; pass ``run_key`` of a killed replay to resume its controller.
    key = run_key or f"replay-{policy_name}-{segment.start:%Y%m%dT%H}-{seed}-{time.time_ns()}"
    lam = per_s

    def future_rate(t0: float, t1: float) -> float:
        a, b = max(0, int(t0)), min(lam.size, math.ceil(t1) + 1)
        return float(lam[a:b].max()) if b > a else 0.0

    ctl = LiveController(
        runtime,
        policy,
        flavors,
        variant=first_variant,
        slo_ms=slo_ms,
        slo_percentile=slo_percentile,
        startup_s=startup_s,
        history_bin_s=segment.wall_bin_s,
        history=segment.history_rps.tolist(),
        kb=kb,
        run_key=key,
        time_scale=segment.speedup,
        future_rate=future_rate,
    )
    if not flavor.capacity_rps > 0:
        raise InfeasibleError(
            f"flavor {flavor.name} serves no traffic within the {slo_ms:g} ms SLO (capacity 0)"
        )
    first = initial_replicas
    if first is None:
        first = max(1, math.ceil(per_s[: max(1, int(startup_s))].max() / flavor.capacity_rps))
    if initial is not None:
        ctl.start_pool(initial)
    else:
        ctl.start(min(first, flavor.max_replicas))
    runtime.wait_for_replicas(ctl.target, timeout_s=180)
    ctl.align_clock()  # the policy's time starts with the load, as in the simulator
    t0 = time.monotonic()
    res, load = _drive(ctl, runtime, segment.duration_s, arrivals, body, content_type, timeout_s)
    wall = time.monotonic() - t0
    steps = res.replicas_series or [ReplicaStep(0.0, first, flavor.cpus)]
    series = _replay_series(load, steps, per_s, math.ceil(segment.duration_s))
    ok = load.status == 200
    return ReplayResult(
        policy=policy_name,
        slo_attainment=load.attainment(slo_ms),
        cost=res.cost,
        scale_actions=res.scale_actions,
        vertical_actions=res.vertical_actions,
        requests=load.n,
        rejected=int((load.status == 503).sum()),
        failed=int((load.status == 0).sum()),
        p50_ms=load.percentile(50) if ok.any() else math.nan,
        p99_ms=load.percentile(99) if ok.any() else math.nan,
        wall_s=wall,
        series=series,
        load=load,
        executed=res.executed,
        variant_switches=res.variant_switches,
    )


def _drive(
    ctl: Any,
    runtime: Any,
    duration_s: float,
    arrivals: np.ndarray,
    body: bytes,
    content_type: str,
    timeout_s: float,
) -> tuple[Any, LoadResult]:
    """Run the controller in its own thread while the load generator sends ``arrivals``."""
    from edgewise.serving.loadgen import run_load

    stop = threading.Event()
    holder: dict[str, Any] = {}

    def drive() -> None:
        try:
            holder["result"] = ctl.run(duration_s + timeout_s, stop)
        except BaseException as err:
            holder["error"] = err

    thread = threading.Thread(target=drive, name="edgewise-controller", daemon=True)
    thread.start()
    try:
        load = run_load(runtime.url + "/predict", arrivals, body, content_type, timeout_s=timeout_s)
    finally:
        stop.set()
        thread.join(timeout=30)
    if "error" in holder:
        raise holder["error"]
    return holder["result"], load


def replay_policy_for(
    name: str,
    segment: Segment,
    flavors: Sequence[FlavorOption],
    variants: Sequence[ModelVariant] = (),
    min_accuracy: float = 0.0,
    given: dict[str, Any] | None = None,
    *,
    trace_time: bool = False,
) -> Policy:
    """The policy a replay runs, live or simulated: ``name``, on the variants if any.

    With ``trace_time`` its durations are kept in trace time
    (:func:`~edgewise.serving.policies.base.at_speedup`), as a one-flavor replay runs
    them; a pool replay keeps the policy's own durations (at a 5 s period its live
    decisions drifted from the simulated ones by timing: 5 to 8 of 8 in step).
    """
    policy = make_policy(name, **_policy_params(name, segment, flavors[0], given))
    if variants:
        policy = VariantPolicy(policy, tuple(variants), min_accuracy=min_accuracy)
    return at_speedup(policy, segment.speedup) if trace_time else policy


def replay_simulated(
    segment: Segment,
    policy_name: str,
    flavors: Sequence[Any],
    *,
    slo_ms: float,
    slo_percentile: float = 99.0,
    startup_s: float = 5.0,
    seed: int = 0,
    initial: dict[str, int] | None = None,
    variants: Sequence[tuple[ModelVariant, Sequence[Any]]] = (),
    min_accuracy: float = 0.0,
    policy_params: dict[str, Any] | None = None,
) -> Any:
    """Simulate ``segment`` as :func:`replay_live` replays it, keeping every decision.

    Parameters
    ----------
    segment : Segment
        The compressed trace segment; simulated in wall seconds.
    policy_name : str
        The policy (the same parameters as live).
    flavors : sequence of SimFlavor
        The flavors with their true service times (those of the first variant served).
    slo_ms, slo_percentile, startup_s, seed
        The SLO, the replicas' start-up (whole seconds) and the seed of the arrivals.
    initial : dict, optional
        Starting replicas per flavor (default: one of the first flavor).
    variants : sequence of (ModelVariant, sequence of SimFlavor)
        The model variants the policy picks from, each with its simulated flavors.
    min_accuracy : float
        Variants below it are never served.
    policy_params : dict, optional
        The policy's parameters.

    Returns
    -------
    SimResult
        With ``executed`` (the decisions) and ``variant_switches``; its cost is in wall
        time (multiply by ``segment.speedup`` for trace time).
    """
    from edgewise.sim.serving import simulate

    options = tuple(f.option for f in flavors)
    policy = replay_policy_for(
        policy_name, segment, options, [v for v, _ in variants], min_accuracy, policy_params
    )
    first_variant = policy.eligible[0].ref if isinstance(policy, VariantPolicy) else None
    per_variant = {v.ref: tuple(fl) for v, fl in variants}
    return simulate(
        policy,
        segment.per_second(),
        per_variant.get(first_variant or "", tuple(flavors)),
        segment.sim_config(slo_ms, slo_percentile, startup_s, seed),
        history=segment.history_rps.tolist(),
        initial=initial or {options[0].name: 1},
        series=False,
        variants=per_variant or None,
        variant=first_variant,
        record_decisions=True,
    )


def _replay_series(
    load: LoadResult, steps: Sequence[ReplicaStep], per_s: np.ndarray, seconds: int
) -> ReplaySeries:
    """Per wall second: the load's rates and p99, the replica steps, the trace's rate."""
    served = per_second_series(load.scheduled_s, load.latency_ms, load.status, seconds)
    t_rep = np.arange(seconds, dtype=float)
    times = np.array([s.t for s in steps])
    idx = np.clip(np.searchsorted(times, t_rep, side="right") - 1, 0, len(steps) - 1)
    return ReplaySeries(
        offered_rps=served.offered_rps,
        served_rps=served.served_rps,
        p99_ms=served.p99_ms,
        replicas=[float(steps[i].replicas) for i in idx],
        cpus=[float(steps[i].cpus) for i in idx],
        true_rps=per_s.tolist(),
    )


def _policy_params(
    name: str,
    segment: Segment,
    flavor: FlavorOption,
    given: dict[str, Any] | None,
) -> dict[str, Any]:
    params = dict(given or {})
    if name == "static" and "peak_rps" not in params:
        params["peak_rps"] = float(segment.rates_rps.max())
    return params


def plot_replay(results: list[ReplayResult], slo_ms: float, path: str | Path) -> Path:
    """One figure per policy stacked: rate, replicas and CPUs, p99 latency vs the SLO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        3,
        len(results),
        figsize=(5.5 * len(results), 8),
        squeeze=False,
        sharex="col",
    )
    for j, r in enumerate(results):
        s = r.series
        t = np.arange(len(s.offered_rps))
        ax = axes[0][j]
        ax.plot(t, s.true_rps[: len(t)], label="trace rate", color="0.5")
        ax.plot(t, s.offered_rps, label="offered", lw=0.6)
        ax.plot(t, s.served_rps, label="served within any latency", lw=0.6)
        ax.set_title(f"{r.policy}: attainment {100 * r.slo_attainment:.2f}%, cost {r.cost:.3f}")
        ax.set_ylabel("requests/s")
        ax.legend(fontsize=7)
        ax = axes[1][j]
        ax.step(t, s.replicas, where="post", label="replicas")
        ax.step(t, np.array(s.replicas) * np.array(s.cpus), where="post", label="total CPUs")
        ax.set_ylabel("replicas / CPUs")
        ax.legend(fontsize=7)
        ax = axes[2][j]
        p99 = np.array(s.p99_ms, dtype=float)
        ax.plot(t, np.where(np.isfinite(p99), p99, np.nan), lw=0.7, label="p99 per second")
        ax.axhline(slo_ms, color="red", ls="--", label="SLO")
        ax.set_yscale("log")
        ax.set_ylabel("latency ms")
        ax.set_xlabel("wall seconds")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def replay_policy(
    segment: Segment,
    policy_name: str,
    model: str,
    flavor: Any,
    option: FlavorOption,
    *,
    slo_ms: float,
    percentile: float,
    seed: int,
    kb: Any,
    port: int,
    inputs: dict[str, Any],
    startup_s: float = 5.0,
    neighbour: Any = None,
    ingress: str = "proxy",
) -> ReplayResult:
    """Start a deployment, replay ``segment`` with ``policy_name``, store the result.

    ``neighbour`` is a context manager (e.g. a stress mix) kept running for the replay.
    """
    import contextlib

    from edgewise.serving.live import sample_body, store_replay
    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

    body, ctype = sample_body(model, seed)
    cfg = RuntimeConfig(
        model=model,
        app=f"replay-{policy_name}",
        cpus_per_replica=flavor.cpus,
        initial_replicas=1,
        max_replicas=option.max_replicas,
        port=port,
        ingress=ingress,
    )
    with neighbour or contextlib.nullcontext(), ServingRuntime(cfg) as rt:
        res = replay_live(
            segment,
            policy_name,
            rt,
            option,
            slo_ms=slo_ms,
            slo_percentile=percentile,
            body=body,
            content_type=ctype,
            seed=seed,
            kb=kb,
            startup_s=startup_s,
            trace_time=True,
        )
    store_replay(
        kb,
        "replay",
        {
            "policy": policy_name,
            "model": model,
            "slo_ms": slo_ms,
            "start": str(segment.start),
            "speedup": segment.speedup,
            **inputs,
        },
        res.to_dict(),
        res.series.as_dict(),
        res.cost,
    )
    return res
