"""Glue for the live serve commands: a flavor's capacity, request bodies, stored results.

``flavor_option`` finds the model's measured service-time profile for a flavor in the
knowledge base (or measures it in a real cgroup when asked) and turns it into the
:class:`FlavorOption` the policies plan with; a flavor too small for the SLO raises
:class:`FlavorTooSmall`, and :func:`first_fitting` leaves such flavors out with a note,
taking the smallest that fits (an error only when none does); ``sample_body`` makes a valid request for a
zoo model; ``store_replay`` writes a replay's summary and series to the KB (``Plan`` rows
of kind ``replay``) for the report; :class:`StateWriter` stores the live controller's
state and scaling events off its control loop, catching up after a knowledge-base
outage.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from edgewise.config import FlavorSpec
from edgewise.errors import InfeasibleError
from edgewise.serving.policies import FlavorOption
from edgewise.serving.policies.base import service_quantiles

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_FLAVOR = FlavorSpec(
    name="small",
    cpus=0.5,
    memory_mb=1024,
    price_per_hour=0.025,
    max_replicas=8,
)


#: A built-in catalog for live runs without a flavors file: :data:`DEFAULT_FLAVOR` first,
#: then larger flavors at the same price per CPU as ``examples/flavors.yaml``.
DEFAULT_FLAVORS: tuple[FlavorSpec, ...] = (
    DEFAULT_FLAVOR,
    FlavorSpec(name="medium", cpus=1.0, memory_mb=2048, price_per_hour=0.048, max_replicas=8),
    FlavorSpec(name="large", cpus=2.0, memory_mb=4096, price_per_hour=0.096, max_replicas=4),
)


class FlavorTooSmall(InfeasibleError):
    """The SLO is below what one request takes in a flavor (another may still fit)."""

    def __init__(self, flavor: str, message: str, lone_ms: float) -> None:
        super().__init__(message)
        self.flavor = flavor
        self.lone_ms = lone_ms


def too_small(
    flavor: str, service_ms: np.ndarray, *, slo_ms: float, percentile: float, takes: str
) -> FlavorTooSmall:
    """The error for a flavor whose lone request misses the SLO.

    ``takes`` says what was timed, e.g. ``"of resnet50 takes"`` or ``"takes through the
    serving path"``.
    """
    lone = float(np.percentile(service_ms, percentile))
    if lone <= slo_ms:
        # A lone request meets the SLO, but the sample's tail queues past it at any rate.
        worst = float(np.max(service_ms))
        return FlavorTooSmall(
            flavor,
            f"one replica in flavor {flavor} serves no rate within SLO {slo_ms:g} ms at "
            f"p{percentile:g}: one request {takes} p{percentile:g} {lone:.1f} ms, but the "
            f"slowest of {np.size(service_ms)} took {worst:.0f} ms and queues the requests "
            "behind it past the SLO (a stall of the host while timing? measure again)",
            lone,
        )
    return FlavorTooSmall(
        flavor,
        f"SLO {slo_ms:g} ms at p{percentile:g} is below what one request {takes} "
        f"in flavor {flavor} (p{percentile:g} {lone:.1f} ms)",
        lone,
    )


@dataclass(frozen=True)
class FlavorCapacity:
    """One replica's capacity in a flavor: what the policies plan with, and its evidence."""

    option: FlavorOption
    service_ms: np.ndarray
    source: str


