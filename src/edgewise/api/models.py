"""Models use cases: the built-in zoo measured here, and the registry of the user's models.

:func:`measure_zoo` builds zoo models and times them per batch size. :func:`add_model`
registers a model file or directory under a name (its card from a file, from flags, from
beside the model or read off the model), :func:`list_registered`, :func:`show_model` and
:func:`export_model` read the registry back (see :mod:`edgewise.registry`). The heavy
engines (torch, onnxruntime) are imported inside the calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edgewise.paths import user_path
from edgewise.registry.card import ModelCard, Task, parse_input_flag, read_labels
from edgewise.registry.store import ModelVersion

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = [
    "ExportedModel",
    "ModelList",
    "ZooMeasurement",
    "ZooReport",
    "add_model",
    "export_model",
    "list_registered",
    "measure_zoo",
    "show_model",
]

ZooProgress = Callable[[str, int, int], None]
"""``progress(description, done, total)``: what is being built or timed, steps done."""


@dataclass(frozen=True)
class ZooMeasurement:
    """One zoo model's size and latency (p50, p95 in ms) per batch size."""

    model: str
    kind: str
    params: int
    input: tuple[int, ...]
    threads: int
    latency_ms: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        """JSON row: ``model, kind, params, input, threads, latency_ms{batch: {p50, p95}}``."""
        return {
            "model": self.model,
            "kind": self.kind,
            "params": self.params,
            "input": list(self.input),
            "threads": self.threads,
            "latency_ms": {bs: dict(lat) for bs, lat in self.latency_ms.items()},
        }


@dataclass(frozen=True)
class ZooReport:
    """Measurements of several zoo models with the same settings."""

    rows: tuple[ZooMeasurement, ...]
    batch_sizes: tuple[int, ...]
    threads: int

    def as_dict(self) -> list[dict[str, Any]]:
        """The rows as a JSON list (what ``edgewise models --json`` prints)."""
        return [row.as_dict() for row in self.rows]


def measure_zoo(
    *,
    names: Sequence[str],
    batch_sizes: Sequence[int],
    threads: int,
    repeats: int,
    warmup: int,
    progress: ZooProgress | None = None,
) -> ZooReport:
    """Build each zoo model and measure its p50/p95 latency per batch size.

    Raises
    ------
    UnknownNameError
        If a name is not in the zoo.
    """
    from edgewise.stats import latency_summary
    from edgewise.workloads.runner import InferenceRunner
    from edgewise.workloads.zoo import build_model, check_model_name

    names = [check_model_name(name) for name in names]
    total, done = len(names) * len(batch_sizes), 0
    rows: list[ZooMeasurement] = []
    for name in names:
        if progress is not None:
            progress(f"building {name}", done, total)
        model = build_model(name)
        latency: dict[str, dict[str, float]] = {}
        for bs in batch_sizes:
            if progress is not None:
                progress(f"{name} batch {bs}", done, total)
            lat = InferenceRunner(model, batch_size=bs, threads=threads).measure(repeats, warmup)
            summary = latency_summary(lat)
            latency[str(bs)] = {"p50": summary["p50"], "p95": summary["p95"]}
            done += 1
            if progress is not None:
                progress(f"{name} batch {bs}", done, total)
        rows.append(
            ZooMeasurement(
                name, model.kind, model.param_count, tuple(model.input_shape), threads, latency
            )
        )
        del model
    return ZooReport(tuple(rows), tuple(batch_sizes), threads)


# ---------------------------------------------------------------------- registry


@contextmanager
def _opened(kb: KnowledgeBase | str | None) -> Iterator[KnowledgeBase]:
    from edgewise.kb import KnowledgeBase

    if isinstance(kb, KnowledgeBase):
        yield kb
        return
    with KnowledgeBase.open(kb) as opened:
        yield opened


