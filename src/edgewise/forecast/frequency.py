"""Season lengths implied by a series' sampling step.

Hourly data has daily and weekly seasons (24, 168), daily data a weekly one (7),
minute data a daily one (1440). A caller who knows better passes the seasons.
Pure functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["infer_season_lengths", "step_seconds"]

_DAY = 86_400.0
_MAX_SEASON = 2_016  # a week of 5-minute steps; longer seasons are left out


def step_seconds(index: pd.DatetimeIndex) -> float:
    """Typical spacing of a time index in seconds (the median difference)."""
    if len(index) < 2:
        raise ValueError("need at least two timestamps to tell the step")
    return float(np.median(np.diff(index.asi8)) / 1e9)


def _whole(x: float) -> int | None:
    r = round(x)
    return r if r >= 2 and abs(x - r) < 1e-6 else None


def infer_season_lengths(step_s: float) -> tuple[int, ...]:
    """Season lengths in steps for a sampling step of ``step_s`` seconds.

    Steps up to a day get a daily season and, when it is not too long, a weekly one
    (hourly: ``(24, 168)``; minute: ``(1440,)``; daily: ``(7,)``). Weekly data gets a
    yearly season of 52, monthly data 12, quarterly 4. Anything else: ``()``.
    """
    if step_s <= 0:
        raise ValueError(f"step must be positive, got {step_s}")
    if step_s < _DAY:
        seasons = [s for s in (_whole(_DAY / step_s), _whole(7 * _DAY / step_s)) if s]
        return tuple(s for s in seasons if s <= _MAX_SEASON)
    days = step_s / _DAY
    if abs(days - 1) < 1e-9:
        return (7,)
    if abs(days - 7) < 1e-9:
        return (52,)
    if 28 <= days <= 31:
        return (12,)
    if 89 <= days <= 92:
        return (4,)
    return ()