def host_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def flavor_option(
    model: str,
    flavor: FlavorSpec,
    *,
    slo_ms: float,
    percentile: float,
    kb: Any,
    measure: bool = True,
    samples: int = 150,
    max_replicas: int | None = None,
    seed: int = 0,
) -> FlavorCapacity:
    """Capacity of one replica of ``model`` in ``flavor`` under the SLO, from the KB.

    A missing profile is measured (real cgroup, this host) and stored when ``measure``.
    A registry reference is looked up as the ``NAME:vN`` it resolves to in ``kb`` (the
    key ``edgewise capacity`` stores it under), whichever way the spec spells it.
    """
    from edgewise.registry import canonical_ref
    from edgewise.serving.profiles import (
        find_profile,
        profile_capacity,
        profile_flavor,
        save_profile,
    )

    model = canonical_ref(model, kb)
    with kb.snapshot() as s:
        row = find_profile(s, model, flavor.name, flavor.cpus)
        samples_ms = np.asarray(row.service_ms["samples"], dtype=float) if row else None
        capacity = profile_capacity(row, slo_ms, percentile, seed) if row else None
    source = "knowledge base"
    if samples_ms is None or capacity is None:
        if not measure:
            raise InfeasibleError(
                f"no capacity profile for {model} in flavor {flavor.name}: run "
                f"'edgewise capacity {model} --flavors FLAVORS.yaml --slo-ms {slo_ms:g}'",
            )
        prof = profile_flavor(
            model,
            flavor,
            slo_ms=slo_ms,
            percentile=percentile,
            samples=samples,
            time_budget_s=60.0,
            seed=seed,
            kb_url=getattr(kb, "url", None),
        )
        save_profile(kb, prof)
        samples_ms, capacity, source = prof.service_ms, prof.capacity_rps, "measured now"
    if capacity <= 0:
        raise too_small(
            flavor.name, samples_ms, slo_ms=slo_ms, percentile=percentile, takes=f"of {model} takes"
        )
    limit = flavor.max_replicas if max_replicas is None else min(max_replicas, flavor.max_replicas)
    return FlavorCapacity(_option(flavor, capacity, samples_ms, limit), samples_ms, source)


@dataclass(frozen=True)
class FittingFlavor(Generic[T]):
    """The smallest flavor that meets the SLO, what was found there, and the ones left out."""

    flavor: FlavorSpec
    capacity: T
    notes: tuple[str, ...] = ()
    """One line per smaller flavor left out because it is too small for the SLO."""


def first_fitting(
    flavors: Sequence[FlavorSpec], capacity_of: Callable[[FlavorSpec], T]
) -> FittingFlavor[T]:
    """The smallest of ``flavors`` whose capacity ``capacity_of`` finds, leaving out the rest.

    Parameters
    ----------
    flavors : sequence of FlavorSpec
        The candidates, tried from the fewest CPUs up.
    capacity_of : callable
        One replica's capacity in a flavor (measured, read from the knowledge base or
        probed live), or a whole run there that starts with that probe; raises
        :class:`FlavorTooSmall` for a flavor too small for the SLO.

    Returns
    -------
    FittingFlavor
        The first flavor that fits, with a note for each smaller one left out.

    Raises
    ------
    InfeasibleError
        One line when no flavor fits: the SLO and what one request takes in each.
    """
    notes: list[str] = []
    misses: list[FlavorTooSmall] = []
    for flavor in sorted(flavors, key=lambda f: f.cpus):
        try:
            cap = capacity_of(flavor)
        except FlavorTooSmall as err:
            misses.append(err)
            notes.append(f"flavor {flavor.name} left out: {err}")
            continue
        return FittingFlavor(flavor, cap, tuple(notes))
    if len(misses) == 1:
        raise misses[0]
    took = ", ".join(f"{m.flavor} {m.lone_ms:.1f} ms" for m in misses)
    raise InfeasibleError(f"no flavor fits: {misses[-1]}; one request takes {took}")


def replicas_that_fit(flavor: FlavorSpec, reserve_cpus: float = 0.6) -> int:
    """How many replicas of ``flavor`` fit on this host beside the proxy and the load."""
    return max(1, min(flavor.max_replicas, math.floor((host_cpus() - reserve_cpus) / flavor.cpus)))


