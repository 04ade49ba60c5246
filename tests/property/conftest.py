"""Fixtures of the bad-input property suite (see propkit.py)."""

from __future__ import annotations

from propkit import sandbox

__all__ = ["sandbox"]
