"""A fleet served live on this host: every service its own deployment, nodes as CPU sets.

:class:`FleetRuntime` starts one local Ray and one Serve deployment per service of a
fleet spec (route ``/SERVICE``), each a pool whose entries are ``flavor@node``
(:mod:`edgewise.serving.fleet`): a replica runs pinned to its node's CPUs with its
flavor's CPU quota, so replicas sharing a node contend as the planner predicted.
:meth:`FleetRuntime.apply` executes one window of :func:`edgewise.planning.fleet.plan_fleet`
(replicas per entry, the variant served).

:func:`replay_fleet` is the check that the live fleet does what the simulator says: the
last hours of a trace, shifted and scaled per service as ``simulate serving --fleet``
builds them and compressed ``speedup`` times, planned per window at each service's
window peak (the same plans for both), served live with every window's replicas started
ahead of it, and simulated (:func:`edgewise.sim.fleet.simulate_service`) on the same
per-second rates and arrivals. Both plan and simulate with service times probed through
the live HTTP path first (:meth:`FleetRuntime.probe`). It reports each service's SLO
attainment and the node cost, live and simulated. :func:`serve_fleet` runs the fleet on
real traffic, re-planning every window at each service's observed rate (``edgewise
serve --fleet``).

Effects: Ray, the load generators, the knowledge base. Planning and pool mapping are pure.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.api.fleet import (
    FleetSetup,
    InterferenceModelInfo,
    _models,
    _service_rates,
    fleet_setup,
    kb_slowdown,
)
from edgewise.errors import InfeasibleError, SpecError
from edgewise.planning.fleet import FleetPlan, SlowdownFn, grid_rate, plan_fleet
from edgewise.serving.fleet import (
    ServiceLivePool,
    ahead,
    fleet_cost_per_hour,
    node_cpusets,
    nodes_in_use,
    service_pools,
)

if TYPE_CHECKING:
    from edgewise.serving.runtime.app import ServingRuntime
    from edgewise.sim.queueing import ServiceProfile

__all__ = [
    "FleetReplay",
    "FleetRuntime",
    "LiveFleet",
    "live_fleet",
    "replay_fleet",
    "serve_fleet",
]

Progress = Callable[[str, int, int], None]

#: Seconds ahead of a window its new replicas are asked for (a replica starts in 2-8 s).
LEAD_S = 8.0
#: Attainment within this many points and cost within this fraction of the simulator's.
ATTAINMENT_TOLERANCE_PT = 1.0
COST_TOLERANCE = 0.05


@dataclass(frozen=True)
class LiveFleet:
    """A fleet spec loaded for live serving: planner inputs and the nodes' CPU sets."""

    setup: FleetSetup
    slowdown: SlowdownFn
    interference: Mapping[str, InterferenceModelInfo]
    cpusets: Mapping[str, tuple[int, ...]]

    @property
    def services(self) -> list[str]:
        return [s.name for s in self.setup.spec.services]

    def plan(self, rates: Mapping[str, float]) -> FleetPlan:
        """Ours for one window at these rates (each rounded up to the planner's grid)."""
        s = self.setup
        gridded = {k: grid_rate(float(v)) for k, v in rates.items()}
        return plan_fleet(s.services, gridded, s.nodes, s.memory_mb, self.slowdown, s.derate)

    def pools(self, plan: FleetPlan) -> dict[str, ServiceLivePool]:
        return service_pools(plan, self.services, self.cpusets)

    def probe_pools(self) -> list[dict[str, ServiceLivePool]]:
        """One pool per flavor: each service one replica of it, on its own node if it can.

        Service ``i`` goes on the ``i``-th node (cycling) that holds the flavor; the
        flavors no node holds are left out.
        """
        spec = self.setup.spec
        nodes = self.setup.nodes
        out = []
        for f in spec.flavors:
            fits = [n for n in nodes if n.cpus >= f.cpus - 1e-9]
            if not fits:
                continue
            step: dict[str, ServiceLivePool] = {}
            for i, svc in enumerate(spec.services):
                node = fits[i % len(fits)].name
                key = f"{f.name}@{node}"
                model = max(svc.variants, key=lambda v: v.accuracy).model
                step[svc.name] = ServiceLivePool(
                    model, {key: 1}, {key: f.cpus}, {key: self.cpusets[node]}
                )
            out.append(step)
        return out


