"""Tolerant readers of the JSON the other pillars store (pure functions).

The report must render whatever the knowledge base holds, so a missing key or a
``null`` (a non-finite number stored as JSON) becomes NaN or ``None`` here instead of
an exception; a row that is unusable as a whole raises :class:`BadRow`, which the
section turns into a one-line note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


class BadRow(ValueError):
    """A knowledge-base row that does not follow the report's data contract."""


def num(value: Any) -> float | None:
    """``value`` as a finite float, else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def floats(values: Any) -> np.ndarray:
    """A JSON list as a float array; ``null`` and non-numbers become NaN."""
    if values is None:
        return np.empty(0)
    if not isinstance(values, (list, tuple)):
        raise BadRow(f"expected a list of numbers, got {type(values).__name__}")
    out = [num(v) for v in values]
    return np.array([math.nan if v is None else v for v in out], dtype=float)


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else :class:`BadRow` naming ``what``."""
    if not isinstance(value, Mapping):
        raise BadRow(f"{what} is not an object")
    return value


def records(value: Any, what: str) -> list[Mapping[str, Any]]:
    """A JSON list of objects (other entries dropped); ``None`` gives an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRow(f"{what} is not a list")
    return [v for v in value if isinstance(v, Mapping)]


def median_ape(measured: np.ndarray, predicted: np.ndarray) -> float | None:
    """Median absolute percentage error (a fraction) over the pairs with measured > 0."""
    ok = np.isfinite(measured) & np.isfinite(predicted) & (measured > 0)
    if not ok.any():
        return None
    return float(np.median(np.abs(predicted[ok] - measured[ok]) / measured[ok]))


def level_series(bounds: Any, level: str) -> np.ndarray | None:
    """The interval bound list at ``level`` (keys may be ``"90"`` or ``90``)."""
    if not isinstance(bounds, Mapping):
        return None
    for key, values in bounds.items():
        if str(key) == level:
            return floats(values)
    return None


def levels(bounds: Any) -> list[str]:
    """The interval levels present in a ``lower``/``upper`` mapping, widest first."""
    if not isinstance(bounds, Mapping):
        return []
    found = [str(k) for k in bounds]
    return sorted(found, key=lambda k: num(k) or 0.0, reverse=True)
