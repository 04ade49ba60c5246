"""Shared test fixtures: every test gets its own EDGEWISE_HOME and no DB URL override."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch loads


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "edgewise-home"
    monkeypatch.setenv("EDGEWISE_HOME", str(home))
    monkeypatch.delenv("EDGEWISE_DB_URL", raising=False)
    yield home