def live_fleet(
    fleet: str | Path,
    kb: str | None = None,
    measured: Mapping[tuple[str, str], ServiceProfile] | None = None,
) -> LiveFleet:
    """Load a fleet for this host: its setup, the interference model, a CPU set per node.

    ``measured``: service times per (model, flavor) probed through the live path, which
    the planner and the simulator take over the knowledge base's profiles.

    Raises
    ------
    EdgewiseError
        One line: a bad spec, or nodes that need more CPUs than this host has.
    """
    import os

    setup = fleet_setup(fleet, kb, measured)
    models = sorted({m for s in setup.services for m in _models(s)})
    slowdown, info = kb_slowdown(models, kb)
    cpusets = node_cpusets(setup.nodes, sorted(os.sched_getaffinity(0)))
    return LiveFleet(setup, slowdown, info, cpusets)


class FleetRuntime:
    """One local Ray; one Serve deployment per service, on one HTTP port."""

    def __init__(self, fleet: LiveFleet, *, kb: str | None = None, host: str = "127.0.0.1"):
        self.fleet = fleet
        self.kb = kb
        self.host = host
        self.runtimes: dict[str, ServingRuntime] = {}
        self.models: dict[str, str] = {}
        self._session: Any = None

    def url(self, service: str) -> str:
        """Where ``service`` answers predictions."""
        return f"{self.runtimes[service].url}/{service}/predict"

    def start(self, first: Mapping[str, ServiceLivePool]) -> None:
        """Start Ray and every service with its pool of the first window."""
        from edgewise.procs import free_port
        from edgewise.serving.runtime.app import RaySession, RuntimeConfig, ServingRuntime

        spec = self.fleet.setup.spec
        small = min(f.cpus for f in spec.flavors)
        most = math.floor(sum(n.cpus for n in self.fleet.setup.nodes) / small + 1e-9)
        self._session = RaySession(num_cpus=math.ceil(most * small * len(spec.services)))
        self._session.__enter__()
        port = free_port(self.host)
        for svc in spec.services:
            pool = first[svc.name]
            model = pool.model or max(svc.variants, key=lambda v: v.accuracy).model
            rt = ServingRuntime(
                RuntimeConfig(
                    model=model,
                    app=f"fleet-{svc.name}",
                    cpus_per_replica=small,
                    initial_replicas=max(1, sum(pool.replicas.values())),
                    max_replicas=max(1, most),
                    host=self.host,
                    port=port,
                    route_prefix=f"/{svc.name}",
                    kb=self.kb,
                )
            )
            self.runtimes[svc.name] = rt
            self.models[svc.name] = model
            rt.start()
            self._set(svc.name, pool)

    def _set(self, service: str, pool: ServiceLivePool) -> None:
        rt = self.runtimes[service]
        if pool.model is not None and pool.model != self.models[service]:
            rt.set_variant(pool.model)
            self.models[service] = pool.model
        rt.set_pool(pool.replicas, pool.cpus, pool.cpusets)

    def apply(self, pools: Mapping[str, ServiceLivePool]) -> None:
        """Run every service's pool (replicas per ``flavor@node``, the variant served)."""
        for name, pool in pools.items():
            self._set(name, pool)

    def probe(
        self, steps: Sequence[Mapping[str, ServiceLivePool]], n: int = 100, warmup: int = 10
    ) -> dict[tuple[str, str], ServiceProfile]:
        """Service times through the whole HTTP path, per (model, flavor).

        For each step (one replica per service, :meth:`LiveFleet.probe_pools`) every
        service is probed in turn, one request at a time (no queueing): what a request
        costs the deployed path (proxy, routing, decoding, the model) in that flavor.
        """
        from edgewise.serving.live import probe_live_service, sample_body
        from edgewise.serving.runtime.replica import POLL_INTERVAL_S
        from edgewise.sim.queueing import ServiceProfile

        out: dict[tuple[str, str], ServiceProfile] = {}
        for step in steps:
            self.apply(step)
            self.wait_for(step)
            time.sleep(3 * POLL_INTERVAL_S)  # every replica has taken its quota and CPUs
            for name, pool in step.items():
                key = next(iter(pool.replicas))
                flavor = key.split("@", 1)[0]
                body, ctype = sample_body(self.models[name])
                samples = probe_live_service(self.url(name), body, ctype, n=n, warmup=warmup)
                out[(self.models[name], flavor)] = ServiceProfile(
                    samples,
                    pool.cpus[key],
                    f"probed through the live HTTP path in this run ({n} requests, "
                    f"{flavor} on {key.split('@', 1)[1]})",
                )
        return out

    def running(self) -> dict[str, dict[str, int]]:
        """Replicas heard from per pool entry, per service."""
        return {name: rt.running_by_flavor() for name, rt in self.runtimes.items()}

    def wait_for(self, pools: Mapping[str, ServiceLivePool], timeout_s: float = 180.0) -> float:
        """Block until every service runs its pool's replicas; the seconds it took."""
        t0 = time.monotonic()
        for name, pool in pools.items():
            left = max(1.0, timeout_s - (time.monotonic() - t0))
            self.runtimes[name].wait_for_replicas(sum(pool.replicas.values()), timeout_s=left)
        return time.monotonic() - t0

    def shutdown(self) -> None:
        for rt in reversed(list(self.runtimes.values())):
            rt.shutdown()
        self.runtimes.clear()
        if self._session is not None:
            self._session.__exit__(None, None, None)
            self._session = None


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class FleetReplay:
    """The live fleet against the simulator on the same trace and plans."""

    trace: str
    hours: float
    speedup: float
    window_s: int
    seed: int
    plans: tuple[FleetPlan, ...]
    cpusets: dict[str, list[int]]
    profiles: dict[str, str]
    live_attainment: dict[str, float]
    sim_attainment: dict[str, float]
    live_cost: float
    sim_cost: float
    live_node_hours: float
    sim_node_hours: float
    requests: dict[str, int]
    rejected: dict[str, int]
    failed: dict[str, int]
    p50_ms: dict[str, float]
    p99_ms: dict[str, float]
    window_attainment: dict[str, list[float]]
    variant_switches: int
    most_entries: dict[str, int]
    wall_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def attainment_gap_pt(self) -> dict[str, float]:
        """Live minus simulated attainment per service, in points."""
        return {
            s: 100.0 * (self.live_attainment[s] - self.sim_attainment[s])
            for s in self.live_attainment
        }

    def cost_gap(self) -> float:
        """Live cost over the simulator's, minus one."""
        return self.live_cost / self.sim_cost - 1.0 if self.sim_cost > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        gaps = self.attainment_gap_pt()
        worst = max((abs(v) for v in gaps.values()), default=0.0)
        return {
            "trace": self.trace,
            "hours": self.hours,
            "speedup": self.speedup,
            "window_s": self.window_s,
            "seed": self.seed,
            "nodes": self.cpusets,
            "service_profiles": self.profiles,
            "windows": [p.as_dict() for p in self.plans],
            "live": {
                "slo_attainment": self.live_attainment,
                "cost": round(self.live_cost, 6),
                "node_hours": round(self.live_node_hours, 4),
                "requests": self.requests,
                "rejected": self.rejected,
                "failed": self.failed,
                "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms,
                "slo_attainment_per_window": self.window_attainment,
            },
            "simulated": {
                "slo_attainment": self.sim_attainment,
                "cost": round(self.sim_cost, 6),
                "node_hours": round(self.sim_node_hours, 4),
            },
            "attainment_gap_pt": {k: round(v, 3) for k, v in gaps.items()},
            "max_attainment_gap_pt": round(worst, 3),
            "cost_gap": round(self.cost_gap(), 4),
            "variant_switches": self.variant_switches,
            "most_entries_at_once": self.most_entries,
            "within_tolerance": bool(
                worst <= ATTAINMENT_TOLERANCE_PT and abs(self.cost_gap()) <= COST_TOLERANCE
            ),
            "tolerance": {"attainment_pt": ATTAINMENT_TOLERANCE_PT, "cost": COST_TOLERANCE},
            "wall_s": round(self.wall_s, 1),
            "notes": list(self.notes),
        }


