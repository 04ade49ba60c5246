"""Typed records of a campaign: one stored run and a target's solo reference latency.

Pure data. The knowledge base keeps a run as the columns of ``runs`` (``index``,
``design``, ``achieved``, ``latency``, ``status``, ``flags``); :class:`RunRecord` reads
that shape (:meth:`RunRecord.from_dict`) and writes it back (:meth:`RunRecord.as_dict`)
unchanged, so the storage format does not depend on this class. The functions of the
campaign accept either a record or the stored dict (:func:`as_run`), as the benchmark's
files and the report's data contract hold dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewise.stats import PERCENTILES

#: The flag of a solo baseline (a run without stressors).
SOLO_FLAG = "solo"
#: The prefix of the flag a run gets when foreign load disturbed it.
FOREIGN_FLAG = "foreign_cpu="


@dataclass(frozen=True)
class RunRecord:
    """One run of a campaign: the requested design, what it achieved, the latency.

    Attributes
    ----------
    index : int
        Position in the campaign (solo baselines and stressed runs share the count).
    design : dict
        Requested intensities per resource (all zero for a solo baseline).
    achieved : dict
        Achieved intensities per resource, plus ``target_cpu`` (the target's CPU share).
    latency : dict
        Latency summary of the window (``p50``, ``p95``, ``p99`` in ms, ``mean``, ``n``).
    status : str
        ``ok`` (usable) or ``flagged`` (foreign load on every attempt).
    flags : tuple of str
        ``solo`` for a baseline, ``foreign_cpu=X`` for each disturbed attempt.
    id : int or None
        The knowledge-base id, once stored.
    """

    index: int
    design: dict[str, float] = field(default_factory=dict)
    achieved: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    flags: tuple[str, ...] = ()
    id: int | None = None

    @property
    def is_solo(self) -> bool:
        """A solo baseline: the target alone, no stressor."""
        return SOLO_FLAG in self.flags

    @property
    def is_ok(self) -> bool:
        """Usable for fitting (not flagged)."""
        return self.status == "ok"

    @property
    def is_disturbed(self) -> bool:
        """Foreign load disturbed at least one attempt of this run."""
        return any(f.startswith(FOREIGN_FLAG) for f in self.flags)

    def p(self, percentile: str) -> float:
        """The run's latency percentile ``percentile`` (``'p50'``...) in ms."""
        return float(self.latency[percentile])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        """A record from the stored dict shape (missing keys take their defaults)."""
        design = d.get("design")
        rid = d.get("id")
        return cls(
            index=int(d.get("index", 0)),
            design=dict(design) if design is not None else {},
            achieved=dict(d.get("achieved") or {}),
            latency=dict(d.get("latency") or {}),
            status=str(d.get("status", "ok")),
            flags=tuple(d.get("flags") or ()),
            id=int(rid) if rid is not None else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The stored dict shape (what :func:`campaign_runs` has always returned)."""
        return {
            "id": self.id,
            "index": self.index,
            "design": dict(self.design),
            "achieved": dict(self.achieved),
            "latency": dict(self.latency),
            "status": self.status,
            "flags": list(self.flags),
        }


RunLike = RunRecord | Mapping[str, Any]


def as_run(run: RunLike) -> RunRecord:
    """``run`` as a :class:`RunRecord` (a stored dict is converted)."""
    return run if isinstance(run, RunRecord) else RunRecord.from_dict(run)


def as_runs(runs: Sequence[RunLike]) -> list[RunRecord]:
    """Every run of ``runs`` as a :class:`RunRecord`."""
    return [as_run(r) for r in runs]


@dataclass(frozen=True)
class SoloReference:
    """A target's latency alone (ms per percentile) and its CPU share alone.

    The divisor of the drift correction: a run's latency over the solo latency of its
    moment is the slowdown the surrogates learn.
    """

    p50: float
    p95: float
    p99: float
    cpu: float = 0.0

    def latency(self, percentile: str) -> float:
        """Solo latency (ms) at ``percentile`` (``'p50'``, ``'p95'`` or ``'p99'``)."""
        return float(getattr(self, percentile))

    @classmethod
    def placeholder(cls) -> SoloReference:
        """1 ms everywhere: the divisor when no solo baseline exists yet."""
        return cls(1.0, 1.0, 1.0, 0.0)

    @classmethod
    def from_mapping(cls, d: Mapping[str, float]) -> SoloReference:
        """From a ``{'p50', 'p95', 'p99'[, 'cpu']}`` mapping (the stored model's ``solo``)."""
        return cls(float(d["p50"]), float(d["p95"]), float(d["p99"]), float(d.get("cpu", 0.0)))

    @classmethod
    def median_of(cls, solos: Sequence[RunRecord]) -> SoloReference:
        """Median solo latency and target CPU over solo baselines (placeholder if none)."""
        if not solos:
            return cls.placeholder()
        lat = {p: float(np.median([s.p(p) for s in solos])) for p in PERCENTILES}
        cpu = float(np.median([s.achieved.get("target_cpu", 0.0) for s in solos]))
        return cls(lat["p50"], lat["p95"], lat["p99"], cpu)

    def percentiles(self) -> dict[str, float]:
        """``{'p50', 'p95', 'p99'}`` in ms (the ``reference`` a model's predict takes)."""
        return {p: self.latency(p) for p in PERCENTILES}

    def as_dict(self) -> dict[str, float]:
        """Percentiles and ``cpu``: the shape stored in a model's ``solo`` and meta."""
        return {**self.percentiles(), "cpu": self.cpu}
