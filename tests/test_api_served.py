"""The use cases' recording of which version served: references resolved, stop always closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edgewise.api import served as served_api
from edgewise.api.rollout import record_outcome
from edgewise.api.served import ServedRecorder, record_served, recorded_serving, served_model
from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.kb.served import CANARY, SERVING, served_history
from edgewise.serving.rollout import CanaryStats
from edgewise.serving.runtime.rollout import RolloutOutcome

CARD = {
    "task": "classification",
    "input": {"kind": "image", "shape": [1, 8, 8]},
    "labels": ["a", "b"],
}


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    store = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    with store.transaction() as s:
        for version in (1, 2):
            s.add(
                m.RegisteredModel(
                    name="tiny",
                    version=version,
                    format="torchscript",
                    sha256=f"{version}" * 64,
                    path=f"models/{version}.pt",
                    card=CARD,
                )
            )
    return store


def test_references_are_recorded_as_the_service_resolves_them(kb: KnowledgeBase) -> None:
    latest = served_model("tiny", kb)
    assert (latest.ref, latest.model, latest.version) == ("tiny:v2", "tiny", 2)
    assert served_model("tiny:v1", kb).version == 1
    zoo = served_model("digits_cnn", kb)
    assert (zoo.ref, zoo.model, zoo.version) == ("digits_cnn", "digits_cnn", None)
    path = served_model("/models/net.onnx", kb)
    assert (path.model, path.version) == ("/models/net.onnx", None)


def test_a_service_that_fails_still_closes_its_interval(kb: KnowledgeBase) -> None:
    with pytest.raises(RuntimeError), recorded_serving(kb, "svc", "tiny:v1"):
        assert served_history(kb)[0].until is None
        raise RuntimeError("controller died")
    (interval,) = served_history(kb)
    assert interval.served.ref == "tiny:v1" and interval.ended_because == "stopped"
    assert interval.until is not None


def test_variant_switches_are_recorded_in_order_before_the_stop(kb: KnowledgeBase) -> None:
    t0 = datetime.now(UTC)
    with recorded_serving(kb, "svc", "tiny:v1") as served:
        served.switched("digits_cnn", at=t0 + timedelta(days=1))
        served.switched("tiny", at=t0 + timedelta(days=2))
    rows = served_history(kb, "svc")
    assert [(r.served.ref, r.started_because, r.ended_because) for r in rows] == [
        ("tiny:v1", "serve started", "variant switched"),
        ("digits_cnn", "variant switched", "variant switched"),
        ("tiny:v2", "variant switched", "stopped"),
    ]
    assert rows[1].since == t0 + timedelta(days=1) and rows[2].until is not None


def test_a_switch_waits_for_no_write_and_a_failed_one_is_logged(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    entered, release = threading.Event(), threading.Event()
    real = served_api.record_served

    def locked(*args: Any, **kw: Any) -> Any:  # the knowledge base locked, then gone
        entered.set()
        release.wait(10)
        if args[3] == "ghost:v9":
            return real(*args, **kw)
        raise served_api.SQLAlchemyError("database is locked")

    monkeypatch.setattr(served_api, "record_served", locked)
    recorder = ServedRecorder(kb, "svc")
    recorder.switched("digits_cnn")
    assert entered.wait(10)  # the writer is stuck in the knowledge base ...
    recorder.switched("ghost:v9")  # ... and a switch still returns at once
    release.set()
    assert recorder.close()
    assert recorder.failed == 2 and served_history(kb) == []
    assert "could not record that service 'svc' switched to digits_cnn" in caplog.text
    assert "ghost" in caplog.text


def _outcome(promoted: bool, ref: str = "tiny:v2") -> Any:
    reason = "canary within the SLO" if promoted else "canary p99 310 ms > SLO 150 ms"
    return RolloutOutcome(ref, promoted, reason, CanaryStats(), 1.0, 2.0, 0.5, 2, [])


def test_a_rollout_records_the_canary_and_its_verdict(kb: KnowledgeBase) -> None:
    t0 = datetime.now(UTC) - timedelta(seconds=60)
    record_served(kb, "svc", "serve started", "tiny:v1", at=t0)
    since = t0 + timedelta(seconds=30)
    assert record_outcome(kb.url, "svc", _outcome(False), since) == []
    assert record_outcome(kb.url, "svc", _outcome(True), since) == []
    got = [(i.served.ref, i.role, i.ended_because) for i in served_history(kb, "svc")]
    assert got == [
        ("tiny:v1", SERVING, "rollout promoted"),
        ("tiny:v2", CANARY, "rollout rolled back: canary p99 310 ms > SLO 150 ms"),
        ("tiny:v2", CANARY, "rollout promoted"),
        ("tiny:v2", SERVING, None),
    ]


def test_a_rollout_that_cannot_be_recorded_says_so_in_a_step(kb: KnowledgeBase) -> None:
    steps = record_outcome(kb.url, "svc", _outcome(True, "ghost:v9"), datetime.now(UTC))
    assert len(steps) == 1 and "not recorded" in steps[0] and "ghost" in steps[0]
    assert served_history(kb) == []
