"""Input a forecaster should notice: a constant series, one too short for its longest
season, a level shift at the very end.

Each check is a pure function of the series returning what it found (or ``None``), so
that :class:`~edgewise.forecast.select.AutoForecaster` can fall back to something sane
and say what it did, instead of failing or forecasting NaN.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["is_constant", "level_shift_at_end", "short_series_note"]

_SHIFT_RATIO = 1.5  # a level change smaller than this is not called a shift
_SHIFT_MARGIN = 1.5  # ... nor one within 1.5x the largest change seen before


def is_constant(y: np.ndarray) -> bool:
    """Whether every value of ``y`` is the same."""
    return bool(np.ptp(np.asarray(y, dtype=float)) == 0.0)


def short_series_note(n: int, seasons: tuple[int, ...]) -> str | None:
    """A note when ``n`` points are fewer than two of the longest season, else ``None``."""
    longest = seasons[-1]
    if n >= 2 * longest:
        return None
    usable = [s for s in seasons if 2 * s <= n]
    kept = ",".join(map(str, usable)) or "none"
    return (
        f"series of {n} points is shorter than two longest seasons ({2 * longest}): "
        f"only candidates of seasons {kept} were tried"
    )


def level_shift_at_end(y: np.ndarray, short: int, long: int) -> float | None:
    """Ratio of the last ``short`` points' level to the same points a season earlier,
    when it is a shift unlike any seen before; else ``None``.

    Every block of ``short`` points is compared with the block one ``long`` season
    earlier (one ``short`` season where the series is too short); the last block's
    log ratio is a shift when it exceeds ``log 1.5`` and 1.5 times the largest of the
    earlier blocks' but the one just before (a holiday seen before does not count as a
    shift; the block just before may hold the start of the same shift).

    Parameters
    ----------
    y : numpy.ndarray
        The series.
    short, long : int
        Shortest and longest season lengths.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    lag = long if n >= long + 4 * short else short
    blocks = (n - lag) // short
    if blocks < 4:
        return None
    floor = 0.05 * float(np.mean(np.abs(y))) + 1e-9
    ends = n - short * np.arange(blocks)
    logs = np.array(
        [
            math.log(
                (abs(float(y[e - short : e].mean())) + floor)
                / (abs(float(y[e - short - lag : e - lag].mean())) + floor)
            )
            for e in ends
        ]
    )
    # the block before the last may hold the start of the same shift: not a precedent
    last, before = abs(logs[0]), float(np.abs(logs[2:]).max())
    if last > math.log(_SHIFT_RATIO) and last > _SHIFT_MARGIN * before:
        return float(math.exp(logs[0]))
    return None
