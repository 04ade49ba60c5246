"""Saving fitted models (surrogates, forecasters, calibrations) with their metadata.

Each :func:`save_model` call stores a new version of ``(kind, name)``: the object as a
versioned data document (see :mod:`edgewise.kb.codecs`; plain JSON data, or a class
with a registered codec) plus the features it was trained on, the ids of its training
data, its metrics and free metadata. :func:`load_model` returns the newest version, or
the one asked for. Nothing is pickled: loading a model runs no stored code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from edgewise.errors import EdgewiseError, UnknownNameError
from edgewise.kb.codecs import JSON_FORMAT, decode, encode
from edgewise.kb.models import FittedModel
from edgewise.kb.store import KnowledgeBase


def save_model(
    kb: KnowledgeBase,
    kind: str,
    name: str,
    obj: Any,
    features: Iterable[Any] = (),
    training_ids: Iterable[Any] = (),
    metrics: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> FittedModel:
    """Store ``obj`` as data, as the next version of ``(kind, name)``.

    Parameters
    ----------
    kb
        The knowledge base.
    kind
        Family of model: ``'surrogate'``, ``'forecaster'``, ``'calibration'``, ...
    name
        Name within the family, e.g. ``'mobilenet_v2@20rps/p99'``.
    obj
        Plain JSON data, or an object whose class has a codec registered in
        :mod:`edgewise.kb.codecs` (an interference model, a calibration, ...).
    features, training_ids
        Feature names in input order, and ids of the rows it was trained on
        (JSON-serialisable values).
    metrics, meta
        JSON-serialisable dicts: validation metrics and anything else worth keeping.

    Returns
    -------
    FittedModel
        The stored row (detached), with its ``id`` and ``version``.

    Raises
    ------
    ArtifactError
        (an :class:`~edgewise.errors.EdgewiseError`) if ``obj`` is neither plain JSON
        data nor of a class with a registered codec; nothing is written.
    """
    blob, codec = encode(obj)
    row_meta = dict(meta or {})
    row_meta.setdefault("sha256", hashlib.sha256(blob).hexdigest())
    row_meta.setdefault("python_type", f"{type(obj).__module__}.{type(obj).__qualname__}")
    row_meta.setdefault("format", JSON_FORMAT if codec is None else codec.format)
    # On PostgreSQL two writers can pick the same next version; the unique
    # constraint refuses the second, which then retries with a fresh maximum.
    # (SQLite write transactions are serialised by BEGIN IMMEDIATE.)
    for attempt in range(5):
        try:
            with kb.transaction() as session:
                current = session.scalar(
                    select(func.max(FittedModel.version)).where(
                        FittedModel.kind == kind, FittedModel.name == name
                    )
                )
                row = FittedModel(
                    kind=kind,
                    name=name,
                    version=int(current or 0) + 1,
                    features=list(features),
                    training_ids=list(training_ids),
                    metrics=dict(metrics or {}),
                    meta=row_meta,
                    blob=blob,
                )
                session.add(row)
            return row
        except IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def load_model(
    kb: KnowledgeBase, kind: str, name: str, version: int | None = None
) -> tuple[Any, FittedModel]:
    """The stored object and its row: the newest version, or ``version``.

    Raises
    ------
    UnknownNameError
        If no such model (or version) is stored.
    EdgewiseError
        If the stored bytes fail their checksum, or cannot be decoded (a format no
        imported module registered, a newer format version, an old pickle the
        migration could not convert); the message names the model.
    """
    with kb.snapshot() as session:
        query = (
            select(FittedModel)
            .where(FittedModel.kind == kind, FittedModel.name == name)
            .options(undefer(FittedModel.blob))
        )
        if version is None:
            query = query.order_by(FittedModel.version.desc()).limit(1)
        else:
            query = query.where(FittedModel.version == version)
        row = session.scalars(query).first()
        if row is None:
            versions = list(
                session.scalars(
                    select(FittedModel.version)
                    .where(FittedModel.kind == kind, FittedModel.name == name)
                    .order_by(FittedModel.version)
                )
            )
    if row is None:
        if version is not None and versions:
            raise UnknownNameError(
                f"no version {version} of {kind} model {name!r} in {kb.safe_url}; "
                f"stored versions: {', '.join(map(str, versions))}"
            )
        raise UnknownNameError(f"no {kind} model named {name!r} in {kb.safe_url}")
    expected = row.meta.get("sha256")
    if expected is not None and hashlib.sha256(row.blob).hexdigest() != expected:
        raise EdgewiseError(
            f"{kind} model {name!r} version {row.version} in {kb.safe_url} is corrupt "
            "(checksum mismatch)"
        )
    try:
        return decode(row.blob), row
    except EdgewiseError as err:
        raise type(err)(f"{kind} model {name!r} version {row.version}: {err}") from None