def sample_body(model: str, seed: int = 0) -> tuple[bytes, str]:
    """A valid ``/predict`` body for ``model`` and its content type."""
    from edgewise.workloads.zoo import build_model

    zoo = build_model(model)
    rng = np.random.default_rng(seed)
    if zoo.kind == "text":
        import json

        words = " ".join(f"w{int(i)}" for i in rng.integers(0, 500, size=24))
        return json.dumps({"text": words}).encode(), "application/json"
    # Raw uint8 pixels: what a camera sends, a quarter of the bytes of float32 tensors
    # (the proxy copies every body twice on its way to a replica).
    arr = rng.integers(0, 256, size=tuple(zoo.input_shape), dtype=np.uint8)
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue(), "application/octet-stream"


def store_replay(
    kb: Any,
    kind: str,
    inputs: dict[str, Any],
    summary: dict[str, Any],
    series: dict[str, list[float]],
    cost: float,
) -> int:
    """Store one replay or simulated run as a ``Plan`` row (the report reads these)."""
    from edgewise.kb import models as m

    clean = {
        k: [None if (isinstance(v, float) and not math.isfinite(v)) else v for v in vals]
        for k, vals in series.items()
    }
    with kb.transaction() as s:
        row = m.Plan(
            kind=kind,
            inputs=inputs,
            decision={"summary": summary, "series": clean},
            cost=float(cost),
        )
        s.add(row)
        s.flush()
        return int(row.id)


def probe_live_service(
    url: str,
    body: bytes,
    content_type: str,
    n: int = 200,
    warmup: int = 20,
) -> np.ndarray:
    """Service times (ms) of one live replica through the whole HTTP path.

    Requests go one at a time (no queueing), so each latency is what one request costs
    the serving path: proxy, routing, decoding and the model. This is the distribution
    the queueing model needs for the deployed system, not just the model's compute.
    """
    import httpx

    out = []
    with httpx.Client(timeout=30.0) as client:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            resp = client.post(url, content=body, headers={"content-type": content_type})
            took = (time.perf_counter() - t0) * 1000.0
            if resp.status_code != 200:
                raise RuntimeError(f"probe request failed with {resp.status_code}: {resp.text}")
            if i >= warmup:
                out.append(took)
    return np.asarray(out)


def live_flavor_option(
    flavor: FlavorSpec,
    service_ms: np.ndarray,
    *,
    slo_ms: float,
    percentile: float,
    max_replicas: int,
    seed: int = 0,
) -> FlavorCapacity:
    """A FlavorOption from service times probed through the live path."""
    from edgewise.serving.capacity import capacity_rps

    cap = capacity_rps(service_ms, slo_ms, percentile, seed=seed)
    if cap <= 0:
        raise too_small(
            flavor.name,
            service_ms,
            slo_ms=slo_ms,
            percentile=percentile,
            takes="takes through the serving path",
        )
    option = _option(flavor, cap, service_ms, max_replicas)
    return FlavorCapacity(option, service_ms, "probed through the live HTTP path")


def _option(
    flavor: FlavorSpec, capacity_rps: float, service_ms: np.ndarray, max_replicas: int
) -> FlavorOption:
    """What the policies plan with: capacity, price, limits and the service distribution."""
    return FlavorOption(
        name=flavor.name,
        cpus=flavor.cpus,
        capacity_rps=float(capacity_rps),
        price_per_hour=flavor.price_per_hour,
        max_replicas=max_replicas,
        max_cpus=min(2.0 * flavor.cpus, float(host_cpus())),
        service_ms_mean=float(np.mean(service_ms)),
        service_ms_quantiles=service_quantiles(service_ms),
    )


@dataclass(frozen=True)
class WriterStats:
    """What a :class:`StateWriter` wrote, and what it could not write at first.

    Attributes
    ----------
    states_written, events_written : int
        State rows (newest state per commit) and scaling events committed.
    failures : int
        Write attempts that failed (the knowledge base locked or unreachable).
    pending : int
        States and events not written yet.
    max_lag_s : float
        Longest time (wall seconds) a record waited between the loop handing it over
        and its commit: the catch-up delay after an outage.
    """

    states_written: int
    events_written: int
    failures: int
    pending: int
    max_lag_s: float


