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

from edgewise.errors import UnknownNameError
from edgewise.interference.campaign import InterferenceModel
from edgewise.interference.footprint import colocation_vector
from edgewise.interference.target import parse_workload_name, workload_name


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

    def model(self, app: str) -> InterferenceModel:
        """The newest interference model for ``app`` (zoo name defaults to 20 rps)."""
        from edgewise.kb import load_model

        name = (
            app if parse_workload_name(app) or app.startswith("cmd:") else workload_name(app, 20.0)
        )
        if name not in self._cache:
            try:
                obj, _ = load_model(self.kb, "surrogate", name)
            except UnknownNameError:
                raise UnknownNameError(
                    f"no interference model for {name!r}: run `edgewise profile {app}` first"
                ) from None
            self._cache[name] = obj
        return self._cache[name]

    def predict(self, app: str, neighbours: Sequence[str]) -> LatencyPrediction:
        """Latency percentiles of ``app`` next to ``neighbours`` (workload or stressor names)."""
        model = self.model(app)
        vec, source = colocation_vector(self.kb, list(neighbours))
        out = model.predict(vec, level=self.level)
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
