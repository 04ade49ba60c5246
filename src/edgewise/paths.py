"""Where edgewise keeps its state: ``$EDGEWISE_HOME`` (default ``~/.edgewise``)."""

from __future__ import annotations

import os
from pathlib import Path

from edgewise.errors import EnvironmentProblem


def home() -> Path:
    """The edgewise state directory, created on first use.

    Raises
    ------
    EnvironmentProblem
        When the directory cannot be created or written (a read-only file system, a file
        in the way): one line naming it and ``EDGEWISE_HOME``.
    """
    root = Path(os.environ.get("EDGEWISE_HOME", "~/.edgewise")).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem(
            f"state directory {root} cannot be created ({err.strerror or err}); "
            "set EDGEWISE_HOME to a writable directory"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise EnvironmentProblem(
            f"state directory {root} is not writable; set EDGEWISE_HOME to a writable directory"
        )
    return root


def user_path(text: str | os.PathLike[str]) -> Path:
    """``text`` as a path with ``~`` expanded; left as given where ``~user`` names a user
    without a home directory (``Path.expanduser`` raises ``RuntimeError`` there)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def data_file(name: str) -> Path:
    """A file shipped inside the package (``edgewise/data``)."""
    return Path(__file__).parent / "data" / name
