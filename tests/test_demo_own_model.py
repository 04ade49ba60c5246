"""The demo's own-model loop at a reduced size: served accuracy on drifted digits recovers.

Real Ray Serve, real emulated devices and the real rollout gate (about a minute): the
model trained on clean digits is registered, served, re-trained on two devices on the
turned digits into the next version, rolled out, and measured through HTTP before and
after; the knowledge base shows v1 serving until the promotion, then v2 until the stop.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from edgewise.demo import DemoSummary
from edgewise.demo.ownloop import MODEL_NAME, LoopSettings, run_own_model
from edgewise.kb.served import CANARY, SERVING, served_history


def _devices(tmp_path: Path) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(
        "devices:\n"
        "  - {name: a, cpus: 1.0, memory_mb: 2048}\n"
        "  - {name: b, cpus: 0.5, memory_mb: 2048}\n"
    )
    return path


@pytest.mark.slow
def test_the_loop_registers_serves_retrains_rolls_out_and_recovers(tmp_path: Path) -> None:
    from edgewise.kb import KnowledgeBase
    from edgewise.registry import list_models

    kb = KnowledgeBase.open(None)
    summary = DemoSummary()
    settings = LoopSettings(
        epochs=3,
        steps=12,
        global_batch=64,
        devices=_devices(tmp_path),
        kill_at_step=None,
        min_requests=30,  # the gate judges by labels from 30 labelled canary answers
        port=0,
    )
    out = run_own_model(kb, Console(stderr=True, quiet=True), summary, 0, settings)
    assert out.v1 == f"{MODEL_NAME}:v1" and out.v2 == f"{MODEL_NAME}:v2", summary.rows
    assert out.promoted, out.rollout_reason
    assert out.drift_before.answered_by == (out.v1,)
    assert out.drift_after.answered_by == (out.v2,)
    assert out.drift_after.requests == out.drift_before.requests > 100
    assert out.drift_after.accuracy > out.drift_before.accuracy + 0.1
    assert out.clean.accuracy > out.drift_before.accuracy
    whats = [what for _pillar, what, _value in summary.rows]
    for words in (
        "exported (safetensors + card) and registered",
        "served accuracy, clean held-out digits (HTTP)",
        "registered with its lineage",
        "client requests during the rollout: failed",
    ):
        assert words in whats, whats
    assert summary.value("exported (safetensors + card) and registered") == out.v1
    assert summary.value("client requests during the rollout: failed").startswith("0 / ")
    before = next(value for _p, what, value in summary.rows if "before the loop" in what)
    after = next(value for _p, what, value in summary.rows if "after the loop" in what)
    assert before.startswith(f"{out.drift_before.accuracy:.3f}")
    assert after.startswith(f"{out.drift_after.accuracy:.3f}") and "points" in after
    v2 = {v.ref: v for v in list_models(kb)}[out.v2]
    assert v2.parent == out.v1 and v2.data_fingerprint is not None
    assert "own model" in summary.timings
    served = [
        (i.served.ref, i.role, i.started_because, i.ended_because)
        for i in served_history(kb, MODEL_NAME)
    ]
    assert served == [
        (out.v1, SERVING, "serve started", "rollout promoted"),
        (out.v2, CANARY, "rollout started", "rollout promoted"),
        (out.v2, SERVING, "rollout promoted", "stopped"),
    ], served
