"""Fixtures of the registry tests: a builder module, a knowledge base, a source folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewise.kb import KnowledgeBase


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable builder module ``tiny_builder:build`` making an untrained TinyCNN."""
    src = tmp_path / "builders"
    src.mkdir()
    (src / "tiny_builder.py").write_text(
        "import torch\n"
        "from torch import nn\n\n\n"
        "class TinyCNN(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)\n"
        "        self.head = nn.Linear(4 * 8 * 8, 3)\n\n"
        "    def forward(self, x):\n"
        "        return self.head(torch.relu(self.conv(x)).flatten(1))\n\n\n"
        "def build():\n"
        "    return TinyCNN()\n"
    )
    monkeypatch.syspath_prepend(str(src))
    return "tiny_builder:build"


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    """A fresh SQLite knowledge base."""
    with KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}") as opened:
        yield opened


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """Where a test saves its source models."""
    out = tmp_path / "src-models"
    out.mkdir()
    return out
