"""The load driver: sample a running replica's service times, and load-test it.

The effect side of profiling (it sends requests to a :class:`~.process.Replica` and reads
the wall clock); the verdict is the pure :func:`.compare.compare_latency`.

* **service times** (:func:`collect_service_times`): open-loop Poisson requests at a
  moderate load (half the replica's saturation rate by default); a request's service time
  is its completion minus the moment it could begin (its due time, or the previous
  completion if the replica was busy), so inference, pipe I/O, wake-up after idle and
  CPU-quota throttling are all in it, mixed in the proportions that real traffic
  produces. A CFS quota makes service depend on the arrival pattern (after an idle gap
  the group has this period's unused quota; back to back it has spent it), which
  back-to-back bursts alone would miss;
* **validation** (:func:`validate_capacity`): an open-loop Poisson load at a fraction of
  the derived capacity; each request is written at its due time whatever the replica
  does, and its latency runs from the due time to the replica's completion, so a slow
  replica cannot hide its queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgewise.serving.profiles.compare import compare_latency, load_test_requests
from edgewise.serving.profiles.process import Replica
from edgewise.serving.profiles.records import LoadTest
from edgewise.stats import poisson_times

#: Fewest samples a time budget may stop at.
MIN_SAMPLES = 30

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase is 'start', 'service' or 'validate'."""


def collect_service_times(
    replica: Replica,
    samples: int,
    warmup: int = 20,
    time_budget_s: float | None = None,
    chunk: int = 25,
    progress: Progress | None = None,
    load: float | None = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """At least ``samples`` service times (ms), or fewer (≥ 30) if the budget runs out.

    With ``load`` (the default), requests arrive open-loop as a Poisson process at
    ``load`` times the replica's saturation rate (estimated from the warm-up burst and
    then from the samples so far), in chunks of ``chunk`` requests, and each request's
    service time is :meth:`~.exchange.Exchange.service_ms`: completion minus the moment it
    could begin. Requests thus meet the replica both idle and busy, as under real
    traffic; back-to-back bursts alone measure a different service (warm thread pools, a
    CPU quota already spent). ``load=None`` measures back-to-back bursts instead.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if load is not None and not 0 < load < 1:
        raise ValueError(f"load must be in (0, 1), got {load}")
    first = replica.burst(max(warmup, 3))
    rng = np.random.default_rng(seed)
    got: list[np.ndarray] = []
    n = 0
    began = time.monotonic()
    while n < samples:
        k = min(chunk, samples - n)
        if load is None:
            part = replica.burst(k)
        else:
            mean_ms = float(np.mean(np.concatenate(got))) if got else float(np.median(first))
            gaps = rng.standard_exponential(k) * mean_ms / load / 1000.0
            part = replica.run_arrivals(np.cumsum(gaps)).service_ms()
        got.append(part)
        n += part.size
        if progress is not None:
            progress("service", n, samples)
        out_of_time = time_budget_s is not None and time.monotonic() - began > time_budget_s
        if out_of_time and n >= min(MIN_SAMPLES, samples):
            break
    return np.concatenate(got)


def validate_capacity(
    replica: Replica,
    service_ms: np.ndarray,
    rate_rps: float,
    percentile: float,
    requests: int | None = None,
    max_duration_s: float = 600.0,
    seed: int = 0,
) -> LoadTest:
    """Open-loop Poisson load at ``rate_rps``: measured vs predicted latency percentile.

    Runs ``requests`` requests (default: as many as the percentile needs to be conclusive,
    :func:`~.compare.requests_for_percentile` after the burn-in), but no longer than
    ``max_duration_s`` (at least 50 requests); the first 10% are dropped as warm-up, in
    the measurement and in the model. See :func:`~.compare.compare_latency`.
    """
    if requests is None:
        requests = load_test_requests(percentile)
    n = max(50, min(requests, int(rate_rps * max_duration_s)))
    arrivals = poisson_times(rate_rps, seed + 1, n=n)
    run = replica.run_arrivals(arrivals)
    return compare_latency(service_ms, run, rate_rps, percentile, seed)
