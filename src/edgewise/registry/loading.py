"""Opening a model by reference, checking it against its card, and registering it.

:func:`load_model` turns any model reference (zoo name, ``NAME[:vN]``, path) into a
:class:`~edgewise.registry.loaded.LoadedModel`. :func:`register_model` opens the
artifact, runs one forward pass on a zero input of the card's shape (and checks the
output against the labels) *before* anything is copied or written, then stores the
artifact and adds the version row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgewise.errors import EdgewiseError, UnknownNameError
from edgewise.paths import user_path
from edgewise.registry.card import InputSpec, ModelCard, ModelCardError, card_path_for
from edgewise.registry.formats import detect_format, open_runner, torch_runner
from edgewise.registry.loaded import InputMismatchError, LoadedModel
from edgewise.registry.refs import check_name, parse_ref
from edgewise.registry.store import (
    ModelVersion,
    content_sha256,
    insert_version,
    remove_stored,
    resolve,
    store_artifact,
)

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = [
    "canonical_ref",
    "check_model",
    "kb_or_default",
    "load_model",
    "load_version",
    "open_path",
    "register_model",
    "zoo_card",
]


def zoo_card(name: str) -> ModelCard:
    """The card of a built-in zoo model (classifier, no labels, its zoo input)."""
    from edgewise.workloads.zoo import DEFAULT_SEQ_LEN, DIGITS_SIZE, IMAGE_SIZE, IMAGENET_CLASSES

    if name == "distilbert":
        return ModelCard(
            "classification",
            InputSpec("text", (DEFAULT_SEQ_LEN,), "int64"),
            arch=name,
            num_outputs=2,
        )
    if name == "digits_cnn":
        spec = InputSpec("image", (1, DIGITS_SIZE, DIGITS_SIZE))
        return ModelCard("classification", spec, arch=name, num_outputs=10)
    spec = InputSpec("image", (3, IMAGE_SIZE, IMAGE_SIZE))
    return ModelCard("classification", spec, arch=name, num_outputs=IMAGENET_CLASSES)


def _card_beside(path: Path) -> ModelCard | None:
    return ModelCard.load(path) if card_path_for(path).is_file() else None


def open_path(
    path: Path,
    card: ModelCard | None = None,
    *,
    name: str | None = None,
    version: int | None = None,
) -> LoadedModel:
    """Open the model file or directory at ``path``.

    Parameters
    ----------
    path
        The artifact; its format is detected from the extension or directory contents.
    card
        The card to use; default the card file beside the model, else one read off the
        model itself (ONNX, ``.pt2``, Hugging Face config).
    name, version
        What the loaded model calls itself (default the file name, no version).

    Raises
    ------
    ModelFileError
        Unknown extension, missing, truncated, corrupt or unsafe file.
    ModelCardError
        No card can be found or derived, or it is malformed.
    """
    fmt = detect_format(path)
    if card is None:
        card = _card_beside(path)
    runner, engine = open_runner(path, fmt, card)
    if card is None:
        from edgewise.registry.formats import derived_card

        card = derived_card(path, fmt, engine)
        if card is None:
            raise ModelCardError(
                f"no model card for {path}: write {card_path_for(path)} or pass --input "
                "(e.g. --input image:3x224x224)"
            )
    return LoadedModel(name or path.name, version, fmt, card, runner, engine, path)


def check_model(model: LoadedModel, source: Path | str | None = None) -> np.ndarray:
    """Run ``model`` once on a zero input of its card's shape; return the output.

    Raises
    ------
    InputMismatchError
        If the model fails on that input, or a classifier's output is not one row of
        scores whose length matches its labels.
    """
    where = source if source is not None else model.ref
    spec = model.card.input
    zeros = np.zeros((1, *spec.shape), dtype=np.dtype(spec.dtype))
    try:
        output = model.forward(zeros)
    except EdgewiseError:
        raise
    except Exception as err:
        line = next((ln for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise InputMismatchError(
            f"{where}: the model does not run on a {spec.kind} input of shape "
            f"{list(spec.shape)} {spec.dtype} as its card says ({line.strip()[:200]})"
        ) from None
    if not np.all(np.isfinite(output)):
        raise InputMismatchError(f"{where}: the model answers non-finite values on a zero input")
    labels = model.card.labels
    if model.card.task == "classification" and output.ndim != 2:
        raise InputMismatchError(
            f"{where}: a classifier must answer one row of scores a sample, got shape "
            f"{list(output.shape)}"
        )
    if labels is not None and (output.ndim != 2 or output.shape[1] != len(labels)):
        raise InputMismatchError(
            f"{where}: {len(labels)} labels for an output of size "
            f"{output.shape[1] if output.ndim == 2 else list(output.shape)}"
        )
    return output


@contextmanager
def kb_or_default(kb: KnowledgeBase | None) -> Iterator[KnowledgeBase]:
    """``kb`` itself, or the default knowledge base opened for the block and closed after."""
    if kb is not None:
        yield kb
        return
    from edgewise.kb import KnowledgeBase

    with KnowledgeBase.open() as opened:
        yield opened


def load_model(ref: str, kb: KnowledgeBase | None = None) -> LoadedModel:
    """Open the model ``ref`` names for inference.

    Parameters
    ----------
    ref
        A zoo name, a registry entry ``NAME``/``NAME:vN``/``NAME:N``, or a path to a
        model file or directory (see :mod:`edgewise.registry.refs`).
    kb
        The knowledge base holding the registry (default: the default knowledge base,
        opened only for registry references).

    Raises
    ------
    UnknownNameError
        An unknown registry name or version.
    ModelFileError, ModelCardError
        A path that cannot be opened, or has no usable card.
    """
    parsed = parse_ref(ref)
    if parsed.kind == "zoo":
        from edgewise.workloads.zoo import build_model

        zoo = build_model(parsed.name)
        return LoadedModel(
            parsed.name, None, "zoo", zoo_card(parsed.name), torch_runner(zoo.module), zoo.module
        )
    if parsed.kind == "path":
        assert parsed.path is not None
        return open_path(parsed.path)
    with kb_or_default(kb) as opened:
        version = resolve(opened, ref)
    return load_version(version)


def canonical_ref(ref: str, kb: KnowledgeBase | None = None) -> str:
    """The reference ``ref`` as results are stored under it, checked without loading.

    A zoo name stays as it is; a registry entry becomes the ``NAME:vN`` it resolves to
    in ``kb`` (``NAME`` alone: its latest version), so that what is measured of it is
    kept per version; a path stays as written once its format is recognised.

    Parameters
    ----------
    ref
        A zoo name, ``NAME``/``NAME:vN``/``NAME:N`` or a path to a model file or directory.
    kb
        The knowledge base holding the registry (default: the default knowledge base,
        opened only for registry references).

    Raises
    ------
    UnknownNameError
        An empty reference, or a registry name or version that does not exist (for a
        name never registered the message also lists the zoo's models).
    ModelFileError
        A path that does not exist or is of no known format.
    """
    parsed = parse_ref(ref)
    if parsed.kind == "zoo":
        return parsed.name
    from edgewise.workloads._names import MODEL_NAMES

    if parsed.kind == "path":
        assert parsed.path is not None
        from edgewise.registry.formats import ModelFileError

        if not parsed.path.exists():
            raise ModelFileError(
                f"unknown model {ref.strip()!r}: no such file (the path {parsed.path} does "
                f"not exist); known models: {', '.join(MODEL_NAMES)} (or a registered "
                "NAME[:vN], see `edgewise models list`)"
            )
        try:
            detect_format(parsed.path)
        except ModelFileError as err:
            if str(parsed.path) == ref.strip():
                raise
            raise ModelFileError(f"model {ref.strip()!r}: {err}") from None
        return ref.strip()
    with kb_or_default(kb) as opened:
        try:
            return resolve(opened, ref).ref
        except UnknownNameError as err:
            if parsed.version is not None or "no registered model" not in str(err):
                raise
            raise UnknownNameError(
                f"unknown model {parsed.name!r}; known models: {', '.join(MODEL_NAMES)} "
                "(or a registered NAME[:vN], see `edgewise models list`, or a model file)"
            ) from None


def check_refs(refs: Mapping[str, str], kb: KnowledgeBase | None = None) -> None:
    """Check several model references before anything starts: the first one that names
    nothing raises its error, prefixed with where it was written (the mapping's key).

    Raises
    ------
    EdgewiseError
        As :func:`canonical_ref`, the message starting ``WHERE: ``.
    """
    for where, ref in refs.items():
        try:
            canonical_ref(ref, kb)
        except EdgewiseError as err:
            raise type(err)(f"{where}: {err}") from None


def load_version(version: ModelVersion) -> LoadedModel:
    """Open a registered version with its stored card."""
    if not version.path.exists():
        from edgewise.registry.formats import ModelFileError

        raise ModelFileError(
            f"model {version.ref}: its stored artifact {version.path} is missing "
            "(EDGEWISE_HOME moved?)"
        )
    return open_path(version.path, version.card, name=version.name, version=version.version)


def register_model(
    kb: KnowledgeBase,
    name: str,
    path: Path,
    *,
    card: ModelCard | None = None,
    parent: str | None = None,
    data_fingerprint: str | None = None,
    accuracy_before: float | None = None,
    accuracy_after: float | None = None,
    check: bool = True,
) -> ModelVersion:
    """Register the model at ``path`` as the next version of ``name``.

    The model is opened and (with ``check``) run once on a zero input of its card's
    shape before anything is stored; then the artifact is copied into the
    content-addressed store and the version row written, in that order, the copy
    removed again if the row cannot be written.

    Parameters
    ----------
    kb
        The knowledge base holding the registry.
    name
        The registry name (letters, digits, ``_``, ``-``; not a zoo name).
    path
        A model file or directory in one of :data:`~edgewise.registry.formats.FORMATS`.
    card
        Its card (default: the card beside it, or one read off the model).
    parent, data_fingerprint, accuracy_before, accuracy_after
        Lineage: the ``NAME:vN`` it was re-trained from, the data, and held-out accuracy.
    check
        Run the forward-pass check (leave on unless the caller just checked it).

    Raises
    ------
    UnknownNameError
        A bad or built-in name, or a ``parent`` that is not registered.
    ModelFileError, ModelCardError, InputMismatchError
        The artifact cannot be opened, has no card, or fails the check.
    """
    check_name(name)
    path = user_path(path)
    if parent is not None:
        parent = resolve(kb, parent).ref
    model = open_path(path, card, name=name)
    if check:
        check_model(model, path)
    sha = content_sha256(path)
    relative, created = store_artifact(path, sha)
    lineage = {
        "parent": parent,
        "data_fingerprint": data_fingerprint,
        "accuracy_before": accuracy_before,
        "accuracy_after": accuracy_after,
    }
    try:
        return insert_version(
            kb,
            name=name,
            format=model.format,
            sha256=sha,
            relative=relative,
            card=model.card,
            lineage=lineage,
            meta={"source": str(path.resolve())},
        )
    except BaseException:
        if created:
            remove_stored(relative)
        raise
