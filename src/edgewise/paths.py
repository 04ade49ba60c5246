"""Where edgewise keeps its state: ``$EDGEWISE_HOME`` (default ``~/.edgewise``)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The edgewise state directory, created on first use."""
    root = Path(os.environ.get("EDGEWISE_HOME", "~/.edgewise")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_file(name: str) -> Path:
    """A file shipped inside the package (``edgewise/data``)."""
    return Path(__file__).parent / "data" / name
