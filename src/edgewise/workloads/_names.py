"""Zoo model names, importable without torch (the CLI lists them in ``--help``).

The list itself lives with the specs that validate against it (:data:`edgewise.config.MODEL_NAMES`).
"""

from __future__ import annotations

from edgewise.config import MODEL_NAMES

__all__ = ["MODEL_NAMES"]
