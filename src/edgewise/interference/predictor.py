"""Latency prediction under co-location, from footprints and stored surrogates.

``Predictor(kb).predict(app, neighbours)`` maps the neighbours to a resource vector
(a measured combination if the KB has one, else an estimate from solo footprints) and
evaluates the app's stored interference model (``FittedModel`` kind ``'surrogate'``).
The serve and retrain pillars call it; it performs only KB reads.

An interval is only reported where the model's runs support it (:func:`interval_supported`):
a bound more than :data:`INTERVAL_RANGE_FACTOR` times outside the latencies measured for
the app (below its fastest p50, above its slowest p99), or an upper bound more than
:data:`MAX_INTERVAL_RATIO` times the lower, says the model knows too little there, so
the prediction carries "not enough clean runs" and their count instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewise.errors import EdgewiseError, SpecError, UnknownNameError
from edgewise.interference.campaign import InterferenceModel
from edgewise.interference.footprint import colocation_vector, parse_stressor
from edgewise.interference.target import check_app, parse_workload_name, workload_name
from edgewise.stats import PERCENTILES

#: How far outside the latencies measured for an app (fastest p50 / this, slowest p99 x
#: this) an interval bound may lie before the model is said not to support it.
INTERVAL_RANGE_FACTOR = 4.0
#: An interval whose upper bound exceeds its lower one more than this many times says
#: nothing a plan could use (healthy models give 1.1-3 on the dev host, p99 included).
MAX_INTERVAL_RATIO = 50.0


@dataclass(frozen=True)
class TrainingSupport:
    """What an interference model was fitted on: its runs, the clean ones, their range.

    A run is clean when no foreign load was flagged during it (a run repeated because
    of foreign load keeps that flag even when its repeat was kept).
    """

    runs: int
    clean_runs: int
    low_ms: float
    high_ms: float

    @staticmethod
    def of_runs(runs: Sequence[Mapping[str, Any]]) -> TrainingSupport | None:
        """From run rows (``latency``, ``flags``); ``None`` when none has latencies."""
        lat = [r["latency"] for r in runs if r.get("latency")]
        p50s = [float(x["p50"]) for x in lat if x.get("p50", 0) and float(x["p50"]) > 0]
        p99s = [float(x.get("p99", x["p50"])) for x in lat if x.get("p50")]
        if not p50s or not p99s:
            return None
        clean = sum(
            1 for r in runs if not any(str(f).startswith("foreign") for f in r.get("flags") or ())
        )
        return TrainingSupport(len(runs), clean, min(p50s), max(p99s))


def interval_supported(
    lower: float, upper: float, support: TrainingSupport, scale: float = 1.0
) -> bool:
    """Whether ``[lower, upper]`` (ms) lies within what the model's runs support.

    Parameters
    ----------
    lower, upper : float
        The interval's bounds.
    support : TrainingSupport
        The runs behind the model.
    scale : float
        Drift factor applied to the prediction (the band moves with it).

    Returns
    -------
    bool
        False for a bound that is not finite or not positive, an upper bound more than
        :data:`MAX_INTERVAL_RATIO` times the lower, a lower bound below the fastest p50
        measured divided by :data:`INTERVAL_RANGE_FACTOR`, or an upper bound above the
        slowest p99 times that factor.
    """
    if not (math.isfinite(lower) and math.isfinite(upper)) or lower <= 0:
        return False
    if upper > MAX_INTERVAL_RATIO * lower:
        return False
    low = scale * support.low_ms / INTERVAL_RANGE_FACTOR
    high = scale * support.high_ms * INTERVAL_RANGE_FACTOR
    return low <= lower and upper <= high


@dataclass(frozen=True)
class LatencyPrediction:
    """Predicted latency percentiles (ms) with interval bounds and the vector's source.

    A percentile whose interval the model's runs do not support has ``None`` bounds;
    ``interval_note`` then says so, with ``clean_runs`` (the runs without foreign load
    behind the model; ``None`` when the model records no runs).
    """

    p50: float
    p95: float
    p99: float
    lower: dict[str, float | None] = field(default_factory=dict)
    upper: dict[str, float | None] = field(default_factory=dict)
    source: str = "estimated"
    vector: dict[str, float] = field(default_factory=dict)
    level: float = 0.9
    clean_runs: int | None = None
    interval_note: str | None = None


class Predictor:
    """Reads interference models and footprints from a knowledge base."""

    def __init__(self, kb: Any, level: float = 0.9) -> None:
        self.kb = kb
        self.level = level
        self._cache: dict[str, InterferenceModel] = {}
        self._support: dict[str, TrainingSupport | None] = {}
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
                obj, row = load_model(self.kb, "surrogate", name)
            except UnknownNameError:
                raise self._no_model(app, name) from None
            self._cache[name] = obj
            self._support[name] = self._training_support(list(row.training_ids or ()))
        return self._cache[name]

    def _no_model(self, app: str, name: str) -> UnknownNameError:
        """The error for an app without a model: advice to profile it where ``profile``
        accepts it, else the zoo models and the workloads that have a model."""
        try:
            check_app(app, self.kb)
        except EdgewiseError as err:
            from sqlalchemy import select

            from edgewise.kb import models as m

            with self.kb.snapshot() as s:
                have = sorted(
                    set(
                        s.scalars(
                            select(m.FittedModel.name).where(m.FittedModel.kind == "surrogate")
                        )
                    )
                )
            profiled = f"; profiled: {', '.join(have)}" if have else "; nothing profiled yet"
            return UnknownNameError(f"no interference model for {app!r}: {err}{profiled}")
        return UnknownNameError(
            f"no interference model for {name!r}: run `edgewise profile {app}` first"
        )

    def _training_support(self, run_ids: Sequence[int]) -> TrainingSupport | None:
        """The runs a model was fitted on, read back (``None`` when it records none)."""
        if not run_ids:
            return None
        from sqlalchemy import select

        from edgewise.kb import models as m

        with self.kb.snapshot() as s:
            rows = s.scalars(select(m.Run).where(m.Run.id.in_([int(i) for i in run_ids])))
            runs = [{"latency": dict(r.latency or {}), "flags": list(r.flags or ())} for r in rows]
        return TrainingSupport.of_runs(runs)

    def support(self, app: str) -> TrainingSupport | None:
        """What ``app``'s model was fitted on (``None`` when it records no runs)."""
        self.model(app)
        return self._support.get(self._names[app])

    def predict(
        self, app: str, neighbours: Sequence[str], solo_p50_ms: float | None = None
    ) -> LatencyPrediction:
        """Latency percentiles of ``app`` next to ``neighbours`` (workload or stressor names).

        ``solo_p50_ms``: the service's p50 alone *now*. The model predicts a slowdown
        over the solo latency measured during profiling; on a host whose speed drifts
        (a shared VM moved 25–50 % within minutes in the benchmark) scaling by the
        current solo latency removes that drift from the prediction. Every input is
        checked before the knowledge base is read. An interval the model's runs do not
        support (:func:`interval_supported`) is left out, with a note.
        """
        if solo_p50_ms is not None and not solo_p50_ms > 0:
            raise SpecError(f"solo p50 must be a positive latency in ms, got {solo_p50_ms}")
        for n in neighbours:
            parse_stressor(n)  # a malformed stress mix is named before anything else
        model = self.model(app)
        vec, source = colocation_vector(self.kb, list(neighbours))
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
        support = self.support(app)
        lower, upper, note = _checked_intervals(
            out["lower"], out["upper"], support, factor, self.level
        )
        return LatencyPrediction(
            p50=out["p50"],
            p95=out["p95"],
            p99=out["p99"],
            lower=lower,
            upper=upper,
            source=source,
            vector=vec,
            level=self.level,
            clean_runs=support.clean_runs if support is not None else None,
            interval_note=note,
        )


def _checked_intervals(
    lower: Mapping[str, float],
    upper: Mapping[str, float],
    support: TrainingSupport | None,
    scale: float,
    level: float,
) -> tuple[dict[str, float | None], dict[str, float | None], str | None]:
    """The bounds with unsupported ones as ``None``, and the note that says so."""
    lo: dict[str, float | None] = {p: float(v) for p, v in lower.items()}
    hi: dict[str, float | None] = {p: float(v) for p, v in upper.items()}
    if support is None:
        return lo, hi, None
    bad = [p for p in lower if not interval_supported(lower[p], upper[p], support, scale)]
    if not bad:
        return lo, hi, None
    for p in bad:
        lo[p] = hi[p] = None
    note = (
        f"not enough clean runs ({support.clean_runs} of {support.runs}): the model "
        f"cannot support a {100 * level:g}% interval of {', '.join(bad)}"
    )
    return lo, hi, note
