"""Capacity profiles: measure one replica's service times in a flavor, derive and check capacity.

This is the effect side of :mod:`edgewise.serving.capacity`. A replica is a child process
started inside a real cgroup with the flavor's CPU quota and memory limit
(:class:`edgewise.isolation.CGroup`), running ``max(1, round(cpus))`` torch threads. The
parent talks to it over pipes, one line per request:

* **service times**: a burst of back-to-back requests keeps the replica busy; the gap
  between consecutive completions is one request's service time as the queue sees it
  (inference, pipe I/O and any CPU-quota throttling included);
* **validation**: an open-loop Poisson load at a fraction of the derived capacity; each
  request is written at its scheduled time whatever the replica does, and its latency
  runs from the scheduled time to the replica's completion (``CLOCK_MONOTONIC`` is shared
  by both processes), so a slow replica cannot hide its queue. The measured percentile
  is compared with :func:`edgewise.serving.capacity.latency_percentile`.

Results go to the knowledge base as :class:`edgewise.kb.models.CapacityProfile` rows
(:func:`save_profile`); :func:`find_profile` reads them back for the planner.

Run as ``python -m edgewise.serving.profiles --model NAME ...`` this module is the
replica itself (:func:`replica_main`).
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from edgewise.errors import EdgewiseError, EnvironmentProblem
from edgewise.serving.capacity import BURN_IN, capacity_rps, latency_percentile

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from edgewise.config import FlavorSpec
    from edgewise.isolation import CGroup
    from edgewise.kb import KnowledgeBase
    from edgewise.kb.models import CapacityProfile

#: Marker the replica prints once its model is built and warm.
READY = b"READY"
#: Fewest samples a time budget may stop at.
MIN_SAMPLES = 30

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase is 'start', 'service' or 'validate'."""


class MissingProfileError(EdgewiseError):
    """No capacity profile in the knowledge base for a (model, flavor) the planner needs."""


def replica_threads(cpus: float) -> int:
    """Torch threads for a replica with ``cpus`` CPUs: ``max(1, round(cpus))``."""
    if not cpus > 0:
        raise ValueError(f"cpus must be positive, got {cpus}")
    return max(1, round(cpus))


# --------------------------------------------------------------------------- replica side


def _spin_service(mean_ms: float, seed: int) -> Callable[[], None]:
    """A synthetic service: burn an exponential amount of this thread's CPU time."""
    rng = np.random.default_rng(seed)

    def serve() -> None:
        need = int(rng.exponential(mean_ms) * 1e6)
        end = time.thread_time_ns() + need
        while time.thread_time_ns() < end:
            pass

    return serve


def _model_service(model: str, batch_size: int, threads: int, seed: int) -> Callable[[], None]:
    from edgewise.workloads.runner import InferenceRunner

    runner = InferenceRunner(model, batch_size=batch_size, threads=threads, seed=seed)
    batch = runner.batch

    def serve() -> None:
        runner.infer(batch)

    return serve


def replica_main(argv: Sequence[str] | None = None) -> int:
    """Replica loop: read one request id per line, serve it, answer ``id start_ns done_ns``.

    ``--model spin --spin-ms M`` replaces inference by an exponential CPU burn of mean M
    ms (a replica with a known M/M/1 behaviour, for checking the harness).
    """
    parser = argparse.ArgumentParser(prog="edgewise-replica")
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--spin-ms", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.model == "spin":
        serve = _spin_service(args.spin_ms, args.seed)
    else:
        serve = _model_service(args.model, args.batch_size, args.threads, args.seed)
    for _ in range(args.warmup):
        serve()
    out = sys.stdout.buffer
    out.write(READY + b"\n")
    out.flush()
    for line in sys.stdin.buffer:
        rid = line.strip()
        if not rid or rid == b"Q":
            break
        start = time.monotonic_ns()
        serve()
        done = time.monotonic_ns()
        out.write(b"%s %d %d\n" % (rid, start, done))
        out.flush()
    return 0


# --------------------------------------------------------------------------- parent side


@dataclass(frozen=True)
class ReplicaSpec:
    """What a replica process runs: a zoo model (or ``"spin"``) with a thread count."""

    model: str
    batch_size: int = 1
    threads: int = 1
    seed: int = 0
    warmup: int = 10
    spin_ms: float = 1.0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "edgewise.serving.profiles",
            "--model",
            self.model,
            "--batch-size",
            str(self.batch_size),
            "--threads",
            str(self.threads),
            "--seed",
            str(self.seed),
            "--warmup",
            str(self.warmup),
            "--spin-ms",
            repr(self.spin_ms),
        ]


