"""Interference-aware capacity: the profile pillar's prediction applied to a serving plan.

:func:`predicted_slowdown` asks the knowledge base's interference model how much slower
an app gets next to its neighbours; :func:`colocated_capacity` derates one replica's
measured capacity by that slowdown (its service times scaled, the capacity re-derived
under the same SLO) and says what planning without the prediction would have cost: the
latency percentile a replica would reach at its capacity alone, next to the neighbours.
This is the link between the two pillars that every serving use case shares.

:func:`neighbour_slowdown` is the form the ``capacity``, ``plan`` and ``serve`` use cases
take: declared neighbours (``--with SPEC`` or a service spec's ``neighbours:``) are
checked first (an empty spec or an unknown model is a one-line error), ``host`` is
replaced by the host's observed utilisation (:func:`observe_host`, a short
:class:`~edgewise.telemetry.contention.ContentionMeter` window), and where the knowledge
base has no interference model for the app, or never profiled a neighbour, the slowdown
stays solo (or leaves that neighbour out) and a note says so. :func:`derated_capacity_rps`
re-derives a stored profile's capacity next to them. Reading the knowledge base and the
host are the effects; the derating is pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.config import known_neighbour
from edgewise.errors import SpecError, UnknownNameError

if TYPE_CHECKING:
    from edgewise.interference.predictor import Predictor
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.live import FlavorCapacity
    from edgewise.serving.policies import FlavorOption

__all__ = [
    "HOST",
    "ColocatedCapacity",
    "Slowdown",
    "check_neighbours",
    "colocated_capacity",
    "derated_capacity_rps",
    "neighbour_slowdown",
    "observe_host",
    "observed",
    "predicted_slowdown",
]

#: The neighbour spec that stands for the host's observed utilisation.
HOST = "host"

#: Seconds of host utilisation observed for ``--with host``.
HOST_WINDOW_S = 1.0


@dataclass(frozen=True)
class Slowdown:
    """How much slower an app's p50 is predicted next to its neighbours than alone."""

    app: str
    neighbours: tuple[str, ...]
    factor: float
    source: str
    """Where the neighbours' resource vector came from (``measured`` or ``estimated``)."""
    notes: tuple[str, ...] = ()
    """Why the prediction is solo or leaves a neighbour out (empty when it is complete)."""
    solo: bool = False
    """True when no interference model was used (the factor is 1 because of a note)."""

    def origin(self) -> str:
        """Where the factor came from, in words (what the commands print)."""
        if self.solo:
            return "; ".join(self.notes)
        if not self.neighbours:
            return "alone: no neighbours declared"
        text = f"interference model for {self.app} (neighbours' resource vector {self.source})"
        return "; ".join((text, *self.notes))

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the neighbours, the factor and where it came from."""
        return {
            "neighbours": list(self.neighbours),
            "slowdown": self.factor,
            "slowdown_source": self.origin(),
        }


def predicted_slowdown(
    *,
    app: str,
    neighbours: Sequence[str],
    kb: str | KnowledgeBase | None = None,
    predictor: Predictor | None = None,
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
    predictor : Predictor, optional
        One to reuse across many questions (a planner asks hundreds; each new predictor
        reads the app's models from the knowledge base again, ~50 ms); ``kb`` is then
        not read.
    """
    if not neighbours:
        return Slowdown(app, (), 1.0, "alone")
    from edgewise.interference.predictor import Predictor
    from edgewise.kb import KnowledgeBase

    # one predictor for both questions: the app's models are read from the KB once
    pred = predictor or Predictor(kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb))
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


def derated_capacity_rps(
    service_ms: np.ndarray, slowdown: float, *, slo_ms: float, percentile: float, seed: int = 0
) -> float:
    """Capacity of a stored profile's service times slowed by ``slowdown`` (0: never).

    Parameters
    ----------
    service_ms : numpy.ndarray
        The profile's service-time samples (ms), in the order they were measured.
    slowdown : float
        The predicted factor (at least 1).
    slo_ms, percentile : float
        The SLO the capacity is derived under.
    seed : int
        Seed of the capacity simulation.
    """
    from edgewise.serving.capacity import PROFILE_BLOCK, capacity_rps

    slowed = np.asarray(service_ms, dtype=float) * slowdown
    return capacity_rps(slowed, slo_ms, percentile, seed, block=PROFILE_BLOCK)


