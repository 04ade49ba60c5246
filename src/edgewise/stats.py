"""Shared statistics: arrivals, latency percentiles and summaries, conformal quantiles.

One home for the small numpy functions every pillar measures or plans with, so that
the profile pillar, the serving load tests, the simulator and the re-training
background apps draw arrivals and summarise latencies the same way. Pure functions;
randomness comes in as a seed or a :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES: tuple[str, ...] = ("p50", "p95", "p99")


def poisson_arrivals(
    rate_per_s: np.ndarray,
    bin_s: float,
    seed: int | np.random.Generator,
    start_s: float = 0.0,
) -> np.ndarray:
    """Sorted arrival times (s) of a Poisson process whose rate is constant in each bin.

    The process is simulated exactly by drawing each bin's count from a Poisson law
    with mean ``rate * bin_s`` and placing that many arrivals uniformly inside the bin,
    so sub-bin structure is synthetic (uniform), whatever the trace.

    Parameters
    ----------
    rate_per_s : numpy.ndarray
        Non-negative finite request rate of each consecutive bin, in requests/s.
    bin_s : float
        Length of one bin in seconds (> 0).
    seed : int or numpy.random.Generator
        Randomness source; the same seed gives the same arrivals.
    start_s : float
        Time of the start of the first bin.

    Returns
    -------
    numpy.ndarray
        Float64 arrival times in ``[start_s, start_s + len(rate_per_s) * bin_s)``, sorted.
    """
    rate = np.asarray(rate_per_s, dtype=float).ravel()
    if not bin_s > 0 or not np.isfinite(bin_s):
        raise ValueError(f"bin_s must be a positive finite number, got {bin_s}")
    if rate.size and (not np.all(np.isfinite(rate)) or rate.min() < 0):
        raise ValueError("rate_per_s must be finite and non-negative")
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rate * bin_s)
    bins = np.repeat(np.arange(rate.size), counts)
    times = start_s + (bins + rng.random(bins.size)) * bin_s
    times.sort()
    return times


def poisson_times(
    rate_rps: float,
    seed: int | np.random.Generator,
    *,
    n: int | None = None,
    seconds: float | None = None,
) -> np.ndarray:
    """Send times (s, from 0) of a homogeneous Poisson process at ``rate_rps``.

    Give exactly one of ``n`` (the first ``n`` arrivals) or ``seconds`` (every arrival
    in ``[0, seconds)``). Inter-arrival gaps are i.i.d. exponential draws.
    """
    if not rate_rps > 0 or not np.isfinite(rate_rps):
        raise ValueError(f"rate must be a positive finite number, got {rate_rps}")
    if (n is None) == (seconds is None):
        raise ValueError("give exactly one of n and seconds")
    rng = np.random.default_rng(seed)
    if n is not None:
        return np.cumsum(rng.standard_exponential(int(n))) / rate_rps
    assert seconds is not None
    chunk = int(rate_rps * seconds * 1.5 + 20)
    t = np.cumsum(rng.standard_exponential(chunk)) / rate_rps
    while t[-1] < seconds:
        t = np.concatenate([t, t[-1] + np.cumsum(rng.standard_exponential(chunk)) / rate_rps])
    return t[t < seconds]


def expected_arrivals(rate_per_s: np.ndarray, bin_s: float) -> float:
    """Integral of the rate: the mean number of arrivals :func:`poisson_arrivals` draws."""
    return float(np.sum(np.asarray(rate_per_s, dtype=float)) * bin_s)


def arrival_counts(
    arrivals_s: np.ndarray, bin_s: float, n_bins: int, start_s: float = 0.0
) -> np.ndarray:
    """Number of arrivals in each of ``n_bins`` bins of ``bin_s`` seconds from ``start_s``."""
    edges = start_s + bin_s * np.arange(n_bins + 1)
    counts, _ = np.histogram(np.asarray(arrivals_s, dtype=float), bins=edges)
    return counts


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of a latency sample in ms; ``n`` the sample size (NaNs when empty)."""

    p50: float
    p95: float
    p99: float
    mean: float
    n: int

    def as_dict(self) -> dict[str, float]:
        """The summary as a plain ``{p50, p95, p99, mean, n}`` dict (for JSON)."""
        return {k: float(v) if k != "n" else v for k, v in asdict(self).items()}


def summarise_latencies(latencies_ms: Sequence[float] | np.ndarray) -> LatencySummary:
    """p50/p95/p99/mean (ms) and the count of a latency sample; NaNs for an empty one."""
    a = np.asarray(latencies_ms, dtype=float).ravel()
    if a.size == 0:
        nan = float("nan")
        return LatencySummary(nan, nan, nan, nan, 0)
    p50, p95, p99 = np.quantile(a, [0.50, 0.95, 0.99])
    return LatencySummary(float(p50), float(p95), float(p99), float(a.mean()), int(a.size))


def latency_summary(latencies_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
    """:func:`summarise_latencies` as a ``{p50, p95, p99, mean, n}`` dict (for JSON)."""
    return summarise_latencies(latencies_ms).as_dict()


def conformal_quantile(scores: np.ndarray, prob: float) -> float:
    """Finite-sample-corrected empirical quantile of ``scores`` at ``prob``.

    For an upper quantile (``prob > 0.5``) this is the ``ceil((n + 1) prob)``-th smallest
    score (split conformal); a lower quantile mirrors it. With too few scores for the
    requested probability the extreme score is returned.
    """
    s = np.sort(np.asarray(scores, dtype=float).ravel())
    n = s.shape[0]
    if n == 0:
        raise ValueError("no scores to take a quantile of")
    if prob >= 0.5:
        k = int(np.ceil((n + 1) * prob))
        return float(s[min(k, n) - 1])
    k = int(np.floor((n + 1) * prob))
    return float(s[max(k, 1) - 1])
