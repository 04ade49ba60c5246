"""The coordinator actor: targets set by the controller, metrics pushed by replicas.

One named Ray actor per served application. The controller writes the target replica
count and CPUs per replica; the autoscaling policy function and the replicas read them.
Replicas push batches of request latencies; ``render`` gives the Prometheus text
exposition served at ``/metrics``.

A deployment may run a *pool* of flavors at once (say 2 x large + 1 x small): a flavor
is a CPU quota, which each replica applies to its own cgroup in place, so the replicas
of one Ray Serve deployment can differ in size. The controller sets the count and CPUs
of every flavor (:meth:`CoordinatorState.set_pool`); the target replica count is their
sum, and :func:`assign_flavors` (pure) gives each replica heard from a flavor, keeping
what replicas already have and moving as few as it can when the counts change or Ray
Serve stops a replica of its own choosing. Each replica reads its flavor's CPUs on
every poll. The controller may also set the model variant every replica serves
(:meth:`CoordinatorState.set_variant`); replicas load it beside the one they serve and
switch in place. During a rollout it also carries the rollout's
assignment (which version is the canary, its traffic share, which replicas are
promoted) to the replicas, and their canary observations and state back to the rollout
driver (:mod:`edgewise.serving.runtime.rollout`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ray
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

NAMESPACE = "edgewise"
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000)


def coordinator_name(app: str) -> str:
    return f"edgewise-coordinator-{app}"


def assign_flavors(
    replicas: Sequence[str],
    previous: Mapping[str, str],
    targets: Mapping[str, int],
) -> dict[str, str]:
    """Give every replica a flavor so that the counts match ``targets`` where they can.

    Pure. A replica keeps its previous flavor while that flavor still wants it (the
    earliest registered first); the others fill the flavors short of their count, in the
    order of ``targets``. Replicas beyond the total (Ray Serve has not stopped them yet)
    keep their flavor, or take the first one; with fewer replicas than the total (some
    still starting) the flavors last in ``targets`` wait.

    Parameters
    ----------
    replicas : sequence of str
        Replica ids, in the order they registered.
    previous : mapping
        The flavor each replica had (replicas absent from it are new).
    targets : mapping
        Replicas wanted per flavor, in the order flavors are filled.

    Returns
    -------
    dict
        The flavor of every replica in ``replicas``.
    """
    wanted = {name: max(0, int(n)) for name, n in targets.items()}
    out: dict[str, str] = {}
    left: list[str] = []
    for rid in replicas:
        flavor = previous.get(rid)
        if flavor is not None and wanted.get(flavor, 0) > 0:
            out[rid] = flavor
            wanted[flavor] -= 1
        else:
            left.append(rid)
    for rid in left:
        short = next((name for name, n in wanted.items() if n > 0), None)
        if short is not None:
            out[rid] = short
            wanted[short] -= 1
        else:  # a surplus replica about to be stopped
            out[rid] = previous.get(rid) or next(iter(targets), "")
    return out


class _Recent:
    """Samples of the last ``keep_s`` seconds, stamped with the time they arrived."""

    def __init__(self, keep_s: float = 60.0) -> None:
        self.keep_s = keep_s
        self._points: list[tuple[float, float]] = []

    def add(self, now: float, values: Iterable[float]) -> None:
        self._points.extend((now, v) for v in values)
        cutoff = now - self.keep_s
        if self._points and self._points[0][0] < cutoff:
            self._points = [p for p in self._points if p[0] >= cutoff]

    def since(self, t0: float) -> list[tuple[float, float]]:
        return [p for p in self._points if p[0] >= t0]


class CoordinatorState:
    """Plain-Python core of the coordinator (unit-testable without Ray)."""

    def __init__(self, app: str, target_replicas: int, cpus_per_replica: float) -> None:
        self.app = app
        self.target_replicas = int(target_replicas)
        self.cpus_per_replica = float(cpus_per_replica)
        self.replicas: dict[str, dict[str, Any]] = {}
        self.info: dict[str, Any] = {}
        self.completed = 0
        self.rejected = 0
        self.queued_total = 0.0  # running + queued requests, as Ray Serve's autoscaler sees them
        self._cpu_s: dict[str, float] = {}
        self._recent = _Recent()  # request latencies, ms
        self._recent_infer = _Recent()  # forward passes, ms
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "edgewise_request_latency_ms",
            "In-replica request latency (queue + service) in milliseconds",
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self._inference = Histogram(
            "edgewise_inference_ms",
            "Model forward pass per batch in milliseconds (the part of the latency that is "
            "the model's own)",
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self._requests = Counter(
            "edgewise_requests", "Requests by outcome", ["outcome"], registry=self.registry
        )
        self._replicas_g = Gauge("edgewise_replicas", "Running replicas", registry=self.registry)
        self._target_g = Gauge(
            "edgewise_target_replicas", "Target replicas", registry=self.registry
        )
        self._cpus_g = Gauge(
            "edgewise_cpus_per_replica", "CPUs per replica", registry=self.registry
        )
        self._queue_g = Gauge(
            "edgewise_queue_length", "Requests queued or running", registry=self.registry
        )
        self._forecast_g = Gauge(
            "edgewise_forecast_rps", "Forecast request rate", registry=self.registry
        )
        self._plan_g = Gauge(
            "edgewise_plan_capacity_rps", "Planned capacity", registry=self.registry
        )
        self.pool: dict[str, int] | None = None  # replicas per flavor; None: one flavor
        self.pool_cpus: dict[str, float] = {}
        # CPUs a pool entry's replicas are pinned to (an emulated node); absent: any.
        self.pool_cpuset: dict[str, tuple[int, ...]] = {}
        self.flavor_of: dict[str, str] = {}
        self.rollout: dict[str, Any] | None = None
        # The version every replica serves: what a finished rollout promoted, or the
        # variant the controller chose (``None``: the deployment's own model).
        self.serving_ref: str | None = None
        self.canary: dict[str, Any] = {}
        self.lanes: dict[str, dict[str, Any]] = {}

    # --- the pool of flavors and the variant: the controller writes, replicas read ----
    def set_target(self, replicas: int) -> None:
        """One flavor: ``replicas`` replicas, all at :attr:`cpus_per_replica`."""
        self.pool = None
        self.flavor_of = {}
        self.target_replicas = max(0, int(replicas))

    def set_pool(
        self,
        replicas: Mapping[str, int],
        cpus: Mapping[str, float],
        cpusets: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        """Several flavors: ``replicas[f]`` replicas of flavor ``f`` at ``cpus[f]`` CPUs each.

        The target replica count becomes their sum; replicas are (re)assigned at once.
        ``cpusets[f]``, where given, pins entry ``f``'s replicas to those CPUs (a fleet's
        entries are ``flavor@node``, a node emulated by its CPUs).
        """
        self.pool = {name: max(0, int(n)) for name, n in replicas.items()}
        self.pool_cpus = {name: float(cpus[name]) for name in self.pool}
        given = cpusets or {}
        self.pool_cpuset = {
            name: tuple(sorted(int(c) for c in given[name]))
            for name in self.pool
            if given.get(name)
        }
        self.target_replicas = sum(self.pool.values())
        self._assign()

    def set_variant(self, ref: str) -> None:
        """Every replica serves the model ``ref`` (loaded beside the old one, then swapped)."""
        self.serving_ref = str(ref)

    def _assign(self) -> None:
        if self.pool is not None:
            self.flavor_of = assign_flavors(list(self.replicas), self.flavor_of, self.pool)

    def cpus_for(self, replica: str) -> float:
        """The CPUs ``replica`` should have: its flavor's in a pool, else the one size."""
        flavor = self.flavor_of.get(replica)
        if self.pool is None or flavor is None:
            return self.cpus_per_replica
        return self.pool_cpus.get(flavor, self.cpus_per_replica)

    def cpuset_for(self, replica: str) -> list[int] | None:
        """The CPUs ``replica`` is pinned to (its pool entry's node), ``None``: any."""
        flavor = self.flavor_of.get(replica)
        if self.pool is None or flavor is None or flavor not in self.pool_cpuset:
            return None
        return list(self.pool_cpuset[flavor])

    def pool_view(self) -> dict[str, dict[str, Any]]:
        """Per flavor: replicas asked for, replicas heard from that have it, and its CPUs."""
        if self.pool is None:
            return {}
        have = {name: 0 for name in self.pool}
        for rid in self.replicas:
            flavor = self.flavor_of.get(rid)
            if flavor in have:
                have[flavor] += 1
        return {
            name: {"target": n, "assigned": have[name], "cpus": self.pool_cpus[name]}
            for name, n in self.pool.items()
        }

    # --- rollout: the driver writes the assignment, replicas report back ---------------
    def start_rollout(self, ref: str, share: float) -> dict[str, Any]:
        """Begin a canary of ``ref`` answering ``share`` of each replica's requests."""
        rid = f"r{int(time.time() * 1000)}"
        self.rollout = {"id": rid, "ref": ref, "share": float(share), "promoted": []}
        self.canary = {"latencies_ms": []}
        return dict(self.rollout)

    def promote(self, replicas: list[str]) -> None:
        """These replicas answer every request with the new version; the others with the
        serving one (the canary split ends when promotion begins)."""
        if self.rollout is not None:
            self.rollout = {**self.rollout, "share": 0.0, "promoted": list(replicas)}

    def finish_rollout(self, promoted: bool) -> None:
        """End the rollout: every replica serves the new version, or the old one again."""
        if self.rollout is not None and promoted:
            self.serving_ref = str(self.rollout["ref"])
        self.rollout = None

    def report_canary(self, replica: str, stats: dict[str, Any], lane: dict[str, Any]) -> None:
        """A replica's canary observations since its last push, and its lane state."""
        self.lanes[replica] = {**lane, "seen": time.time()}
        if self.rollout is None or stats.get("rollout") != self.rollout["id"]:
            return
        for key, value in stats.items():
            if isinstance(value, list):  # latencies: canary and serving version
                self.canary.setdefault(key, []).extend(float(v) for v in value)
            elif key != "rollout":
                self.canary[key] = int(self.canary.get(key, 0)) + int(value)

    def assignment(self) -> dict[str, Any]:
        """What every replica should serve: the rollout (or ``None``) and the serving ref."""
        return {"rollout": self.rollout, "serving_ref": self.serving_ref}

    def rollout_view(self) -> dict[str, Any]:
        """The driver's view: assignment, the canary's observations, each replica's lane."""
        return {
            **self.assignment(),
            "canary": {k: list(v) if isinstance(v, list) else v for k, v in self.canary.items()},
            "lanes": {  # live replicas only: one heard from in the last 3 s
                k: dict(v)
                for k, v in self.lanes.items()
                if k in self.replicas and time.time() - float(v["seen"]) < 3.0
            },
        }

    def record(
        self,
        replica: str,
        latencies_ms: list[float],
        rejected: int,
        ongoing: int,
        cpu_s: float = 0.0,
        infer_ms: list[float] | None = None,
    ) -> None:
        now = time.time()
        self._cpu_s[replica] = float(cpu_s)
        for v in latencies_ms:
            self._latency.observe(v)
        for v in infer_ms or ():
            self._inference.observe(v)
        self._recent.add(now, latencies_ms)
        self._recent_infer.add(now, infer_ms or ())
        self._requests.labels("ok").inc(len(latencies_ms))
        if rejected:
            self._requests.labels("rejected").inc(rejected)
        self.completed += len(latencies_ms)
        self.rejected += rejected
        if replica in self.replicas:
            self.replicas[replica]["ongoing"] = ongoing
            self.replicas[replica]["seen"] = now
            self.replicas[replica]["cpus"] = self.cpus_for(replica)
            if replica in self.flavor_of:
                self.replicas[replica]["flavor"] = self.flavor_of[replica]
        if self.pool is not None:
            self.forget_silent(now)

    def register(self, replica: str, pid: int, node: str, cpus: float) -> None:
        self.replicas[replica] = {
            "pid": pid,
            "node": node,
            "cpus": cpus,
            "ongoing": 0,
            "seen": time.time(),
        }
        self._assign()

    def unregister(self, replica: str) -> None:
        self.replicas.pop(replica, None)
        self.lanes.pop(replica, None)
        self.flavor_of.pop(replica, None)
        self._assign()

    def forget_silent(self, now: float, silent_s: float = 5.0) -> None:
        """Drop replicas not heard from for ``silent_s`` (Ray Serve stopped them)."""
        gone = [k for k, v in self.replicas.items() if now - float(v["seen"]) >= silent_s]
        for rid in gone:
            self.replicas.pop(rid, None)
            self.lanes.pop(rid, None)
            self.flavor_of.pop(rid, None)
        if gone:
            self._assign()

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]:
        now = time.time()
        recent = self._recent.since(now - window_s)
        return {
            "target_replicas": self.target_replicas,
            "cpus_per_replica": self.cpus_per_replica,
            "replicas": dict(self.replicas),
            "completed": self.completed,
            "rejected": self.rejected,
            "recent_latencies_ms": [v for _, v in recent],
            "recent_infer_ms": [v for _, v in self._recent_infer.since(now - window_s)],
            "recent": recent,
            "ongoing": sum(int(r.get("ongoing", 0)) for r in self.replicas.values()),
            "queued_total": self.queued_total,
            "cpu_s": dict(self._cpu_s),
            "time": now,
            "info": dict(self.info),
            "pool": self.pool_view(),
            "serving_ref": self.serving_ref,
        }

    def render(self) -> bytes:
        self._replicas_g.set(len(self.replicas))
        self._target_g.set(self.target_replicas)
        self._cpus_g.set(self.cpus_per_replica)
        self._queue_g.set(sum(int(r.get("ongoing", 0)) for r in self.replicas.values()))
        if "forecast_rps" in self.info:
            self._forecast_g.set(float(self.info["forecast_rps"]))
        if "plan_capacity_rps" in self.info:
            self._plan_g.set(float(self.info["plan_capacity_rps"]))
        return generate_latest(self.registry)