def _compose_card(
    path: Path,
    *,
    card_file: Path | None,
    labels_file: Path | None,
    input_spec: str | None,
    task: str | None,
    arch: str | None,
) -> ModelCard | None:
    """The card the flags describe (``None``: the card beside the model or read off it)."""
    from edgewise.registry.card import ModelCardError, card_path_for
    from edgewise.registry.loading import open_path

    labels = read_labels(labels_file) if labels_file is not None else None
    card: ModelCard | None = None
    if card_file is not None:
        card = ModelCard.load(card_file)
    elif input_spec is not None:
        kind_task = task or ("classification" if labels is not None else "other")
        card = ModelCard(cast(Task, kind_task), parse_input_flag(input_spec))
    elif card_path_for(path).is_file():
        card = ModelCard.load(path)
    elif labels is not None or task is not None or arch is not None:
        if arch is not None:
            raise ModelCardError(
                f"no model card for {path}: with --arch also pass --input (or --card)"
            )
        card = open_path(path).card  # read off the model (ONNX, .pt2, Hugging Face)
    if card is None:
        return None
    if labels is not None:
        card = card.with_labels(labels)
    if task is not None:
        card = dataclasses.replace(card, task=cast(Task, task))
    if arch is not None:
        card = card.with_arch(arch)
    return card


def add_model(
    *,
    name: str,
    path: Path,
    card_file: Path | None = None,
    labels_file: Path | None = None,
    input_spec: str | None = None,
    task: str | None = None,
    arch: str | None = None,
    kb: KnowledgeBase | str | None = None,
) -> ModelVersion:
    """Register the model at ``path`` as the next version of ``name``.

    Parameters
    ----------
    name
        Registry name (letters, digits, ``_``, ``-``; not a zoo name).
    path
        A model file or directory (TorchScript, ``.pt2``, ONNX, Hugging Face directory,
        safetensors weights with an architecture).
    card_file
        A card YAML to use instead of the one beside the model.
    labels_file
        Labels, one a line (makes the model a classifier).
    input_spec
        ``KIND:SHAPE[:DTYPE]`` (e.g. ``image:3x224x224``) when there is no card.
    task
        ``classification``, ``regression`` or ``other``.
    arch
        For safetensors weights: a zoo name or a builder ``package.module:function``.
    kb
        The knowledge base (an open one or a URL; default ``$EDGEWISE_DB_URL`` or the file
        under ``$EDGEWISE_HOME``).

    Raises
    ------
    EdgewiseError
        Any bad input (file, card, labels, name), as one line; nothing is registered.
    """
    from edgewise.registry.loading import register_model

    path = user_path(path)
    if not path.exists():
        from edgewise.registry.formats import ModelFileError

        raise ModelFileError(f"model path {path} does not exist")
    card = _compose_card(
        path,
        card_file=card_file,
        labels_file=labels_file,
        input_spec=input_spec,
        task=task,
        arch=arch,
    )
    with _opened(kb) as opened:
        return register_model(opened, name, path, card=card)


@dataclass(frozen=True)
class ModelList:
    """The registered versions, by name then version."""

    versions: tuple[ModelVersion, ...]

    def as_dict(self) -> dict[str, Any]:
        """``{"models": [version, ...]}``."""
        return {"models": [v.as_dict() for v in self.versions]}


def list_registered(*, kb: KnowledgeBase | str | None = None) -> ModelList:
    """Every registered version (see :func:`edgewise.registry.list_models`)."""
    from edgewise.registry.store import list_models

    with _opened(kb) as opened:
        return ModelList(tuple(list_models(opened)))


def show_model(*, ref: str, kb: KnowledgeBase | str | None = None) -> ModelVersion:
    """The version ``ref`` names (``NAME``: the latest).

    Raises
    ------
    UnknownNameError
        An unknown name or version.
    """
    from edgewise.registry.store import resolve

    with _opened(kb) as opened:
        return resolve(opened, ref)


@dataclass(frozen=True)
class ExportedModel:
    """Where a registered version was exported to."""

    ref: str
    format: str
    path: Path
    card_path: Path

    def as_dict(self) -> dict[str, Any]:
        """``ref, format, path, card_path``."""
        return {
            "ref": self.ref,
            "format": self.format,
            "path": str(self.path),
            "card_path": str(self.card_path),
        }


def export_model(*, ref: str, out: Path, kb: KnowledgeBase | str | None = None) -> ExportedModel:
    """Copy the version ``ref`` names to ``out``, its card beside it.

    Raises
    ------
    UnknownNameError
        An unknown name or version.
    ModelFileError
        If ``out`` exists already.
    """
    from edgewise.registry.card import card_path_for
    from edgewise.registry.store import export_version, resolve

    with _opened(kb) as opened:
        version = resolve(opened, ref)
    target = export_version(version, user_path(out))
    return ExportedModel(version.ref, version.format, target, card_path_for(target))
