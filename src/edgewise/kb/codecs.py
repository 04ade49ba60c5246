"""Stored artifacts as versioned data: the codec registry behind ``save_model``.

A stored artifact is one JSON document (UTF-8 bytes in ``FittedModel.blob``)::

    {"format": "edgewise.calibration", "format_version": 1, "state": {...},
     "estimators": "<base64 of skops.io.dumps({...})>"}     # only where there are any

``state`` is plain JSON data. Where a fitted scikit-learn estimator is part of an
artifact, the codec hands it over in a separate mapping that is written with
:func:`skops.io.dumps` and read back with :func:`skops.io.loads` trusting only the
scikit-learn and numpy types in :data:`TRUSTED_TYPES`, never a class of edgewise. So a
stored model survives any move of our classes, and reading one runs no stored code.

Pure part: :func:`encode` / :func:`decode` turn an object into document bytes and back
through the :class:`Codec` registered for its type (plain JSON data needs none: it is
stored as format ``json``). The modules that own a stored class register its codec with
:func:`register` when they are imported; this module imports no pillar.
"""

from __future__ import annotations

import base64
import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgewise.errors import EdgewiseError

#: Format of plain JSON data (dicts with string keys, lists, numbers, strings, None).
JSON_FORMAT = "json"

#: Format of a row the migration could not convert from an old release's pickle.
LEGACY_PICKLE_FORMAT = "edgewise.legacy-pickle"

#: The types outside skops' defaults that a stored estimator may contain. Only
#: scikit-learn and numpy types belong here: an artifact never names a class of ours.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.gaussian_process.kernels.ConstantKernel",
    "sklearn.gaussian_process.kernels.Matern",
    "sklearn.gaussian_process.kernels.Product",
    "sklearn.gaussian_process.kernels.RBF",
    "sklearn.gaussian_process.kernels.Sum",
    "sklearn.gaussian_process.kernels.WhiteKernel",
    "sklearn.tree._tree.Tree",
)


class ArtifactError(EdgewiseError):
    """A stored artifact cannot be written or read (no codec, unknown format, corrupt)."""


@dataclass(frozen=True)
class Encoded:
    """What a codec makes of an object: JSON state plus fitted estimators by name."""

    state: Any
    estimators: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Codec:
    """How one stored class becomes data and back.

    Attributes
    ----------
    format
        Stable name of the stored layout, e.g. ``'edgewise.calibration'``.
    version
        The ``format_version`` :attr:`encode` writes; :attr:`decode` gets the stored one
        and must read every earlier version.
    type_of
        Returns the class this codec encodes (a callable, so a module can register a
        codec for a class it may only import lazily).
    encode
        ``obj -> Encoded``.
    decode
        ``(state, estimators, format_version) -> obj``.
    """

    format: str
    version: int
    type_of: Callable[[], type]
    encode: Callable[[Any], Encoded]
    decode: Callable[[Any, Mapping[str, Any], int], Any]


_CODECS: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    """Register ``codec`` under its format name (re-registering replaces it)."""
    _CODECS[codec.format] = codec
    return codec


def registered_formats() -> tuple[str, ...]:
    """Names of the formats that can be read now (``json`` included)."""
    return (JSON_FORMAT, *sorted(_CODECS))


def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain JSON data that survives a round trip unchanged
    (tuples come back as lists; dict keys must be strings)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return True
    if isinstance(value, list | tuple):
        return all(is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in value.items())
    return False


def codec_for(obj: Any) -> Codec | None:
    """The registered codec whose class ``obj`` is an instance of, if any."""
    for codec in _CODECS.values():
        if isinstance(obj, codec.type_of()):
            return codec
    return None


def _describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def dump_estimators(estimators: Mapping[str, Any]) -> bytes:
    """skops bytes of a mapping of fitted scikit-learn estimators (deflated)."""
    import skops.io as sio

    return bytes(sio.dumps(dict(estimators), compression=zipfile.ZIP_DEFLATED, compresslevel=6))


