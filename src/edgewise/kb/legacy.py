"""Reading the pickled artifacts of edgewise 0.1, once, to store them as data.

edgewise 0.1 stored every fitted model as a pickle. Revision ``0002`` of the
knowledge-base schema converts each such row into a data document
(:mod:`edgewise.kb.codecs`) with :func:`convert_pickle`; nothing else in edgewise reads
a pickle. These pickles were written by our own earlier release, so unpickling them is
acceptable once, and even then the unpickler only resolves classes of edgewise and
anything of numpy, scipy and scikit-learn (plus a few plain builtins): a pickle that
names ``os.system`` or ``builtins.eval`` is refused, not run.

A row that cannot be converted (its class no longer exists, or has no codec) is kept
as format ``edgewise.legacy-pickle`` with the original bytes and the reason, so no data
is lost and :func:`edgewise.kb.load_model` says in one line what happened.
"""

from __future__ import annotations

import base64
import importlib
import io
import pickle
from typing import Any

from edgewise.kb.codecs import LEGACY_PICKLE_FORMAT, ArtifactError, document, encode, is_plain

#: The formats (version 1) whose state is exactly the plain data edgewise 0.1 pickled
#: under these model kinds.
PLAIN_KIND_FORMATS: dict[str, str] = {
    "calibration": "edgewise.calibration",
    "host_caps": "edgewise.host-caps",
    "retrain-profile": "edgewise.retrain-profiles",
}

_LIBRARY_PREFIXES = ("numpy", "scipy", "sklearn")
_SAFE_BUILTINS = frozenset(
    {
        "bool",
        "bytearray",
        "bytes",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "object",
        "range",
        "set",
        "slice",
        "str",
        "tuple",
    }
)
_SAFE_HELPERS = frozenset({("copyreg", "_reconstructor"), ("collections", "OrderedDict")})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only edgewise classes, numpy/scipy/scikit-learn names and plain builtins."""

    def find_class(self, module: str, name: str) -> Any:
        top = module.split(".")[0]
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _SAFE_HELPERS or top in _LIBRARY_PREFIXES:
            return super().find_class(module, name)
        if top == "edgewise":
            found = getattr(importlib.import_module(module), name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an old pickle")


def restricted_loads(blob: bytes) -> Any:
    """Unpickle ``blob`` allowing only the names listed in the module docstring."""
    return _RestrictedUnpickler(io.BytesIO(blob)).load()


def is_pickle(blob: bytes) -> bool:
    """Whether ``blob`` is a pickle (protocol 2 or later, as edgewise 0.1 wrote them)."""
    return blob[:1] == b"\x80"


def _kept(blob: bytes, python_type: str, reason: str) -> tuple[bytes, str]:
    state = {
        "python_type": python_type,
        "reason": " ".join(reason.split())[:300],
        "pickle": base64.b64encode(blob).decode("ascii"),
    }
    return document(LEGACY_PICKLE_FORMAT, 1, state), LEGACY_PICKLE_FORMAT


def convert_pickle(kind: str, blob: bytes, python_type: str = "unknown") -> tuple[bytes, str]:
    """The data document replacing an edgewise 0.1 pickle, and its format name.

    Parameters
    ----------
    kind
        The row's model kind (``surrogate``, ``calibration``, ``host_caps``, ...).
    blob
        The pickle bytes.
    python_type
        The type the old row's metadata recorded (kept in the message if unconvertible).

    Returns
    -------
    tuple of (bytes, str)
        The document bytes and its format (``edgewise.legacy-pickle`` if the row could
        not be converted; its original bytes are kept inside).
    """
    try:
        obj = restricted_loads(blob)
    except Exception as err:  # any failure to unpickle keeps the row as it was
        return _kept(blob, python_type, f"cannot unpickle: {err}")
    if is_plain(obj) and kind in PLAIN_KIND_FORMATS:
        fmt = PLAIN_KIND_FORMATS[kind]
        return document(fmt, 1, obj), fmt
    try:
        doc, codec = encode(obj)
    except ArtifactError as err:
        return _kept(blob, python_type, str(err))
    return doc, "json" if codec is None else codec.format


__all__ = ["PLAIN_KIND_FORMATS", "convert_pickle", "is_pickle", "restricted_loads"]
