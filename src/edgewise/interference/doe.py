"""Design of experiments over a stress space (pure functions).

A space-filling seed design (optimised Latin hypercube or scrambled Sobol, from
``scipy.stats.qmc``) and the active-sampling rule: the next point is the candidate
with the largest predictive standard deviation under the current surrogate. Points
are scaled to the per-resource ranges of a :class:`~edgewise.config.StressSpace`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy.stats import qmc

from edgewise.config import StressSpace

SpaceLike = StressSpace | Mapping[str, Any]


def _ranges(space: SpaceLike) -> Mapping[str, Any]:
    if isinstance(space, StressSpace):
        return {str(k): v for k, v in space.resources.items()}
    return space


def space_bounds(space: SpaceLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Resource names and lower/upper bounds, in the space's order.

    ``space`` is a :class:`StressSpace` or a plain ``{resource: (lo, hi)}`` mapping
    (which may also name GPU resources such as ``gpu``).
    """
    ranges = _ranges(space)
    names: list[str] = [str(n) for n in ranges]
    bounds = list(ranges.values())
    lo = np.array([float(b[0]) for b in bounds])
    hi = np.array([float(b[1]) for b in bounds])
    return names, lo, hi


def unit_design(
    n: int, d: int, method: Literal["lhs", "sobol"] = "lhs", seed: int = 0
) -> np.ndarray:
    """``n`` points in ``[0, 1]^d``: optimised LHS (centered-discrepancy) or scrambled Sobol."""
    if n <= 0:
        return np.empty((0, d))
    if method == "lhs":
        return np.asarray(
            qmc.LatinHypercube(
                d=d, optimization="random-cd", rng=np.random.default_rng(seed)
            ).random(n)
        )
    if method == "sobol":
        m = int(np.ceil(np.log2(max(n, 2))))
        pts = qmc.Sobol(d=d, scramble=True, rng=np.random.default_rng(seed)).random_base2(m)
        return np.asarray(pts[:n])
    raise ValueError(f"unknown design method {method!r}")


def seed_design(
    space: SpaceLike, n: int, method: Literal["lhs", "sobol"] = "lhs", seed: int = 0
) -> list[dict[str, float]]:
    """``n`` design points (resource -> intensity) inside the space's ranges."""
    names, lo, hi = space_bounds(space)
    u = unit_design(n, len(names), method, seed)
    pts = lo + u * (hi - lo)
    return [{k: round(float(v), 4) for k, v in zip(names, row, strict=True)} for row in pts]


def candidates(space: SpaceLike, n: int = 512, seed: int = 0) -> list[dict[str, float]]:
    """A dense scrambled-Sobol candidate set for active sampling."""
    return seed_design(space, n, "sobol", seed)


def next_point(
    cands: Sequence[dict[str, float]],
    std: Callable[[Sequence[dict[str, float]]], np.ndarray],
    taken: Sequence[dict[str, float]] = (),
    min_distance: float = 0.02,
) -> dict[str, float]:
    """The candidate with the largest predictive std, skipping near-duplicates of ``taken``."""
    s = np.asarray(std(cands), dtype=float)
    order = np.argsort(-s, kind="stable")
    if taken:
        keys = list(cands[0])
        t = np.array([[p.get(k, 0.0) for k in keys] for p in taken])
        c = np.array([[p[k] for k in keys] for p in cands])
        for i in order:
            if np.min(np.linalg.norm(t - c[i], axis=1)) >= min_distance:
                return dict(cands[i])
    return dict(cands[int(order[0])])


def min_pairwise_distance(points: Sequence[dict[str, float]]) -> float:
    """Smallest Euclidean distance between two design points (space-filling check)."""
    if len(points) < 2:
        return float("inf")
    keys = list(points[0])
    x = np.array([[p[k] for k in keys] for p in points])
    d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    d[np.diag_indices_from(d)] = np.inf
    return float(d.min())
