"""A fleet served live on this host: every service its own deployment, nodes as CPU sets.

:class:`FleetRuntime` starts one local Ray and one Serve deployment per service of a
fleet spec (route ``/SERVICE``), each a pool whose entries are ``flavor@node``
(:mod:`edgewise.serving.fleet`): a replica runs pinned to its node's CPUs with its
flavor's CPU quota, so replicas sharing a node contend as the planner predicted.
:meth:`FleetRuntime.apply` executes one window of :func:`edgewise.planning.fleet.plan_fleet`
(replicas per entry, the variant served).

:func:`serve_fleet` runs the fleet on real traffic, re-planning every window at each
service's observed rate (``edgewise serve --fleet``);
:func:`edgewise.api.fleet_replay.replay_fleet` checks it against the simulator.

Effects: Ray, the load generators, the knowledge base. Planning and pool mapping are pure.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgewise.api.fleet import (
    FleetSetup,
    InterferenceModelInfo,
    fleet_setup,
    kb_slowdown,
)
from edgewise.errors import InfeasibleError
from edgewise.planning.fleet import FleetPlan, SlowdownFn, grid_rate, plan_fleet
from edgewise.serving.fleet import (
    ServiceLivePool,
    flavor_of,
    node_cpusets,
    node_of,
    pool_key,
    service_pools,
)

if TYPE_CHECKING:
    from edgewise.serving.runtime.app import ServingRuntime
    from edgewise.sim.queueing import ServiceProfile

__all__ = [
    "FleetRuntime",
    "LiveFleet",
    "live_fleet",
    "serve_fleet",
]

#: Seconds ahead of a window its new replicas are asked for (a replica starts in 2-8 s).
LEAD_S = 8.0


@dataclass(frozen=True)
class LiveFleet:
    """A fleet spec loaded for live serving: planner inputs and the nodes' CPU sets."""

    setup: FleetSetup
    slowdown: SlowdownFn
    interference: Mapping[str, InterferenceModelInfo]
    cpusets: Mapping[str, tuple[int, ...]]
    kb: str | None = None

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

    def with_measured(self, measured: Mapping[tuple[str, str], ServiceProfile]) -> LiveFleet:
        """The same fleet planned with service times per (model, flavor) probed through
        the live path, over the knowledge base's profiles (the interference model and
        the nodes' CPU sets are kept)."""
        return replace(self, setup=fleet_setup(self.setup.spec, self.kb, measured))

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
                key = pool_key(f.name, node)
                model = max(svc.variants, key=lambda v: v.accuracy).model
                step[svc.name] = ServiceLivePool(
                    model, {key: 1}, {key: f.cpus}, {key: self.cpusets[node]}
                )
            out.append(step)
        return out


def live_fleet(fleet: str | Path, kb: str | None = None) -> LiveFleet:
    """Load a fleet for this host: its setup, the interference model, a CPU set per node.

    Raises
    ------
    EdgewiseError
        One line: a bad spec, or nodes that need more CPUs than this host has.
    """
    import os

    setup = fleet_setup(fleet, kb)
    slowdown, info = kb_slowdown(setup.models, kb)
    cpusets = node_cpusets(setup.nodes, sorted(os.sched_getaffinity(0)))
    return LiveFleet(setup, slowdown, info, cpusets, kb)


class FleetRuntime:
    """One local Ray; one Serve deployment per service, on one HTTP port."""

    def __init__(self, fleet: LiveFleet, *, kb: str | None = None, host: str = "127.0.0.1"):
        self.fleet = fleet
        self.kb = kb
        self.host = host
        self.runtimes: dict[str, ServingRuntime] = {}
        self.models: dict[str, str] = {}
        self._session: Any = None

    def __enter__(self) -> FleetRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

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
                flavor = flavor_of(key)
                body, ctype = sample_body(self.models[name])
                samples = probe_live_service(self.url(name), body, ctype, n=n, warmup=warmup)
                out[(self.models[name], flavor)] = ServiceProfile(
                    samples,
                    pool.cpus[key],
                    f"probed through the live HTTP path in this run ({n} requests, "
                    f"{flavor} on {node_of(key)})",
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
            live = live.with_measured(runtime.probe(steps))
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
