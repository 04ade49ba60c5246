"""Interference-aware capacity: the profile pillar's prediction applied to a serving plan.

:func:`predicted_slowdown` asks the knowledge base's interference model how much slower
an app gets next to its neighbours; :func:`colocated_capacity` derates one replica's
measured capacity by that slowdown (its service times scaled, the capacity re-derived
under the same SLO) and says what planning without the prediction would have cost: the
latency percentile a replica would reach at its capacity alone, next to the neighbours.
This is the link between the two pillars that every serving use case shares.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.live import FlavorCapacity
    from edgewise.serving.policies import FlavorOption

__all__ = ["ColocatedCapacity", "Slowdown", "colocated_capacity", "predicted_slowdown"]


@dataclass(frozen=True)
class Slowdown:
    """How much slower an app's p50 is predicted next to its neighbours than alone."""

    app: str
    neighbours: tuple[str, ...]
    factor: float
    source: str
    """Where the neighbours' resource vector came from (``measured`` or ``estimated``)."""


def predicted_slowdown(
    *, app: str, neighbours: Sequence[str], kb: str | KnowledgeBase | None = None
) -> Slowdown:
    """The predicted p50 slowdown of ``app`` next to ``neighbours`` (at least 1).

    Parameters
    ----------
    app : str
        A profiled workload (``model@RATErps``, or a bare model that was profiled).
    neighbours : sequence of str
        Co-located workloads or ``stress:RES=V,...`` mixes; empty means alone (1.0).
    kb : str, KnowledgeBase or None
        The knowledge base holding the app's interference model.
    """
    if not neighbours:
        return Slowdown(app, (), 1.0, "alone")
    from edgewise.interference.predictor import Predictor
    from edgewise.kb import KnowledgeBase

    # one predictor for both questions: the app's models are read from the KB once
    pred = Predictor(kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb))
    alone = pred.predict(app, [])
    beside = pred.predict(app, list(neighbours))
    return Slowdown(app, tuple(neighbours), max(1.0, beside.p50 / alone.p50), beside.source)


@dataclass(frozen=True)
class ColocatedCapacity:
    """One replica's capacity alone and next to its neighbours, under one SLO."""

    alone: FlavorOption
    colocated: FlavorOption
    slowdown: float
    reachable: bool
    """False when the SLO cannot be met next to the neighbours at any rate: the
    colocated option then falls back to the capacity alone."""
    blind_percentile_ms: float
    """The SLO percentile a replica reaches next to the neighbours when it is loaded at
    its capacity alone (what planning without the prediction gets); inf if overloaded."""

    def replicas_for(self, rate_rps: float) -> tuple[int, int]:
        """Replicas to carry ``rate_rps`` without and with the prediction."""
        # rounded first: with no slowdown the ratio is exact up to float noise
        blind = math.ceil(round(rate_rps / self.alone.capacity_rps, 6))
        aware = math.ceil(round(rate_rps / max(self.colocated.capacity_rps, 1e-9), 6))
        return blind, aware

    def as_dict(self) -> dict[str, Any]:
        """JSON-able figures."""
        return {
            "capacity_alone_rps": self.alone.capacity_rps,
            "capacity_colocated_rps": self.colocated.capacity_rps,
            "slowdown": self.slowdown,
            "reachable": self.reachable,
            "blind_percentile_ms": self.blind_percentile_ms,
        }


def colocated_capacity(
    cap: FlavorCapacity, slowdown: float, *, slo_ms: float, percentile: float, seed: int = 0
) -> ColocatedCapacity:
    """Derate ``cap`` by ``slowdown``: its service times scaled, its capacity re-derived."""
    from edgewise.serving.capacity import capacity_rps, latency_percentile
    from edgewise.serving.policies.base import service_quantiles

    option = cap.option
    slowed = np.asarray(cap.service_ms, dtype=float) * slowdown
    rps = capacity_rps(slowed, slo_ms, percentile, seed=seed)
    reachable = rps > 0
    if not reachable:
        slowdown, rps, slowed = 1.0, option.capacity_rps, np.asarray(cap.service_ms, dtype=float)
    colocated = replace(
        option,
        capacity_rps=rps,
        service_ms_mean=option.service_ms_mean * slowdown,
        service_ms_quantiles=service_quantiles(slowed),
    )
    blind = latency_percentile(slowed, option.capacity_rps, percentile, seed=seed)
    return ColocatedCapacity(option, colocated, slowdown, reachable, blind)