class Replica:
    """A running replica process (made by :func:`start_replica`)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], label: str) -> None:
        self.proc = proc
        self._stderr = stderr
        self.label = label
        self._next_id = 0
        self._lock = threading.Lock()

    def _died(self) -> EnvironmentProblem:
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace").strip().splitlines()
        last = tail[-1] if tail else "no output"
        try:
            code: int | None = self.proc.wait(timeout=5.0)  # EOF comes just before the exit
        except subprocess.TimeoutExpired:
            code = None
        hint = " (killed: memory limit of the flavor?)" if code in (-9, 137) else ""
        return EnvironmentProblem(f"replica {self.label} exited with {code}{hint}: {last}")

    def wait_ready(self, timeout_s: float) -> None:
        assert self.proc.stdout is not None
        result: list[bytes] = []
        reader = threading.Thread(
            target=lambda: result.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout_s)
        if not result:
            raise EnvironmentProblem(f"replica {self.label} not ready after {timeout_s:.0f} s")
        if result[0].strip() != READY:
            raise self._died()

    def _ids(self, n: int) -> list[int]:
        with self._lock:
            first = self._next_id
            self._next_id += n
        return list(range(first, first + n))

    def _send_all(self, ids: Sequence[int], at_ns: Sequence[int] | None) -> None:
        assert self.proc.stdin is not None
        pipe = self.proc.stdin
        try:
            if at_ns is None:
                pipe.write(b"".join(b"%d\n" % i for i in ids))
                pipe.flush()
                return
            for rid, t in zip(ids, at_ns, strict=True):
                delay = (t - time.monotonic_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
                pipe.write(b"%d\n" % rid)
                pipe.flush()
        except (BrokenPipeError, ValueError):
            pass  # the replica died; the reader reports it

    def _exchange(self, n: int, at_ns: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Send ``n`` requests (all at once, or at ``at_ns``); (start_ns, done_ns) per request."""
        assert self.proc.stdout is not None
        ids = self._ids(n)
        index = {rid: k for k, rid in enumerate(ids)}
        start = np.zeros(n, dtype=np.int64)
        done = np.zeros(n, dtype=np.int64)
        sender = threading.Thread(target=self._send_all, args=(ids, at_ns), daemon=True)
        sender.start()
        for _ in range(n):
            line = self.proc.stdout.readline()
            parts = line.split()
            if len(parts) != 3:
                raise self._died()
            k = index[int(parts[0])]
            start[k] = int(parts[1])
            done[k] = int(parts[2])
        sender.join()
        return start, done

    def burst(self, n: int) -> np.ndarray:
        """Service times (ms) of ``n`` back-to-back requests: gaps between completions."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        start, done = self._exchange(n, None)
        order = np.argsort(done)
        done = done[order]
        first = done[0] - start[order][0]
        return np.concatenate([[first], np.diff(done)]).astype(float) / 1e6

    def open_loop(self, arrivals_s: np.ndarray, lead_s: float = 0.05) -> np.ndarray:
        """Latency (ms) of requests sent at ``arrivals_s`` seconds from now (+ ``lead_s``)."""
        arrivals = np.asarray(arrivals_s, dtype=float)
        if arrivals.size == 0:
            return np.zeros(0)
        t0 = time.monotonic_ns() + int(lead_s * 1e9)
        at_ns = (t0 + np.round(arrivals * 1e9)).astype(np.int64)
        _, done = self._exchange(arrivals.size, [int(t) for t in at_ns])
        return (done - at_ns).astype(float) / 1e6

    def close(self, timeout_s: float = 5.0) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"Q\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


@contextmanager
def start_replica(
    spec: ReplicaSpec, cgroup: CGroup | None = None, ready_timeout_s: float = 180.0
) -> Iterator[Replica]:
    """Run a replica process (inside ``cgroup`` when given) until the block ends."""
    from edgewise.isolation import spawn_in_cgroup

    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Replica.close
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(spec.threads)
    kwargs: dict[str, Any] = {
        "stdin": subprocess.PIPE,
        "stdout": subprocess.PIPE,
        "stderr": stderr,
        "env": env,
    }
    cmd = spec.command()
    proc = spawn_in_cgroup(cmd, cgroup, **kwargs) if cgroup else subprocess.Popen(cmd, **kwargs)
    replica = Replica(proc, stderr, f"{spec.model}")
    try:
        replica.wait_ready(ready_timeout_s)
        yield replica
    finally:
        replica.close()


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class FlavorProfile:
    """Service times of one model in one flavor and the capacity they give."""

    model: str
    flavor: str
    cpus: float
    batch_size: int
    threads: int
    isolated: bool
    service_ms: np.ndarray
    slo_ms: float
    percentile: float
    capacity_rps: float
    validation: dict[str, Any] = field(default_factory=dict)

    def service_summary(self, keep_samples: bool = True) -> dict[str, Any]:
        s = self.service_ms
        p50, p95, p99 = (float(v) for v in np.percentile(s, [50, 95, 99]))
        out: dict[str, Any] = {
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "mean": float(s.mean()),
            "n": int(s.size),
            "threads": self.threads,
            "isolated": self.isolated,
        }
        if keep_samples:
            out["samples"] = [round(float(v), 4) for v in s]
        return out


def collect_service_times(
    replica: Replica,
    samples: int,
    warmup: int = 20,
    time_budget_s: float | None = None,
    chunk: int = 25,
    progress: Progress | None = None,
) -> np.ndarray:
    """At least ``samples`` service times (ms), or fewer (≥ 30) if the budget runs out."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if warmup > 0:
        replica.burst(warmup)
    got: list[np.ndarray] = []
    n = 0
    began = time.monotonic()
    while n < samples:
        part = replica.burst(min(chunk, samples - n))
        got.append(part)
        n += part.size
        if progress is not None:
            progress("service", n, samples)
        out_of_time = time_budget_s is not None and time.monotonic() - began > time_budget_s
        if out_of_time and n >= min(MIN_SAMPLES, samples):
            break
    return np.concatenate(got)


