"""The live fleet against the simulator: the same trace, plans and arrivals.

:func:`replay_fleet` takes the last hours of a trace, shifted and scaled per service as
``simulate serving --fleet`` builds them and compressed ``speedup`` times, plans every
window at each service's window peak (the same plans for both sides), serves it live on
a :class:`~edgewise.api.fleet_live.FleetRuntime` with every window's new replicas asked
for ahead of it, and simulates it (:func:`edgewise.sim.fleet.simulate_service`) on the
same per-second rates and arrivals. Both plan and simulate with service times probed
through the live HTTP path first (:meth:`~edgewise.api.fleet_live.FleetRuntime.probe`).
It reports each service's SLO attainment and the node cost, live and simulated
(``edgewise bench fleet-live``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.api.fleet import _service_rates
from edgewise.api.fleet_live import LEAD_S, FleetRuntime, LiveFleet, live_fleet
from edgewise.errors import InfeasibleError, SpecError
from edgewise.planning.fleet import FleetPlan
from edgewise.serving.fleet import (
    ServiceLivePool,
    ahead,
    fleet_cost_per_hour,
    nodes_in_use,
)

__all__ = ["ATTAINMENT_TOLERANCE_PT", "COST_TOLERANCE", "FleetReplay", "replay_fleet"]

Progress = Callable[[str, int, int], None]

#: Attainment within this many points and cost within this fraction of the simulator's.
ATTAINMENT_TOLERANCE_PT = 1.0
COST_TOLERANCE = 0.05


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
    trace, hours : str, float
        ``'bikeshare'`` (or another vendored trace) or a CSV file, and the hours of it
        replayed (a whole number of windows of ``window_s`` trace seconds).
    speedup, window_s : int
        Trace seconds per wall second, and per planning window (a multiple of it).
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
    if progress is not None:
        progress("probing the serving path", 0, n_win)
    with FleetRuntime(solo, kb=kb) as runtime:
        steps = solo.probe_pools()
        runtime.start(steps[0])
        live = solo.with_measured(runtime.probe(steps))
        plans = _plan_windows(live, rates, n_win, window_s)
        pools = [live.pools(p) for p in plans]
        runtime.fleet = live
        runtime.apply(pools[0])
        runtime.wait_for(pools[0])
        driven = _drive_windows(runtime, pools, arrivals, win_wall, speedup, lead_s, progress)
    if progress is not None:
        progress("simulating", n_win, n_win)
    sim_att = _simulate(live, plans, wall_rates, arrivals, win_wall)
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


def _simulate(
    live: LiveFleet,
    plans: Sequence[FleetPlan],
    wall_rates: Mapping[str, np.ndarray],
    arrivals: Mapping[str, np.ndarray],
    win_wall: int,
) -> dict[str, float]:
    """Each service's attainment in the simulator: the same plans, rates and arrivals."""
    from edgewise.sim.fleet import plan_classes, simulate_service
    from edgewise.sim.model import SimConfig

    duration = len(plans) * win_wall
    out: dict[str, float] = {}
    for svc in live.setup.spec.services:
        config = SimConfig(slo_ms=svc.slo.latency_ms, slo_percentile=svc.slo.percentile)
        counts = np.bincount(
            np.minimum(arrivals[svc.name].astype(int), duration - 1), minlength=duration
        ).astype(float)
        classes = [plan_classes(p, svc.name, live.setup.derate, live.setup.profiles) for p in plans]
        got = simulate_service(wall_rates[svc.name], counts, classes, win_wall, config)
        out[svc.name] = got.slo_attainment
    return out


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
