"""Model references: a zoo name, a registry entry ``NAME[:VERSION]``, or a path.

Pure parsing, no I/O beyond asking whether a path exists. The rules, in order:

1. a zoo name (:data:`edgewise.workloads._names.MODEL_NAMES`) is the built-in model;
2. anything that exists on disk, or holds a ``/``, a ``.`` or a ``~``, is a path;
3. ``NAME``, ``NAME:vN`` or ``NAME:N`` (NAME of letters, digits, ``_`` and ``-``) is a
   registry entry (no version: the latest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgewise.errors import UnknownNameError
from edgewise.paths import user_path
from edgewise.workloads._names import MODEL_NAMES

__all__ = ["NAME_PATTERN", "ModelRef", "check_name", "format_ref", "parse_ref"]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}"
_REGISTRY = re.compile(rf"^({NAME_PATTERN})(?::v?(\d+))?$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference.

    Attributes
    ----------
    kind : {'zoo', 'registry', 'path'}
        What the reference names.
    name : str
        Zoo name, registry name, or the text of the path.
    version : int or None
        The registry version asked for (``None``: the latest).
    path : Path or None
        The path, for ``kind == 'path'``.
    """

    kind: Literal["zoo", "registry", "path"]
    name: str
    version: int | None = None
    path: Path | None = None


def format_ref(name: str, version: int) -> str:
    """``NAME:vN``."""
    return f"{name}:v{version}"


def check_name(name: str) -> str:
    """Return ``name`` if it can name a registered model.

    Raises
    ------
    UnknownNameError
        If it is a zoo name (those stay built-ins) or not of letters, digits, ``_``, ``-``.
    """
    if name in MODEL_NAMES:
        raise UnknownNameError(
            f"model name {name!r} is a built-in zoo model; register under another name"
        )
    if not re.fullmatch(NAME_PATTERN, name):
        raise UnknownNameError(
            f"model name {name!r}: use letters, digits, '_' and '-' (starting with a letter "
            "or digit, at most 100)"
        )
    return name


def parse_ref(ref: str) -> ModelRef:
    """Parse a model reference (see the module docstring for the rules).

    Raises
    ------
    UnknownNameError
        If ``ref`` is empty, or a ``NAME:VERSION`` whose version is not ``vN``/``N``
        with N ≥ 1.
    """
    text = ref.strip()
    if not text:
        raise UnknownNameError("empty model reference: give a zoo name, NAME[:vN] or a path")
    if text in MODEL_NAMES:
        return ModelRef("zoo", text)
    path = user_path(text)
    match = _REGISTRY.match(text)
    if path.exists() or any(c in text for c in "/.~\\") or (match is None and ":" not in text):
        return ModelRef("path", text, path=path)
    if match is None:
        raise UnknownNameError(
            f"unknown model {text!r}: expected a zoo name ({', '.join(MODEL_NAMES)}), "
            "a registered NAME or NAME:vN (N >= 1), or a path"
        )
    version = int(match.group(2)) if match.group(2) is not None else None
    if version is not None and version < 1:
        raise UnknownNameError(f"model reference {text!r}: versions start at v1")
    return ModelRef("registry", match.group(1), version)
