"""A device's background app may be the user's registered model: checked before any
process starts, then served by the background process from the knowledge base."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import CARD, save_torchscript, tiny_cnn

from edgewise.config import BackgroundApp, DevicePool, DeviceSpec
from edgewise.errors import UnknownNameError
from edgewise.kb import KnowledgeBase
from edgewise.registry import check_refs, register_model


def _check(devices: list[DeviceSpec], kb: KnowledgeBase) -> None:
    """What ``edgewise retrain`` checks before its pool starts."""
    check_refs(DevicePool(devices=devices).background_models(), kb)


def _device(name: str, model: str) -> DeviceSpec:
    return DeviceSpec(
        name=name, cpus=1.0, background=BackgroundApp(model=model, rate_rps=5, deadline_ms=50)
    )


def test_an_unregistered_background_model_is_one_line_naming_the_device(
    kb: KnowledgeBase, models_dir: Path
) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    _check([_device("a", "tiny:v1"), _device("b", "digits_cnn")], kb)
    with pytest.raises(UnknownNameError) as err:
        _check([_device("a", "tiny:v1"), _device("b", "tiny:v3")], kb)
    assert str(err.value).startswith("device 'b', background app: ")
    assert "v3" in str(err.value) and "\n" not in str(err.value)


def test_a_registered_background_model_serves_from_the_knowledge_base(
    kb: KnowledgeBase, models_dir: Path, tmp_path: Path
) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    out = tmp_path / "bg.log"
    cmd = [sys.executable, "-m", "edgewise.retrain.background", "--model", "tiny:v1"]
    cmd += ["--rate", "100", "--out", str(out), "--duration", "1.5"]
    done = subprocess.run(
        cmd,
        env=dict(os.environ, EDGEWISE_DB_URL=kb.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in out.read_text().splitlines()]
    assert len(rows) >= 50
    assert all(0 < float(latency_ms) < 1000 for _, latency_ms, _ in rows)
