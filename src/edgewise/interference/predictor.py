"""Latency prediction under co-location, from footprints and stored surrogates.

``Predictor(kb).predict(app, neighbours)`` maps the neighbours to a resource vector
(a measured combination if the KB has one, else an estimate from solo footprints) and
evaluates the app's stored interference model (``FittedModel`` kind ``'surrogate'``).
The serve and retrain pillars call it; it performs only KB reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewise.errors import SpecError, UnknownNameError
from edgewise.interference.campaign import InterferenceModel
from edgewise.interference.footprint import colocation_vector
from edgewise.interference.target import parse_workload_name, workload_name
from edgewise.stats import PERCENTILES


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency percentiles (ms) with interval bounds and the vector's source."""

    p50: float
    p95: float
    p99: float
    lower: dict[str, float] = field(default_factory=dict)
    upper: dict[str, float] = field(default_factory=dict)
    source: str = "estimated"
    vector: dict[str, float] = field(default_factory=dict)
    level: float = 0.9


class Predictor:
    """Reads interference models and footprints from a knowledge base."""

    def __init__(self, kb: Any, level: float = 0.9) -> None:
        self.kb = kb
        self.level = level
        self._cache: dict[str, InterferenceModel] = {}
        self._names: dict[str, str] = {}

    def _resolve(self, app: str) -> str:
        """KB name for ``app``: as given when it names a rate (or a command); for a bare
        zoo model its 20 rps workload if profiled, else its newest profiled rate."""
        if parse_workload_name(app) or app.startswith("cmd:"):
            return app
        default = workload_name(app, 20.0)
        from sqlalchemy import select

        from edgewise.kb import models as m

        with self.kb.snapshot() as s:
            rows = s.execute(
                select(m.FittedModel.name, m.FittedModel.created_at).where(
                    m.FittedModel.kind == "surrogate", m.FittedModel.name.like(f"{app}@%")
                )
            ).all()
        named = [
            (created, name)
            for name, created in rows
            if (parsed := parse_workload_name(name)) is not None
            and parsed[0] == app
            and not name.endswith(":cuda")
        ]
        if not named or any(name == default for _, name in named):
            return default
        return max(named)[1]

    def model(self, app: str) -> InterferenceModel:
        """The newest interference model for ``app`` (a bare zoo name: its 20 rps model,
        else the rate it was profiled at most recently)."""
        from edgewise.kb import load_model

        if app not in self._names:
            self._names[app] = self._resolve(app)
        name = self._names[app]
        if name not in self._cache:
            try:
                obj, _ = load_model(self.kb, "surrogate", name)
            except UnknownNameError:
                raise UnknownNameError(
                    f"no interference model for {name!r}: run `edgewise profile {app}` first"
                ) from None
            self._cache[name] = obj
        return self._cache[name]

    def predict(
        self, app: str, neighbours: Sequence[str], solo_p50_ms: float | None = None
    ) -> LatencyPrediction:
        """Latency percentiles of ``app`` next to ``neighbours`` (workload or stressor names).

        ``solo_p50_ms``: the service's p50 alone *now*. The model predicts a slowdown
        over the solo latency measured during profiling; on a host whose speed drifts
        (a shared VM moved 25–50 % within minutes in the benchmark) scaling by the
        current solo latency removes that drift from the prediction.
        """
        model = self.model(app)
        vec, source = colocation_vector(self.kb, list(neighbours))
        if solo_p50_ms is not None and not solo_p50_ms > 0:
            raise SpecError(f"solo p50 must be a positive latency in ms, got {solo_p50_ms}")
        factor = 1.0 if solo_p50_ms is None else solo_p50_ms / float(model.solo["p50"])
        if model.normalised:
            ref = {p: float(model.solo[p]) * factor for p in PERCENTILES}
            out = model.predict(vec, level=self.level, reference=ref)
        else:
            out = model.predict(vec, level=self.level)
            out = {
                **{p: out[p] * factor for p in PERCENTILES},
                "lower": {p: v * factor for p, v in out["lower"].items()},
                "upper": {p: v * factor for p, v in out["upper"].items()},
            }
        return LatencyPrediction(
            p50=out["p50"],
            p95=out["p95"],
            p99=out["p99"],
            lower=out["lower"],
            upper=out["upper"],
            source=source,
            vector=vec,
            level=self.level,
        )