def check_neighbours(neighbours: Sequence[str]) -> tuple[str, ...]:
    """The neighbour specs, stripped, or a one-line error for an empty or unknown one.

    A spec is ``host``, a stress mix ``stress:RES=V,...``, a zoo model (``resnet18``)
    or a profiled workload ``MODEL@RATErps``.

    Raises
    ------
    SpecError
        An empty spec or a malformed stress mix.
    UnknownNameError
        A model the zoo does not have.
    """
    from edgewise.interference.footprint import parse_stressor

    out: list[str] = []
    for raw in neighbours:
        try:
            name = known_neighbour(raw)
        except ValueError as err:
            kind = SpecError if not raw.strip() else UnknownNameError
            raise kind(f"--with: {err}") from None
        parse_stressor(name)  # a malformed stress mix is one line naming it
        out.append(name)
    return tuple(out)


def observed(neighbours: Sequence[str], window_s: float = HOST_WINDOW_S) -> tuple[str, ...]:
    """The checked neighbour specs with ``host`` replaced by its observed utilisation.

    For callers that predict for several apps next to the same neighbours: the host is
    observed once (:func:`observe_host`).
    """
    names = check_neighbours(neighbours)
    if HOST not in names:
        return names
    seen = observe_host(window_s)
    return tuple(seen if n == HOST else n for n in names)


def observe_host(window_s: float = HOST_WINDOW_S) -> str:
    """The host's observed utilisation over ``window_s`` as a stress mix (``stress:cpu=X``).

    X is the share of the host's CPU time that other processes and the hypervisor
    (steal) took in the window, read with
    :class:`~edgewise.telemetry.contention.ContentionMeter`.
    """
    import time

    from edgewise.telemetry.contention import ContentionMeter

    with ContentionMeter() as meter:
        time.sleep(window_s)
    got = meter.result
    busy = 0.0 if got is None else got.foreign_frac + got.steal_frac
    return f"stress:cpu={min(1.0, max(0.0, busy)):.2f}"


def _workload_of(kb: KnowledgeBase, name: str) -> str | None:
    """The KB workload a neighbour spec names (a bare model: its newest profiled rate).

    ``None`` when the knowledge base never profiled it; stress mixes stand for themselves.
    """
    from sqlalchemy import select

    from edgewise.interference.footprint import parse_stressor
    from edgewise.kb import models as m

    if parse_stressor(name) is not None:
        return name
    pattern = name if "@" in name else f"{name}@%"
    with kb.snapshot() as s:
        rows = s.scalars(
            select(m.Workload.name)
            .join(m.Footprint, m.Footprint.workload_id == m.Workload.id)
            .where(m.Workload.name.like(pattern), m.Footprint.combination_key.is_(None))
            .order_by(m.Footprint.id.desc())
        ).all()
    named = [r for r in rows if r == name or (r.startswith(f"{name}@") and ":" not in r)]
    return named[0] if named else None


def neighbour_slowdown(
    *,
    app: str,
    neighbours: Sequence[str],
    kb: str | KnowledgeBase | None = None,
    host_window_s: float = HOST_WINDOW_S,
) -> Slowdown:
    """The predicted slowdown of ``app`` next to declared neighbours, solo where unknown.

    Parameters
    ----------
    app : str
        The served model (or a profiled workload of it).
    neighbours : sequence of str
        Neighbour specs (:func:`check_neighbours`); ``host`` is the host's observed
        utilisation over ``host_window_s`` seconds (:func:`observe_host`).
    kb : str, KnowledgeBase or None
        The knowledge base with the interference models and footprints.
    host_window_s : float
        Seconds the host is observed for ``host``.

    Returns
    -------
    Slowdown
        The factor; solo (1, with a note) when the knowledge base has no interference
        model for ``app`` or profiled none of the neighbours; a neighbour it never
        profiled is left out of the prediction with a note.
    """
    from edgewise.kb import KnowledgeBase

    names = check_neighbours(neighbours)
    if not names:
        return Slowdown(app, (), 1.0, "alone")
    store = kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb)
    known: list[str] = []
    notes: list[str] = []
    for name in names:
        if name == HOST:
            known.append(observe_host(host_window_s))
            continue
        found = _workload_of(store, name)
        if found is None:
            notes.append(f"{name} was never profiled: left out of the prediction")
        else:
            known.append(found)
    if not known:
        why = "solo: the knowledge base profiled none of the neighbours"
        return Slowdown(app, (), 1.0, "solo", (why, *notes), solo=True)
    try:
        got = predicted_slowdown(app=app, neighbours=known, kb=store)
    except UnknownNameError:
        why = f"solo: no interference model for {app}"
        return Slowdown(app, tuple(known), 1.0, "solo", (why, *notes), solo=True)
    return replace(got, notes=tuple(notes))