@ray.remote(num_cpus=0, max_restarts=-1)
class Coordinator:
    """Ray actor wrapper around :class:`CoordinatorState`."""

    def __init__(self, app: str, target_replicas: int, cpus_per_replica: float) -> None:
        self._s = CoordinatorState(app, target_replicas, cpus_per_replica)

    def get_target(self) -> int:
        return self._s.target_replicas

    def set_target(self, replicas: int) -> None:
        self._s.set_target(replicas)

    def set_cpus(self, cpus: float) -> None:
        self._s.cpus_per_replica = float(cpus)

    def set_pool(
        self,
        replicas: dict[str, int],
        cpus: dict[str, float],
        cpusets: dict[str, list[int]] | None = None,
    ) -> None:
        self._s.set_pool(replicas, cpus, cpusets)

    def set_variant(self, ref: str) -> None:
        self._s.set_variant(ref)

    def set_info(self, info: dict[str, Any]) -> None:
        self._s.info.update(info)

    def register(self, replica: str, pid: int, node: str, cpus: float) -> float:
        """Take a new replica; answer with the CPUs its flavor gives it."""
        self._s.register(replica, pid, node, cpus)
        return self._s.cpus_for(replica)

    def unregister(self, replica: str) -> None:
        self._s.unregister(replica)

    def record(
        self,
        replica: str,
        latencies_ms: list[float],
        rejected: int,
        ongoing: int,
        cpu_s: float = 0.0,
        infer_ms: list[float] | None = None,
    ) -> float:
        """Take a replica's push; answer with the CPUs it should have, so that each poll
        is one round trip (the replica polls every 0.2 s, on the CPUs it serves on)."""
        self._s.record(replica, latencies_ms, rejected, ongoing, cpu_s, infer_ms)
        return self._s.cpus_for(replica)

    def sync(
        self,
        replica: str,
        latencies_ms: list[float],
        rejected: int,
        ongoing: int,
        cpu_s: float,
        infer_ms: list[float],
        canary: dict[str, Any],
        lane: dict[str, Any],
    ) -> dict[str, Any]:
        """A replica's whole poll in one round trip: its metrics and canary observations
        in; the CPUs it should have and the rollout assignment out."""
        self._s.record(replica, latencies_ms, rejected, ongoing, cpu_s, infer_ms)
        self._s.report_canary(replica, canary, lane)
        return {
            "cpus": self._s.cpus_for(replica),
            "cpuset": self._s.cpuset_for(replica),
            **self._s.assignment(),
        }

    def assignment(self) -> dict[str, Any]:
        return self._s.assignment()

    def start_rollout(self, ref: str, share: float) -> dict[str, Any]:
        return self._s.start_rollout(ref, share)

    def promote(self, replicas: list[str]) -> None:
        self._s.promote(replicas)

    def finish_rollout(self, promoted: bool) -> None:
        self._s.finish_rollout(promoted)

    def rollout_view(self) -> dict[str, Any]:
        return self._s.rollout_view()

    def report_queue(self, total_requests: float) -> None:
        self._s.queued_total = float(total_requests)

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]:
        return self._s.snapshot(window_s)

    def render(self) -> bytes:
        return self._s.render()
