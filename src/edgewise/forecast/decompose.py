"""Multiple seasonal-trend decomposition by LOESS (MSTL) on statsmodels' STL.

The algorithm of statsforecast's ``mstl`` (Bandara, Hyndman and Bergmeir, 2021, as R's
``forecast::mstl``): each season's component is re-estimated by an STL of the series
with the other components removed, shortest season first, twice over; the seasonal
windows are R's 11, 15, 19, ... and the seasonal LOESS is of degree 0. Unlike
statsforecast's, the STL inner loop count is a parameter: statsmodels runs 5 inner
iterations without robustness weights where R's ``stl`` runs 2, and the inner loops are
nearly all of an MSTL fit's cost (eight weeks of hourly data with the default LOESS
steps: about 15 ms of process time with 5, 6 ms with 2, here). Pure computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Decomposition", "mstl_decompose", "repeat_last_season"]


@dataclass(frozen=True)
class Decomposition:
    """Seasonal components and the seasonally adjusted series of an MSTL.

    Attributes
    ----------
    seasons : tuple of int
        Season lengths, shortest first.
    seasonal : numpy.ndarray
        One component per season, shape ``(len(seasons), n)``.
    trend : numpy.ndarray
        The trend of the last STL, shape ``(n,)``.
    adjusted : numpy.ndarray
        The series less every seasonal component (trend plus remainder).
    """

    seasons: tuple[int, ...]
    seasonal: np.ndarray
    trend: np.ndarray
    adjusted: np.ndarray

    def seasonal_forecast(self, h: int) -> np.ndarray:
        """Sum over the seasons of each component's last season repeated ``h`` steps."""
        return np.sum(
            [repeat_last_season(c, s, h) for c, s in zip(self.seasonal, self.seasons, strict=True)],
            axis=0,
        )


def repeat_last_season(component: np.ndarray, season: int, h: int) -> np.ndarray:
    """The last ``season`` values of ``component`` repeated to ``h`` steps."""
    last = np.asarray(component, dtype=float)[-season:]
    return np.asarray(np.resize(last, h))


def mstl_decompose(
    y: np.ndarray,
    season_lengths: Sequence[int],
    *,
    iterate: int = 2,
    inner_iter: int = 2,
    stl_kwargs: dict[str, Any] | None = None,
) -> Decomposition:
    """Decompose ``y`` into one seasonal component per season, trend and remainder.

    Parameters
    ----------
    y : numpy.ndarray
        Finite values, at least two longest seasons of them.
    season_lengths : sequence of int
        Season lengths above 1.
    iterate : int
        Passes over the seasons (one when there is a single season).
    inner_iter : int
        STL inner loop iterations (R's default without robustness weights: 2).
    stl_kwargs : dict, optional
        Further arguments of :class:`statsmodels.tsa.seasonal.STL` (``*_jump``, ...);
        ``period`` and ``seasonal`` are set here.

    Returns
    -------
    Decomposition
        The components; ``adjusted`` is what the trend model is fitted on.
    """
    from statsmodels.tsa.seasonal import STL

    seasons = tuple(sorted(int(s) for s in season_lengths))
    if not seasons or seasons[0] < 2:
        raise ValueError(f"MSTL needs season lengths above 1, got {list(season_lengths)}")
    if inner_iter < 1 or iterate < 1:
        raise ValueError(f"iterate and inner_iter must be at least 1, got {iterate}, {inner_iter}")
    kwargs = {"seasonal_deg": 0, **(stl_kwargs or {})}
    windows = 7 + 4 * np.arange(1, len(seasons) + 1)
    seasonal = np.zeros((len(seasons), len(y)))
    adjusted = np.asarray(y, dtype=float).copy()
    trend = adjusted
    for _ in range(iterate if len(seasons) > 1 else 1):
        for i, season in enumerate(seasons):
            adjusted = adjusted + seasonal[i]
            fit = STL(adjusted, period=season, seasonal=int(windows[i]), **kwargs).fit(
                inner_iter=inner_iter
            )
            seasonal[i] = fit.seasonal
            adjusted = adjusted - seasonal[i]
            trend = np.asarray(fit.trend, dtype=float)
    return Decomposition(seasons=seasons, seasonal=seasonal, trend=trend, adjusted=adjusted)