def poisson_arrivals_s(rate_rps: float, n: int, seed: int) -> np.ndarray:
    """``n`` arrival times (s) of a Poisson process at ``rate_rps``, starting at 0."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_exponential(n)) / rate_rps


def validate_capacity(
    replica: Replica,
    service_ms: np.ndarray,
    rate_rps: float,
    percentile: float,
    requests: int = 1000,
    max_duration_s: float = 60.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Open-loop Poisson load at ``rate_rps``: measured vs predicted latency percentile.

    Runs ``min(requests, rate·max_duration_s)`` requests (at least 50); the first 10% are
    dropped as warm-up, as in the model.
    """
    n = max(50, min(requests, int(rate_rps * max_duration_s)))
    arrivals = poisson_arrivals_s(rate_rps, n, seed)
    latency = replica.open_loop(arrivals)
    kept = latency[int(len(latency) * BURN_IN) :]
    measured = float(np.percentile(kept, percentile))
    predicted = latency_percentile(service_ms, rate_rps, percentile, seed=seed)
    return {
        "rate_rps": float(rate_rps),
        "requests": int(n),
        "duration_s": float(arrivals[-1]),
        "measured_ms": measured,
        "predicted_ms": predicted,
        "measured_p50_ms": float(np.percentile(kept, 50)),
        "predicted_p50_ms": latency_percentile(service_ms, rate_rps, 50.0, seed=seed),
        "rel_error": (predicted - measured) / measured,
    }