def _wall(rate: np.ndarray, speedup: int) -> np.ndarray:
    """Mean rate of every ``speedup`` trace seconds: the replay's rate per wall second."""
    k = rate.size // speedup
    return rate[: k * speedup].reshape(k, speedup).mean(axis=1)


def _pct(load: Any, ok: np.ndarray, q: float) -> float:
    return round(load.percentile(q), 2) if ok.any() else math.nan


def _per_window(load: Any, slo_ms: float, win_wall: int, n_win: int) -> list[float]:
    """Live attainment in each window (1 where a window saw no request)."""
    good = (load.status == 200) & (np.nan_to_num(load.latency_ms, nan=np.inf) <= slo_ms)
    k = np.minimum((load.scheduled_s // win_wall).astype(int), n_win - 1)
    sent = np.bincount(k, minlength=n_win)
    met = np.bincount(k, weights=good.astype(float), minlength=n_win)
    return [round(float(m / n), 5) if n else 1.0 for m, n in zip(met, sent, strict=True)]


def _check(hours: float, speedup: int, window_s: int) -> int:
    if speedup < 1 or window_s % speedup:
        raise SpecError(f"window of {window_s} s must be a whole number of speedup {speedup}")
    total = hours * 3600.0
    if not hours > 0 or abs(total / window_s - round(total / window_s)) > 1e-9:
        raise SpecError(f"{hours:g} hours must be a whole number of {window_s} s windows")
    return round(total / window_s)


def replay_fleet(
    *,
    fleet: str | Path,
    trace: str = "bikeshare",
    hours: float = 8.0,
    speedup: int = 240,
    window_s: int = 7200,
    seed: int = 0,
    kb: str | None = None,
    lead_s: float = LEAD_S,
    progress: Progress | None = None,
) -> FleetReplay:
    """Serve the last ``hours`` of a trace live on the fleet, and simulate the same.

    Parameters
    ----------
    fleet : path
        The fleet spec; its nodes are emulated by this host's CPUs.
    trace : str
        ``'bikeshare'`` (or another vendored trace) or a CSV file.
    hours : float
        Trace hours replayed (a whole number of windows).
    speedup : int
        Trace seconds per wall second (``window_s`` a multiple of it).
    window_s : int
        Trace seconds per planning window.
    seed : int
        Seed of the arrivals (one stream per service, shared with the simulator).
    kb : str, optional
        Knowledge base of the interference models and capacity profiles.
    lead_s : float
        Wall seconds ahead of a window its extra replicas are asked for.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Raises
    ------
    EdgewiseError
        One line: a bad spec or trace, a window ours cannot plan, nodes beyond the host.
    """
    from edgewise.sim.fleet import plan_classes, simulate_service
    from edgewise.sim.model import SimConfig
    from edgewise.stats import poisson_arrivals

    n_win = _check(hours, speedup, window_s)
    solo = live_fleet(fleet, kb)
    spec = solo.setup.spec
    rates = _service_rates(spec, trace, hours / 24.0)
    _plan_windows(solo, rates, n_win, window_s)  # refuse a fleet it cannot plan, before Ray
    wall_rates = {n: _wall(r, speedup) for n, r in rates.items()}
    arrivals = {
        n: poisson_arrivals(wall_rates[n], 1.0, np.random.default_rng([seed, i]))
        for i, n in enumerate(solo.services)
    }
    win_wall = window_s // speedup
    runtime = FleetRuntime(solo, kb=kb)
    try:
        if progress is not None:
            progress("probing the serving path", 0, n_win)
        steps = solo.probe_pools()
        runtime.start(steps[0])
        measured = runtime.probe(steps)
        live = live_fleet(fleet, kb, measured)
        plans = _plan_windows(live, rates, n_win, window_s)
        pools = [live.pools(p) for p in plans]
        runtime.fleet = live
        runtime.apply(pools[0])
        runtime.wait_for(pools[0])
        driven = _drive_windows(runtime, pools, arrivals, win_wall, speedup, lead_s, progress)
    finally:
        runtime.shutdown()
    if progress is not None:
        progress("simulating", n_win, n_win)
    duration = n_win * win_wall
    sim_att: dict[str, float] = {}
    for svc in spec.services:
        config = SimConfig(slo_ms=svc.slo.latency_ms, slo_percentile=svc.slo.percentile)
        counts = np.bincount(
            np.minimum(arrivals[svc.name].astype(int), duration - 1), minlength=duration
        ).astype(float)
        classes = [plan_classes(p, svc.name, live.setup.derate, live.setup.profiles) for p in plans]
        got = simulate_service(wall_rates[svc.name], counts, classes, win_wall, config)
        sim_att[svc.name] = got.slo_attainment
    notes = dict.fromkeys(n for p in plans for n in p.notes)
    notes.update(dict.fromkeys(n for ps in pools for pool in ps.values() for n in pool.notes))
    loads = driven.loads
    hours_w = window_s / 3600.0
    ok = {n: loads[n].status == 200 for n in live.services}
    return FleetReplay(
        trace=str(trace),
        hours=hours,
        speedup=float(speedup),
        window_s=window_s,
        seed=seed,
        plans=tuple(plans),
        cpusets={n: list(c) for n, c in live.cpusets.items()},
        profiles=dict(live.setup.profile_sources),
        live_attainment={s.name: loads[s.name].attainment(s.slo.latency_ms) for s in spec.services},
        sim_attainment=sim_att,
        live_cost=driven.cost,
        sim_cost=sum(p.cost_per_hour * hours_w for p in plans),
        live_node_hours=driven.node_hours,
        sim_node_hours=sum(p.nodes_used * hours_w for p in plans),
        requests={n: loads[n].n for n in live.services},
        rejected={n: int((loads[n].status == 503).sum()) for n in live.services},
        failed={n: int((loads[n].status == 0).sum()) for n in live.services},
        p50_ms={n: _pct(loads[n], ok[n], 50) for n in live.services},
        p99_ms={n: _pct(loads[n], ok[n], 99) for n in live.services},
        window_attainment={
            s.name: _per_window(loads[s.name], s.slo.latency_ms, win_wall, n_win)
            for s in spec.services
        },
        variant_switches=driven.switches,
        most_entries=driven.most_entries,
        wall_s=driven.wall_s,
        notes=tuple(notes),
    )


def _plan_windows(
    live: LiveFleet, rates: Mapping[str, np.ndarray], n_win: int, window_s: int
) -> list[FleetPlan]:
    """Ours for every window, at each service's peak rate in it."""
    plans = []
    for k in range(n_win):
        peaks = {n: float(r[k * window_s : (k + 1) * window_s].max()) for n, r in rates.items()}
        try:
            plans.append(live.plan(peaks))
        except InfeasibleError as err:
            raise InfeasibleError(f"window {k}: {err}") from None
    return plans


@dataclass(frozen=True)
class _Driven:
    loads: dict[str, Any]
    cost: float
    node_hours: float
    switches: int
    most_entries: dict[str, int]
    wall_s: float


def _drive_windows(
    runtime: FleetRuntime,
    pools: Sequence[Mapping[str, ServiceLivePool]],
    arrivals: Mapping[str, np.ndarray],
    win_wall: int,
    speedup: int,
    lead_s: float,
    progress: Progress | None,
) -> _Driven:
    """Send every service's arrivals while applying each window's pools on time.

    Window ``k``'s extra replicas are asked for ``lead_s`` ahead of it (the larger pool
    of the two windows, :func:`~edgewise.serving.fleet.ahead`), and its own pool at its
    start. Every wall second the nodes holding a running replica are priced.
    """
    from edgewise.serving.live import sample_body
    from edgewise.serving.loadgen import run_load

    names = list(pools[0])
    n_win = len(pools)
    hours_per_wall_s = speedup / 3600.0
    nodes = runtime.fleet.setup.nodes
    loads: dict[str, Any] = {}

    def drive(name: str) -> None:
        body, ctype = sample_body(runtime.models[name])
        loads[name] = run_load(runtime.url(name), arrivals[name], body, ctype)

    threads = [threading.Thread(target=drive, args=(n,), daemon=True) for n in names]
    events = sorted(
        [(k * win_wall - lead_s, k, "ahead") for k in range(1, n_win)]
        + [(float(k * win_wall), k, "window") for k in range(1, n_win)]
    )
    cost = node_s = 0.0
    most: dict[str, int] = {}
    switches = second = 0
    t0 = time.monotonic()
    for th in threads:
        th.start()
    while second < n_win * win_wall:
        now = time.monotonic() - t0
        while events and events[0][0] <= now:
            _, k, kind = events.pop(0)
            if kind == "ahead":
                runtime.apply({n: ahead(pools[k - 1][n], pools[k][n]) for n in names})
                continue
            before = dict(runtime.models)
            runtime.apply(pools[k])
            switches += sum(runtime.models[n] != before[n] for n in names)
            if progress is not None:
                progress("replaying", k, n_win)
        if now >= second:
            running = runtime.running()
            cost += fleet_cost_per_hour(running, nodes) * hours_per_wall_s
            node_s += len(nodes_in_use(running))
            for n, pool in running.items():
                most[n] = max(most.get(n, 0), sum(1 for v in pool.values() if v > 0))
            second += 1
        time.sleep(0.05)
    for th in threads:
        th.join()
    return _Driven(loads, cost, node_s * hours_per_wall_s, switches, most, time.monotonic() - t0)


# --------------------------------------------------------------------------- serve --fleet


def _answered(runtime: ServingRuntime) -> float:
    """Requests the service has answered or refused so far."""
    snap = runtime.snapshot(1.0)
    return float(snap["completed"]) + float(snap["rejected"])


def serve_fleet(
    *,
    fleet: str | Path,
    kb: str | None = None,
    window_s: float = 30.0,
    headroom: float = 0.2,
    floor_rps: float = 1.0,
    probe: bool = True,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    started: Callable[[FleetRuntime, FleetPlan], None] | None = None,
    replanned: Callable[[FleetPlan | None, str | None], None] | None = None,
) -> list[FleetPlan]:
    """Serve a fleet on real traffic until stopped, re-planning every ``window_s``.

    Each window is planned at each service's mean rate over the last window (requests
    answered or refused) times ``1 + headroom``, at least ``floor_rps`` so that every
    service keeps a replica; the first at ``floor_rps``. With ``probe`` every (model,
    flavor) is first probed through the live HTTP path (:meth:`FleetRuntime.probe`) and
    the planner plans with those service times, not the knowledge base's in-replica
    profiles, which leave out the serving path. ``started(runtime, plan)`` is
    called once the first plan runs; ``replanned(plan, None)`` after each new plan, or
    ``replanned(None, why)`` when a window could not be planned and the running plan
    stays. Returns the plans made.
    """
    live = live_fleet(fleet, kb)
    plan = live.plan(dict.fromkeys(live.services, floor_rps))  # refuse it before Ray
    runtime = FleetRuntime(live, kb=kb)
    stop = stop or threading.Event()
    try:
        if probe:
            steps = live.probe_pools()
            runtime.start(steps[0])
            live = live_fleet(fleet, kb, runtime.probe(steps))
            runtime.fleet = live
            plan = live.plan(dict.fromkeys(live.services, floor_rps))
            runtime.apply(live.pools(plan))
        else:
            runtime.start(live.pools(plan))
        plans = [plan]
        runtime.wait_for(live.pools(plan))
        if started is not None:
            started(runtime, plan)
        t_end = None if duration_s is None else time.monotonic() + duration_s
        seen = {n: _answered(rt) for n, rt in runtime.runtimes.items()}
        while not stop.wait(window_s):
            if t_end is not None and time.monotonic() >= t_end:
                break
            rates = {}
            for name, rt in runtime.runtimes.items():
                now = _answered(rt)
                rates[name] = max(floor_rps, (now - seen[name]) / window_s * (1.0 + headroom))
                seen[name] = now
            try:
                plan = live.plan(rates)
            except InfeasibleError as err:
                if replanned is not None:
                    replanned(None, f"kept the running plan: {err}")
                continue
            runtime.apply(live.pools(plan))
            plans.append(plan)
            if replanned is not None:
                replanned(plan, None)
    finally:
        runtime.shutdown()
    return plans
