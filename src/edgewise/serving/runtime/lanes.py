"""A replica's lanes: the serving version, and during a rollout the canary beside it.

A lane is one loaded model with its own micro-batcher (both lanes share the replica's
single inference thread). During a rollout's canary phase the replica sends a share of
its requests to the canary lane (:class:`ShareSplitter`, exact and deterministic), runs
each canary input on the serving lane as well to measure agreement, and counts what the
canary did (:class:`CanaryTally`) for the rollout gate. No Ray and no HTTP here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewise.serving.runtime.batching import MicroBatcher
from edgewise.serving.runtime.predictor import Predictor


@dataclass(frozen=True)
class Lane:
    """One loaded model answering requests: where it came from, its predictor, its batcher.

    Attributes
    ----------
    source : str
        The model reference it was loaded from (as the rollout named it).
    """

    source: str
    predictor: Predictor
    batcher: MicroBatcher


class ShareSplitter:
    """Send exactly ``share`` of the requests to the canary, spread evenly.

    A credit grows by ``share`` per request; a request that lifts it to one or more goes
    to the canary and spends one. Deterministic, so a test can count on the share.
    """

    def __init__(self, share: float) -> None:
        self.share = float(share)
        self._credit = 0.0

    def to_canary(self) -> bool:
        """Whether the next request goes to the canary."""
        self._credit += self.share
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False


@dataclass
class CanaryTally:
    """What this replica saw of rollout ``rollout`` since its last push to the coordinator."""

    rollout: str
    latencies_ms: list[float] = field(default_factory=list)
    stable_latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    compared: int = 0
    agreed: int = 0
    labelled: int = 0
    correct: int = 0
    stable_labelled: int = 0
    stable_correct: int = 0

    def take(self) -> dict[str, Any]:
        """The counts so far as a plain dict (for the coordinator), and start over."""
        out = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.name != "rollout":
                setattr(self, f.name, [] if f.name.endswith("latencies_ms") else 0)
        return out

    def count_labels(self, canary: bool, answers: list[Any], labels: list[str] | None) -> None:
        """Count right answers of a labelled request on the lane that answered it."""
        if not labels:
            return
        right = sum(str(a) == str(lab) for a, lab in zip(answers, labels, strict=True))
        if canary:
            self.labelled += len(labels)
            self.correct += right
        else:
            self.stable_labelled += len(labels)
            self.stable_correct += right

    def count_agreement(self, canary: list[Any], stable: list[Any]) -> None:
        """Count canary answers equal to the serving version's on the same inputs."""
        self.compared += len(canary)
        self.agreed += sum(_same(a, b) for a, b in zip(canary, stable, strict=True))


def top_answers(predictor: Predictor, outputs: Sequence[Sequence[Any]]) -> list[Any]:
    """Each sample's answer in comparable form: a classifier's top label, else its output."""
    if predictor.classifier:
        return [str(top[0][0]) for top in outputs[2]]
    return list(outputs[0])


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-2, atol=1e-3))


def parse_labels(header: str | None, samples: int) -> list[str] | None:
    """Labels a client sent with a request (``X-Label: cat`` or ``cat,dog`` per sample).

    Raises
    ------
    ValueError
        If the number of labels differs from the number of samples.
    """
    if header is None or not header.strip():
        return None
    labels = [label.strip() for label in header.split(",")]
    if len(labels) != samples:
        raise ValueError(f"X-Label names {len(labels)} labels for {samples} samples")
    return labels
