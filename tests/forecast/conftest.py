"""Synthetic series for the forecasting tests."""

from __future__ import annotations

import numpy as np


def periodic_series(
    n: int, period: int, noise: float, seed: int, level: float = 50.0
) -> np.ndarray:
    """``level`` plus a fixed random pattern of length ``period`` plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    pattern = level * (1.0 + 0.6 * np.sin(2 * np.pi * np.arange(period) / period))
    pattern = pattern + rng.normal(0.0, 0.2 * level, period)
    return np.clip(pattern[np.arange(n) % period] + rng.normal(0.0, noise, n), 0.0, None)


def seasonal_random_walk(n: int, period: int, step: float, seed: int) -> np.ndarray:
    """``y[t] = y[t - period] + noise``: the seasonal naive forecast is optimal."""
    rng = np.random.default_rng(seed)
    y = np.empty(n)
    y[:period] = 100.0 + 40.0 * np.sin(2 * np.pi * np.arange(period) / 24)
    for t in range(period, n):
        y[t] = y[t - period] + rng.normal(0.0, step)
    return y
