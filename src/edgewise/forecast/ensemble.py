"""Combinations of forecasters: the mean (or median) of their forecasts.

Averaging a decomposition model with a seasonal average cancels part of their
independent errors; whether that beats each member is for rolling-origin selection to
decide (:mod:`edgewise.forecast.select`). Pure computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgewise.forecast.base import BaseForecaster, ForecastResult

__all__ = ["Ensemble", "combine"]


def combine(forecasts: Sequence[np.ndarray], how: str) -> np.ndarray:
    """Element-wise mean or median of equally shaped arrays."""
    stack = np.stack([np.asarray(f, dtype=float) for f in forecasts])
    if how == "median":
        return np.asarray(np.median(stack, axis=0))
    if how == "mean":
        return np.asarray(stack.mean(axis=0))
    raise ValueError(f"how must be 'mean' or 'median', got {how!r}")


class Ensemble(BaseForecaster):
    """Mean or median of member forecasts; interval bounds combined the same way.

    Parameters
    ----------
    members : sequence of BaseForecaster
        Unfitted forecasters; :meth:`fit` fits copies of each (the given objects are
        not modified).
    how : {'mean', 'median'}
        Combination rule.
    """

    name = "ensemble"

    def __init__(self, members: Sequence[BaseForecaster], how: str = "mean") -> None:
        self.members = members
        self.how = how

    def min_length(self) -> int:
        return max(m.min_length() for m in self.members)

    def describe(self) -> str:
        return f"{self.how}({' + '.join(m.describe() for m in self.members)})"

    def _info(self) -> dict[str, Any]:
        return {"members": [m.describe() for m in self.members]}

    def _fit(self, y: np.ndarray) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        self.fitted_members_ = [type(m)(**m.get_params()).fit(y) for m in self.members]

    def _predict(
        self, h: int, levels: tuple[int, ...]
    ) -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
        results: list[ForecastResult] = [m.predict(h, levels) for m in self.fitted_members_]
        mean = combine([r.mean for r in results], self.how)
        lower = {lv: combine([r.lower[lv] for r in results], self.how) for lv in levels}
        upper = {lv: combine([r.upper[lv] for r in results], self.how) for lv in levels}
        return mean, lower, upper