class StateWriter:
    """Stores a controller's state and scaling events in the knowledge base off its loop.

    The control loop calls :meth:`put` (never blocks on the database); a writer thread
    commits what is pending in one transaction: the newest state (older unsaved ones are
    superseded) and every event in order. A failed write (SQLite's lock held past its
    busy timeout, a database that does not answer) keeps everything pending and is tried
    again ``retry_s`` later, so rows that could not be written during an outage appear
    once it ends. Call :meth:`flush` to write synchronously (tests, the end of a run).

    Parameters
    ----------
    kb : KnowledgeBase
        Where the ``PolicyState`` row and ``ScalingEvent`` rows go.
    run_key : str
        Key of the state row and of the events.
    policy : str
        The policy's name, stored with both.
    retry_s : float
        Wait after a failed write before the next attempt.
    """

    def __init__(self, kb: Any, run_key: str, policy: str, retry_s: float = 0.5) -> None:
        self.kb = kb
        self.run_key = run_key
        self.policy = policy
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one write at a time, events in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state: dict[str, Any] | None = None
        self._events: list[tuple[float, dict[str, Any]]] = []
        self._oldest: float | None = None  # monotonic time the oldest pending record came
        self._thread: threading.Thread | None = None
        self._states_written = 0
        self._events_written = 0
        self._failures = 0
        self._max_lag_s = 0.0

    def put(self, state: dict[str, Any], event: tuple[float, dict[str, Any]] | None) -> None:
        """Hand over the newest state and, when the decision acted, its ``(t, action)``."""
        with self._lock:
            self._state = state
            if event is not None:
                self._events.append(event)
            if self._oldest is None:
                self._oldest = time.monotonic()
        self._wake.set()

    def stats(self) -> WriterStats:
        """Counts so far (see :class:`WriterStats`)."""
        with self._lock:
            pending = len(self._events) + (self._state is not None)
            return WriterStats(
                self._states_written,
                self._events_written,
                self._failures,
                pending,
                self._max_lag_s,
            )

    def flush(self) -> bool:
        """Write what is pending now; ``False`` (and everything kept) when it failed."""
        with self._write_lock:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            state, events, oldest = self._state, self._events, self._oldest
            self._state, self._events, self._oldest = None, [], None
        if state is None and not events:
            return True
        try:
            self._write(state, events)
        except Exception as err:
            with self._lock:
                self._failures += 1
                if self._state is None:
                    self._state = state
                self._events = events + self._events
                self._oldest = oldest if self._oldest is None else min(oldest or 0.0, self._oldest)
            log.warning("knowledge base write deferred (%s): %s", type(err).__name__, err)
            return False
        with self._lock:
            self._states_written += state is not None
            self._events_written += len(events)
            if oldest is not None:
                self._max_lag_s = max(self._max_lag_s, time.monotonic() - oldest)
        return True

    def _write(
        self, state: dict[str, Any] | None, events: list[tuple[float, dict[str, Any]]]
    ) -> None:
        from sqlalchemy import select

        from edgewise.kb import models as m

        with self.kb.transaction() as s:
            if state is not None:
                row = s.scalars(
                    select(m.PolicyState).where(m.PolicyState.key == self.run_key)
                ).first()
                if row is None:
                    s.add(m.PolicyState(key=self.run_key, policy=self.policy, state=state))
                else:
                    row.state = state
                    row.policy = self.policy
            for t, action in events:
                s.add(m.ScalingEvent(run_key=self.run_key, t=t, policy=self.policy, action=action))

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="edgewise-kb-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if not self.flush():
                self._stop.wait(self.retry_s)
                self._wake.set()

    def close(self, timeout_s: float = 10.0) -> WriterStats:
        """Stop the thread and write what is left, trying for up to ``timeout_s``."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=timeout_s)
            self._thread = None
        deadline = time.monotonic() + timeout_s
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(min(self.retry_s, max(0.0, deadline - time.monotonic())))
        return self.stats()
