"""Capacity of one replica under an SLO, from its measured service-time distribution.

Pure numpy, no effects: measurement lives in :mod:`edgewise.serving.profiles`.

A replica is a single FIFO server fed by Poisson arrivals at rate λ (M/G/1). With
service times S drawn from the measured sample (resampled with replacement) and
exponential inter-arrival times T, the waiting time obeys Lindley's recursion
``W[n] = max(0, W[n-1] + S[n-1] - T[n])``, which unrolls to a running minimum of partial
sums, ``W[n] = P[n] - min(P[0..n])`` with ``P[n] = Σ (S[k-1] - T[k])``: one vectorised
pass per rate. The latency (sojourn) of request n is ``W[n] + S[n]``; its percentile is
read from the simulated requests after a burn-in.

The same random draws serve every rate (common random numbers): each waiting time is
then non-decreasing in λ path by path, so the percentile is monotone in λ and the
bisection in :func:`capacity_rps` is well posed.

For checking the model against one real load test, :func:`latency_at_arrivals` runs the
same recursion over that test's own arrival times (:func:`sojourn_ms`), so arrival noise
cancels out of the comparison, and :func:`percentile_ci` gives the measured percentile's
bootstrap interval. The model is only as good as its sample: the service times must be
measured under the arrival pattern it will face (open-loop, idle gaps included; see
:mod:`edgewise.serving.profiles`), not back to back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Simulated requests per rate, and the fraction discarded as warm-up (queue starts empty).
DEFAULT_REQUESTS = 200_000
BURN_IN = 0.1
#: Block length for service samples recorded in time order (measured profiles): service
#: times of consecutive requests are correlated (a busy neighbour slows several in a row;
#: lag-1 autocorrelation 0.4-0.6 measured here), and i.i.d. resampling would understate
#: the queue they build. Resampling blocks of consecutive samples keeps that correlation.
PROFILE_BLOCK = 10


def resample(
    sample: NDArray[np.float64],
    size: int,
    rng: np.random.Generator,
    block: int = 1,
) -> NDArray[np.float64]:
    """``size`` values drawn from ``sample``: i.i.d. (``block=1``) or in blocks of
    ``block`` consecutive values at uniformly random offsets (moving-block bootstrap).
    """
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    b = min(block, sample.size)
    if b == 1:
        return rng.choice(sample, size=size, replace=True)
    starts = rng.integers(0, sample.size - b + 1, size=-(-size // b))
    return sample[(starts[:, None] + np.arange(b)).ravel()[:size]]


@dataclass(frozen=True)
class _Draws:
    """Random draws shared by every rate: resampled service times and unit exponentials."""

    service_ms: NDArray[np.float64]
    unit_gaps: NDArray[np.float64]

    @classmethod
    def make(cls, service_ms: ArrayLike, n_requests: int, seed: int, block: int = 1) -> _Draws:
        sample = _check_sample(service_ms)
        if n_requests < 100:
            raise ValueError(f"n_requests must be at least 100, got {n_requests}")
        rng = np.random.default_rng(seed)
        return cls(
            service_ms=resample(sample, n_requests, rng, block),
            unit_gaps=rng.standard_exponential(n_requests),
        )

    def sojourn_ms(self, rate_rps: float) -> NDArray[np.float64]:
        """Latency of every simulated request after the burn-in, at ``rate_rps``."""
        gaps_ms = self.unit_gaps * (1000.0 / rate_rps)
        steps = np.empty_like(self.service_ms)
        steps[0] = 0.0
        steps[1:] = self.service_ms[:-1] - gaps_ms[1:]
        walk = np.cumsum(steps)
        waiting = walk - np.minimum.accumulate(walk)
        skip = int(len(walk) * BURN_IN)
        return waiting[skip:] + self.service_ms[skip:]


def _check_sample(service_ms: ArrayLike) -> NDArray[np.float64]:
    sample = np.asarray(service_ms, dtype=float).ravel()
    if sample.size == 0:
        raise ValueError("service-time sample is empty")
    if not np.all(np.isfinite(sample)) or np.any(sample < 0):
        raise ValueError("service times must be finite and non-negative")
    if not np.any(sample > 0):
        raise ValueError("service times are all zero")
    return sample


def _check_percentile(percentile: float) -> None:
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")


def utilisation(service_ms: ArrayLike, rate_rps: float) -> float:
    """Offered load ρ = λ·E[S] of one replica (≥ 1: the queue grows without bound)."""
    return float(rate_rps * np.mean(_check_sample(service_ms)) / 1000.0)


def saturation_rps(service_ms: ArrayLike) -> float:
    """The rate at which one replica is busy all the time, 1 / E[S] (requests/s)."""
    return float(1000.0 / np.mean(_check_sample(service_ms)))


def latency_percentile(
    service_ms: ArrayLike,
    rate_rps: float,
    percentile: float,
    seed: int = 0,
    n_requests: int = DEFAULT_REQUESTS,
    block: int = 1,
) -> float:
    """Latency percentile (ms) of one FIFO replica under Poisson arrivals at ``rate_rps``.

    Parameters
    ----------
    service_ms : array-like
        Measured service times of one replica (ms), resampled with replacement.
    rate_rps : float
        Poisson arrival rate (requests/s); 0 gives the service-time percentile itself.
    percentile : float
        In (0, 100], e.g. 99.
    seed : int
        Seed of the simulation's random draws.
    n_requests : int
        Simulated requests (the first 10% are discarded as warm-up).
    block : int
        1: resample service times i.i.d.; more: in blocks of consecutive samples (for a
        sample in time order, see :data:`PROFILE_BLOCK`).

    Returns
    -------
    float
        The percentile of queueing plus service time; ``inf`` when ``rate_rps`` is at or
        above the saturation rate ``1 / E[S]``.

    """
    _check_percentile(percentile)
    sample = _check_sample(service_ms)
    if rate_rps < 0:
        raise ValueError(f"rate must be >= 0, got {rate_rps}")
    if rate_rps == 0:
        return float(np.percentile(sample, percentile))
    if utilisation(sample, rate_rps) >= 1.0:
        return float("inf")
    draws = _Draws.make(sample, n_requests, seed, block)
    return float(np.percentile(draws.sojourn_ms(rate_rps), percentile))


def capacity_rps(
    service_ms: ArrayLike,
    slo_ms: float,
    percentile: float,
    seed: int = 0,
    n_requests: int = DEFAULT_REQUESTS,
    rtol: float = 1e-3,
    block: int = 1,
) -> float:
    """Largest Poisson rate at which one replica keeps the latency percentile ≤ ``slo_ms``.

    Bisection on the rate between 0 and the saturation rate, with the same random draws
    at every step (so the simulated percentile is monotone in the rate).

    Parameters
    ----------
    service_ms : array-like
        Measured service times of one replica (ms).
    slo_ms : float
        Latency bound (ms).
    percentile : float
        SLO percentile in (0, 100], e.g. 99.
    seed, n_requests, block
        As in :func:`latency_percentile`.
    rtol : float
        Precision of the returned rate, relative to the saturation rate.

    Returns
    -------
    float
        Requests/s; 0 when even a lone request misses the SLO at that percentile.

    """
    _check_percentile(percentile)
    sample = _check_sample(service_ms)
    if slo_ms <= 0:
        raise ValueError(f"slo_ms must be positive, got {slo_ms}")
    if float(np.percentile(sample, percentile)) > slo_ms:
        return 0.0
    draws = _Draws.make(sample, n_requests, seed, block)
    hi = saturation_rps(sample)
    lo = 0.0

    def meets(rate: float) -> bool:
        return float(np.percentile(draws.sojourn_ms(rate), percentile)) <= slo_ms

    if meets(hi * (1 - rtol)):
        return hi * (1 - rtol)
    # Precision relative to the saturation rate: when even a trickle of requests misses
    # the bound in simulation (a resampled tail heavier than the sample's percentile),
    # the bisection ends at 0 instead of chasing ever smaller rates.
    resolution = rtol * hi
    while hi - lo > resolution:
        mid = 0.5 * (lo + hi)
        if meets(mid):
            lo = mid
        else:
            hi = mid
    return lo


# --------------------------------------------------------------------------- given arrivals


def sojourn_ms(arrivals_s: ArrayLike, service_ms: ArrayLike) -> NDArray[np.float64]:
    """Latency (ms) of each request of one FIFO server: exact Lindley recursion.

    Parameters
    ----------
    arrivals_s : array-like
        Arrival times (s), non-decreasing.
    service_ms : array-like
        Service time (ms) of each request, same length.

    Returns
    -------
    numpy.ndarray
        Waiting plus service time of each request (ms), the queue starting empty.

    """
    t = np.asarray(arrivals_s, dtype=float).ravel() * 1000.0
    s = np.asarray(service_ms, dtype=float).ravel()
    if t.shape != s.shape:
        raise ValueError(f"{t.size} arrivals but {s.size} service times")
    if t.size == 0:
        return np.zeros(0)
    if np.any(np.diff(t) < 0):
        raise ValueError("arrival times must be non-decreasing")
    steps = np.empty_like(s)
    steps[0] = 0.0
    steps[1:] = s[:-1] - np.diff(t)
    walk = np.cumsum(steps)
    return walk - np.minimum.accumulate(walk) + s


def percentiles_at_arrivals(
    service_ms: ArrayLike,
    arrivals_s: ArrayLike,
    percentile: float,
    seed: int = 0,
    repeats: int = 200,
    burn_in: float = BURN_IN,
    block: int = 1,
) -> NDArray[np.float64]:
    """The latency percentile (ms) of ``repeats`` simulated runs with these arrival times.

    Each run resamples service times from the measured sample and passes them through
    :func:`sojourn_ms` with the given arrivals; its percentile is read after dropping the
    first ``burn_in`` fraction, as the load test does. Their spread is how far one real
    run of this length may land from the model's mean by chance alone (which long
    services meet which bursts). ``block`` as in :func:`latency_percentile`.
    """
    _check_percentile(percentile)
    sample = _check_sample(service_ms)
    t = np.asarray(arrivals_s, dtype=float).ravel()
    if t.size == 0:
        raise ValueError("no arrivals")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    rng = np.random.default_rng(seed)
    skip = int(t.size * burn_in)
    return np.array(
        [
            np.percentile(sojourn_ms(t, resample(sample, t.size, rng, block))[skip:], percentile)
            for _ in range(repeats)
        ],
        dtype=float,
    )


class ArrivalRuns(TypedDict, total=False):
    """How :func:`percentiles_at_arrivals` simulates its runs (its keywords and defaults)."""

    seed: int
    repeats: int
    burn_in: float
    block: int


def latency_at_arrivals(
    service_ms: ArrayLike,
    arrivals_s: ArrayLike,
    percentile: float,
    **runs: Unpack[ArrivalRuns],
) -> float:
    """Predicted latency percentile (ms) of a load test with these exact arrival times.

    The model's answer for one concrete run: the mean of
    :func:`percentiles_at_arrivals`. Arrival-sampling noise thus cancels out of a
    model-versus-measurement comparison; only the service-time model is tested.
    """
    return float(np.mean(percentiles_at_arrivals(service_ms, arrivals_s, percentile, **runs)))


def percentile_ci(
    values: ArrayLike,
    percentile: float,
    level: float = 0.95,
    seed: int = 0,
    n_boot: int = 2000,
    block: int | None = None,
) -> tuple[float, float]:
    """Moving-block bootstrap confidence interval of a percentile of a latency series.

    Latencies of consecutive requests are correlated (they share busy periods), so blocks
    of ``block`` consecutive values are resampled together (default ``max(5, n // 40)``);
    an i.i.d. bootstrap would give too narrow an interval.
    """
    _check_percentile(percentile)
    x = np.asarray(values, dtype=float).ravel()
    if x.size < 2:
        raise ValueError("need at least two values for a confidence interval")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    b = min(x.size, block if block is not None else max(5, x.size // 40))
    n_blocks = -(-x.size // b)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, x.size - b + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(b)).reshape(n_boot, -1)[:, : x.size]
    boot = np.percentile(x[idx], percentile, axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return float(lo), float(hi)