def load_estimators(data: bytes) -> dict[str, Any]:
    """The estimators of :func:`dump_estimators`, trusting only :data:`TRUSTED_TYPES`.

    Raises
    ------
    ArtifactError
        If the payload holds a type outside skops' defaults and :data:`TRUSTED_TYPES`.
    """
    import skops.io as sio

    untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(TRUSTED_TYPES))
    if untrusted:
        raise ArtifactError(
            f"stored estimators hold untrusted types ({', '.join(untrusted)}); refusing to load"
        )
    loaded = sio.loads(data, trusted=list(TRUSTED_TYPES))
    if not isinstance(loaded, dict):
        raise ArtifactError("stored estimators are not a mapping")
    return loaded


def document(fmt: str, version: int, state: Any, estimators: bytes | None = None) -> bytes:
    """The stored bytes of an artifact (see the module docstring)."""
    doc: dict[str, Any] = {"format": fmt, "format_version": int(version), "state": state}
    if estimators:
        doc["estimators"] = base64.b64encode(estimators).decode("ascii")
    # Non-finite floats (a NaN cross-validation score) are written as NaN/Infinity,
    # as in the knowledge base's JSON columns; json.loads reads them back.
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encode(obj: Any) -> tuple[bytes, Codec | None]:
    """Document bytes of ``obj`` and the codec used (``None`` for plain JSON data).

    Raises
    ------
    ArtifactError
        If ``obj`` is neither plain JSON data nor of a registered class.
    """
    if is_plain(obj):
        return document(JSON_FORMAT, 1, obj), None
    codec = codec_for(obj)
    if codec is not None:
        enc = codec.encode(obj)
        payload = dump_estimators(enc.estimators) if enc.estimators else None
        return document(codec.format, codec.version, enc.state, payload), codec
    raise ArtifactError(
        f"cannot store a {_describe(obj)}: artifacts are stored as data and no codec is "
        "registered for this type (see edgewise.kb.codecs)"
    )


def read_document(blob: bytes) -> dict[str, Any]:
    """The parsed document of stored bytes (checks its shape, loads nothing else)."""
    if blob[:1] == b"\x80":
        raise ArtifactError(
            "this artifact is still a pickle from an older edgewise: open the knowledge base "
            "with KnowledgeBase.open to migrate it"
        )
    try:
        doc = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ArtifactError("stored artifact is not a JSON document") from None
    if not isinstance(doc, dict) or "format" not in doc or "format_version" not in doc:
        raise ArtifactError("stored artifact has no format or format_version")
    return doc


def decode(blob: bytes) -> Any:
    """The object stored in ``blob`` (the inverse of :func:`encode`).

    Raises
    ------
    ArtifactError
        For a format nobody registered, a format version newer than its codec reads,
        a pickle the migration could not convert, or a malformed document.
    """
    doc = read_document(blob)
    fmt, version = str(doc["format"]), int(doc["format_version"])
    if fmt == JSON_FORMAT:
        return doc["state"]
    if fmt == LEGACY_PICKLE_FORMAT:
        state = doc.get("state") or {}
        raise ArtifactError(
            f"this artifact ({state.get('python_type', 'unknown type')}) was written by an "
            f"older edgewise and could not be converted ({state.get('reason', 'unknown')}): "
            "fit it again"
        )
    codec = _CODECS.get(fmt)
    if codec is None:
        raise ArtifactError(
            f"no codec for stored format {fmt!r}; known: {', '.join(registered_formats())} "
            "(import the module that defines it)"
        )
    if version > codec.version:
        raise ArtifactError(
            f"stored format {fmt!r} is version {version}, this edgewise reads up to {codec.version}"
        )
    raw = doc.get("estimators")
    estimators = load_estimators(base64.b64decode(raw)) if raw else {}
    return codec.decode(doc["state"], estimators, version)


__all__ = [
    "JSON_FORMAT",
    "LEGACY_PICKLE_FORMAT",
    "TRUSTED_TYPES",
    "ArtifactError",
    "Codec",
    "Encoded",
    "codec_for",
    "decode",
    "document",
    "dump_estimators",
    "encode",
    "is_plain",
    "load_estimators",
    "read_document",
    "register",
    "registered_formats",
]
