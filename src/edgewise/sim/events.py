"""Exact request-level simulation of a replica pool, for validating the fast simulator.

Requests arrive at given times and are served in arrival order by the first replica to
become free (a central FIFO queue, which Ray Serve's router approaches); each replica
draws service times from its flavor's profile scaled for its CPUs. The replica set
follows a schedule of change points; a scale-in removes idle replicas first and lets
busy ones finish; a request that finds more than ``queue_per_replica`` waiting per
replica is rejected. Slow (a Python loop per request): meant for short segments.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgewise.sim.queueing import ServiceProfile, speed_factor


@dataclass(frozen=True)
class PoolChange:
    """From ``t`` on, ``replicas[f]`` ready replicas of flavor ``f`` at ``cpus[f]`` CPUs."""

    t: float
    replicas: Mapping[str, int]
    cpus: Mapping[str, float]


@dataclass(frozen=True)
class RequestOutcome:
    """Latency (s, inf when rejected) of every request, in arrival order."""

    arrivals_s: np.ndarray
    latency_s: np.ndarray

    @property
    def rejected(self) -> np.ndarray:
        return ~np.isfinite(self.latency_s)

    def attainment(self, slo_ms: float) -> float:
        if self.latency_s.size == 0:
            return 1.0
        return float(np.mean(self.latency_s <= slo_ms / 1000.0))


def simulate_requests(
    arrivals_s: np.ndarray,
    schedule: Sequence[PoolChange],
    profiles: Mapping[str, ServiceProfile],
    nominal_cpus: Mapping[str, float],
    seed: int | np.random.Generator,
    queue_per_replica: int = 64,
    max_speedup: float = 2.0,
) -> RequestOutcome:
    """Serve ``arrivals_s`` with the replica pool of ``schedule``; return every latency."""
    rng = np.random.default_rng(seed)
    arrivals = np.sort(np.asarray(arrivals_s, dtype=float))
    changes = sorted(schedule, key=lambda c: c.t)
    if not changes:
        raise ValueError("the schedule needs at least one change point")
    flavors = sorted(profiles)
    draws = {f: profiles[f].sample(arrivals.size, rng) / 1000.0 for f in flavors}
    # Server heap: (free_at, serial, flavor); removed servers are simply not in the heap.
    heap: list[tuple[float, int, str]] = []
    serial = 0
    factor = {f: 1.0 for f in flavors}
    waiting: list[float] = []  # start times of queued requests (min-heap)
    latency = np.empty(arrivals.size)
    ci = 0

    def apply(change: PoolChange) -> None:
        nonlocal serial, heap
        for f in flavors:
            factor[f] = float(
                speed_factor(nominal_cpus[f], change.cpus.get(f, nominal_cpus[f]), max_speedup)
            )
        mine = {f: [s for s in heap if s[2] == f] for f in flavors}
        keep: list[tuple[float, int, str]] = []
        for f in flavors:
            want = int(change.replicas.get(f, 0))
            have = sorted(mine[f], key=lambda s: -s[0])  # busiest first: idle ones go first
            if want <= len(have):
                keep.extend(have[:want])
            else:
                keep.extend(have)
                for _ in range(want - len(have)):
                    serial += 1
                    keep.append((change.t, serial, f))
        heap = keep
        heapq.heapify(heap)

    for i, t in enumerate(arrivals):
        while ci < len(changes) and changes[ci].t <= t:
            apply(changes[ci])
            ci += 1
        while not heap and ci < len(changes):  # nobody serves: wait for the next change
            apply(changes[ci])
            ci += 1
        if not heap:
            latency[i] = np.inf
            continue
        while waiting and waiting[0] <= t:
            heapq.heappop(waiting)
        if len(waiting) >= queue_per_replica * len(heap):
            latency[i] = np.inf
            continue
        free_at, sid, f = heapq.heappop(heap)
        start = max(t, free_at)
        done = start + draws[f][i] * factor[f]
        heapq.heappush(heap, (done, sid, f))
        if start > t:
            heapq.heappush(waiting, start)
        latency[i] = done - t
    return RequestOutcome(arrivals, latency)