def profile_flavor(
    model: str,
    flavor: FlavorSpec,
    *,
    slo_ms: float,
    percentile: float = 99.0,
    batch_size: int = 1,
    samples: int = 200,
    warmup: int = 20,
    time_budget_s: float | None = 120.0,
    validate: bool = False,
    load_fraction: float = 0.8,
    validate_requests: int = 1000,
    validate_max_s: float = 60.0,
    seed: int = 0,
    progress: Progress | None = None,
    spin_ms: float = 1.0,
    cpu_weight: int | None = 1000,
) -> FlavorProfile:
    """Measure ``model`` in ``flavor`` (real cgroup) and derive its capacity under the SLO.

    Parameters
    ----------
    model : str
        Zoo model name (``"spin"``: synthetic exponential CPU burn of mean ``spin_ms``).
    flavor : FlavorSpec
        CPU quota, memory limit of the replica's cgroup.
    slo_ms, percentile : float
        The latency bound and its percentile.
    samples, warmup, time_budget_s
        Service-time sample size, discarded warm-up requests, time budget (stops early,
        with at least 30 samples).
    validate : bool
        Also run an open-loop load test at ``load_fraction`` of the capacity.
    seed : int
        Seeds the model weights, the capacity simulation and the load's arrivals.
    progress : callable, optional
        ``progress(phase, done, total)``.
    cpu_weight : int, optional
        CPU weight of the replica's group (v2 scale, default 100): a flavor's CPUs are
        reserved, so on a shared host the replica should reach its quota.
    """
    from edgewise.isolation import CGroup

    threads = replica_threads(flavor.cpus)
    spec = ReplicaSpec(model, batch_size, threads, seed, spin_ms=spin_ms)
    label = f"capacity-{model}-{flavor.name}"
    group = CGroup(label, cpus=flavor.cpus, memory_mb=flavor.memory_mb, cpu_weight=cpu_weight)
    with group as cg:
        if progress is not None:
            progress("start", 0, samples)
        with start_replica(spec, cg) as replica:
            service = collect_service_times(
                replica, samples, warmup, time_budget_s, progress=progress
            )
            capacity = capacity_rps(service, slo_ms, percentile, seed=seed)
            validation: dict[str, Any] = {}
            if validate and capacity > 0:
                if progress is not None:
                    progress("validate", 0, 1)
                validation = validate_capacity(
                    replica,
                    service,
                    load_fraction * capacity,
                    percentile,
                    validate_requests,
                    validate_max_s,
                    seed,
                )
                validation["load_fraction"] = load_fraction
                if progress is not None:
                    progress("validate", 1, 1)
        isolated = cg.isolated
    return FlavorProfile(
        model=model,
        flavor=flavor.name,
        cpus=flavor.cpus,
        batch_size=batch_size,
        threads=threads,
        isolated=isolated,
        service_ms=service,
        slo_ms=slo_ms,
        percentile=percentile,
        capacity_rps=capacity,
        validation=validation,
    )


# --------------------------------------------------------------------------- knowledge base


def host_name() -> str:
    return socket.gethostname()


def save_profile(kb: KnowledgeBase, profile: FlavorProfile, host: str | None = None) -> int:
    """Store ``profile`` as a CapacityProfile row; returns its id."""
    from edgewise.kb import models as m

    row = m.CapacityProfile(
        model=profile.model,
        flavor=profile.flavor,
        batch_size=profile.batch_size,
        host=host or host_name(),
        cpus=profile.cpus,
        service_ms=profile.service_summary(),
        slo_ms=profile.slo_ms,
        percentile=profile.percentile,
        capacity_rps=profile.capacity_rps,
        validation=profile.validation,
    )
    with kb.transaction() as s:
        s.add(row)
        s.flush()
        return int(row.id)


def find_profile(
    session: Session,
    model: str,
    flavor: str,
    cpus: float,
    batch_size: int = 1,
    host: str | None = None,
) -> CapacityProfile | None:
    """Newest profile of (model, flavor, batch) measured at ``cpus``; this host's first."""
    from sqlalchemy import select

    from edgewise.kb import models as m

    rows = session.scalars(
        select(m.CapacityProfile)
        .where(
            m.CapacityProfile.model == model,
            m.CapacityProfile.flavor == flavor,
            m.CapacityProfile.batch_size == batch_size,
        )
        .order_by(m.CapacityProfile.id.desc())
    ).all()
    rows = [
        r for r in rows if math.isclose(r.cpus, cpus, rel_tol=1e-9) and r.service_ms.get("samples")
    ]
    here = host or host_name()
    for r in rows:
        if r.host == here:
            return r
    return rows[0] if rows else None


def profile_capacity(
    row: CapacityProfile, slo_ms: float, percentile: float, seed: int = 0
) -> float:
    """Capacity of a stored profile under an SLO (stored value when the SLO is the same)."""
    if math.isclose(row.slo_ms, slo_ms) and math.isclose(row.percentile, percentile):
        return float(row.capacity_rps)
    return capacity_rps(
        np.asarray(row.service_ms["samples"], dtype=float), slo_ms, percentile, seed
    )


if __name__ == "__main__":
    raise SystemExit(replica_main())
