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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: Simulated requests per rate, and the fraction discarded as warm-up (queue starts empty).
DEFAULT_REQUESTS = 200_000
BURN_IN = 0.1


@dataclass(frozen=True)
class _Draws:
    """Random draws shared by every rate: resampled service times and unit exponentials."""

    service_ms: NDArray[np.float64]
    unit_gaps: NDArray[np.float64]

    @classmethod
    def make(cls, service_ms: ArrayLike, n_requests: int, seed: int) -> _Draws:
        sample = _check_sample(service_ms)
        if n_requests < 100:
            raise ValueError(f"n_requests must be at least 100, got {n_requests}")
        rng = np.random.default_rng(seed)
        return cls(
            service_ms=rng.choice(sample, size=n_requests, replace=True),
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
    draws = _Draws.make(sample, n_requests, seed)
    return float(np.percentile(draws.sojourn_ms(rate_rps), percentile))


def capacity_rps(
    service_ms: ArrayLike,
    slo_ms: float,
    percentile: float,
    seed: int = 0,
    n_requests: int = DEFAULT_REQUESTS,
    rtol: float = 1e-3,
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
    seed, n_requests
        As in :func:`latency_percentile`.
    rtol : float
        Relative precision of the returned rate.

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
    draws = _Draws.make(sample, n_requests, seed)
    hi = saturation_rps(sample)
    lo = 0.0

    def meets(rate: float) -> bool:
        return float(np.percentile(draws.sojourn_ms(rate), percentile)) <= slo_ms

    if meets(hi * (1 - rtol)):
        return hi * (1 - rtol)
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if meets(mid):
            lo = mid
        else:
            hi = mid
    return lo
