"""Per-request arrival times from a binned rate: a non-homogeneous Poisson process.

Pure numpy: the rate is piecewise constant over bins of ``bin_s`` seconds, so the
process is simulated exactly by drawing each bin's count from a Poisson law with mean
``rate * bin_s`` and placing that many arrivals uniformly inside the bin. Sub-bin
structure is therefore synthetic (uniform), whatever the trace.
"""

from __future__ import annotations

import numpy as np


def poisson_arrivals(
    rate_per_s: np.ndarray,
    bin_s: float,
    seed: int | np.random.Generator,
    start_s: float = 0.0,
) -> np.ndarray:
    """Sorted arrival times (s) of a Poisson process whose rate is constant in each bin.

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
