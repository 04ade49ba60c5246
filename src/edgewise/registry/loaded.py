"""A model ready to answer: numpy batches in, numpy outputs (and top-k labels) out.

:class:`LoadedModel` wraps whatever a format opened (a torch module or an onnxruntime
session) behind one ``forward``; it checks every batch against the card first, so a
wrong input is one line naming the model, never a stack trace from inside the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.errors import EdgewiseError
from edgewise.registry.card import ModelCard
from edgewise.registry.formats import Runner

__all__ = ["InputMismatchError", "LoadedModel", "softmax"]


class InputMismatchError(EdgewiseError):
    """An input batch (or a model's output) does not match the model's card."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a 2-D array, numerically stable (float32)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class LoadedModel:
    """A model opened for inference, with its card.

    Parameters
    ----------
    name : str
        The registry name, zoo name or file name that was loaded.
    version : int or None
        The registry version; ``None`` for a zoo model or a path.
    format : str
        One of :data:`edgewise.registry.formats.FORMATS`.
    card : ModelCard
        What the model takes and answers.
    runner : callable
        The model as a function of a numpy batch (see :func:`open_runner`).
    engine : object, optional
        The opened module or session (kept alive with the runner).
    path : Path, optional
        The artifact it was opened from (``None`` for a zoo model).
    """

    def __init__(
        self,
        name: str,
        version: int | None,
        format: str,
        card: ModelCard,
        runner: Runner,
        engine: Any = None,
        path: Path | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.format = format
        self.card = card
        self.engine = engine
        self.path = path
        self._runner = runner
        self._lock = threading.Lock()

    @property
    def ref(self) -> str:
        """``NAME:vN`` for a registry version, else the name."""
        return self.name if self.version is None else f"{self.name}:v{self.version}"

    def __repr__(self) -> str:
        return f"LoadedModel({self.ref!r}, format={self.format!r})"

    def example_batch(self, batch_size: int = 1, seed: int = 0) -> np.ndarray:
        """An input batch of the card's shape and dtype, for timing the model.

        Float inputs (images, float tensors) are standard normal, drawn from a private
        ``numpy.random.Generator`` seeded with ``seed``; integer inputs (token ids,
        integer tensors) are zeros, the one id every vocabulary has (the value the
        registration check runs the model on).

        Parameters
        ----------
        batch_size : int
            Samples in the batch (at least 1).
        seed : int
            Seed of the float values.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        spec = self.card.input
        shape = (batch_size, *spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind != "f":
            return np.zeros(shape, dtype=dtype)
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype)

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as the card's dtype, after checking its shape and kind.

        Raises
        ------
        InputMismatchError
            If the per-sample shape differs from the card's, or the values are of
            another kind (floats for token ids, say).
        """
        spec = self.card.input
        array = np.asarray(batch)
        if array.ndim != len(spec.shape) + 1 or tuple(array.shape[1:]) != spec.shape:
            raise InputMismatchError(
                f"model {self.ref} takes {spec.kind} batches of shape "
                f"(batch, {', '.join(map(str, spec.shape))}), got {tuple(array.shape)}"
            )
        want = np.dtype(spec.dtype)
        if want.kind != array.dtype.kind and not (want.kind == "f" and array.dtype.kind in "iu"):
            raise InputMismatchError(
                f"model {self.ref} takes {spec.dtype} input, got {array.dtype}"
            )
        return array.astype(want, copy=False)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on ``batch`` (``(B, *input.shape)``); float32 output, batch first.

        Raises
        ------
        InputMismatchError
            If the batch does not match the card (see :meth:`check_batch`).
        """
        array = self.check_batch(batch)
        with self._lock:
            output = self._runner(array)
        return np.asarray(output, dtype=np.float32)

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Token ids of ``texts`` for a text model (see :meth:`ModelCard.tokenize`)."""
        base = None
        if self.path is not None:
            base = self.path if self.path.is_dir() else self.path.parent
        return self.card.tokenize(texts, base=base)

    def top_k(self, batch: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable labels of each sample, with softmax probabilities.

        Labels are the card's, or the output index as text when it has none.

        Raises
        ------
        InputMismatchError
            If the batch does not match the card, or the output is not one row of
            scores per sample (or not as long as the labels).
        """
        scores = self.forward(batch)
        if scores.ndim != 2:
            raise InputMismatchError(
                f"model {self.ref} answers shape {scores.shape}, not one row of scores a sample"
            )
        labels = self.card.labels
        if labels is not None and len(labels) != scores.shape[1]:
            raise InputMismatchError(
                f"model {self.ref} answers {scores.shape[1]} scores for {len(labels)} labels"
            )
        probs = softmax(scores)
        k = max(1, min(k, probs.shape[1]))
        out: list[list[tuple[str, float]]] = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:k]
            out.append(
                [(labels[i] if labels is not None else str(int(i)), float(row[i])) for i in order]
            )
        return out
