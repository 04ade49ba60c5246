"""The knowledge base's interference models as the fleet planner's slowdown function.

:func:`kb_slowdown` answers "how much slower is a replica of this model next to these
neighbours" with each model's newest profiled workload (an interference model and a
footprint in the knowledge base), through
:func:`edgewise.api.colocation.predicted_slowdown`; where a model was never profiled the
answer is solo capacity, and says so. Effects: reading the knowledge base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgewise.planning.fleet import SlowdownEstimate, SlowdownFn

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = ["InterferenceModelInfo", "kb_slowdown"]


@dataclass(frozen=True)
class InterferenceModelInfo:
    """The knowledge base's interference model of one zoo model, as the fleet uses it."""

    model: str
    workload: str
    campaign: str | None
    synthetic: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {
            "workload": self.workload,
            "campaign": self.campaign,
            "synthetic": self.synthetic,
        }


def _profiled_workloads(store: KnowledgeBase, models: Sequence[str]) -> dict[str, Any]:
    """For each model with an interference model and a footprint: its newest workload
    name and the model's row metadata."""
    from sqlalchemy import select

    from edgewise.interference.target import parse_workload_name
    from edgewise.kb import models as m

    with store.snapshot() as s:
        fitted = s.execute(
            select(m.FittedModel.name, m.FittedModel.meta, m.FittedModel.id)
            .where(m.FittedModel.kind == "surrogate")
            .order_by(m.FittedModel.id)
        ).all()
        with_footprint = set(
            s.scalars(
                select(m.Workload.name).join(m.Footprint, m.Footprint.workload_id == m.Workload.id)
            )
        )
    out: dict[str, Any] = {}
    for name, meta, _ in fitted:  # ascending id: the newest wins
        parsed = parse_workload_name(name)
        if parsed is None or parsed[0] not in models or name.endswith(":cuda"):
            continue
        if name in with_footprint:
            out[parsed[0]] = (name, dict(meta or {}))
    return out


def kb_slowdown(
    models: Sequence[str], kb: str | KnowledgeBase | None = None
) -> tuple[SlowdownFn, dict[str, InterferenceModelInfo]]:
    """The planner's slowdown function from the knowledge base's interference models.

    A replica of ``model`` next to neighbour models is predicted by
    :func:`edgewise.api.colocation.predicted_slowdown` (p50 next to the neighbours over
    p50 alone, at least 1), with each model's newest profiled workload (one with a fitted
    model and a footprint). One predictor serves every question, so each model is read
    from the knowledge base once (the planner asks hundreds of questions). Where
    the model or a neighbour was never profiled the answer is 1.0 with the source
    ``solo (no model for X next to Y: ... never profiled)``. Answers are cached per
    (model, neighbours).

    Parameters
    ----------
    models : sequence of str
        The zoo models the fleet runs.
    kb : str, KnowledgeBase or None
        The knowledge base (``None``: the default one).

    Returns
    -------
    (SlowdownFn, dict)
        The function, and the interference model found for each model.
    """
    from edgewise.api.colocation import predicted_slowdown
    from edgewise.interference.predictor import Predictor
    from edgewise.kb import KnowledgeBase

    store = kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb)
    found = _profiled_workloads(store, models)
    info = {
        model: InterferenceModelInfo(
            model, name, meta.get("campaign"), bool(meta.get("synthetic", False))
        )
        for model, (name, meta) in found.items()
    }
    predictor = Predictor(store)
    cache: dict[tuple[str, tuple[str, ...]], SlowdownEstimate] = {}

    def slowdown(model: str, neighbours: tuple[str, ...]) -> SlowdownEstimate:
        key = (model, neighbours)
        if key in cache:
            return cache[key]
        if not neighbours:
            got = SlowdownEstimate(1.0, "alone")
        elif model not in info or any(n not in info for n in neighbours):
            missing = sorted({m for m in (model, *neighbours) if m not in info})
            got = SlowdownEstimate(
                1.0,
                f"solo (no model for {model} next to {', '.join(sorted(set(neighbours)))}: "
                f"{', '.join(missing)} never profiled)",
            )
        else:
            found_slowdown = predicted_slowdown(
                app=info[model].workload,
                neighbours=[info[n].workload for n in neighbours],
                predictor=predictor,
            )
            got = SlowdownEstimate(
                found_slowdown.factor, f"knowledge base ({found_slowdown.source})"
            )
        cache[key] = got
        return got

    return slowdown, info
