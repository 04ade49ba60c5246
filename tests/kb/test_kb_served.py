"""Which version served when: the pure plan of each change, and its transactional write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.kb.served import (
    CANARY,
    SERVING,
    Interval,
    ServedChange,
    ServedModel,
    plan_change,
    record_change,
    served_history,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
V1 = ServedModel("digits:v1", "digits", 1)
V2 = ServedModel("digits:v2", "digits", 2)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def change(kind: str, s: float, **kw: object) -> ServedChange:
    return ServedChange("svc", kind, at(s), **kw)  # type: ignore[arg-type]


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    return KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")


def test_serve_started_opens_one_serving_interval_and_closes_a_stale_one() -> None:
    closed, new = plan_change([], change("serve started", 0, served=V1))
    assert closed == [] and len(new) == 1
    assert (new[0].role, new[0].since, new[0].until) == (SERVING, at(0), None)
    assert new[0].started_because == "serve started"
    stale = Interval("svc", V1, SERVING, at(0), id=7)
    other = Interval("other", V1, SERVING, at(0), id=8)
    closed, _ = plan_change([stale, other], change("serve started", 60, served=V2))
    assert [c.id for c in closed] == [7] and closed[0].until == at(60)
    assert "not stopped cleanly" in str(closed[0].ended_because)


def test_promotion_closes_the_old_version_and_adds_the_canary_and_the_new_one() -> None:
    serving = Interval("svc", V1, SERVING, at(0), id=1)
    closed, new = plan_change(
        [serving], change("rollout promoted", 50, served=V2, canary_since=at(40))
    )
    assert [(c.id, c.until, c.ended_because) for c in closed] == [(1, at(50), "rollout promoted")]
    canary, now = new
    assert (canary.role, canary.since, canary.until) == (CANARY, at(40), at(50))
    assert canary.ended_because == "rollout promoted"
    assert (now.role, now.served, now.since, now.until) == (SERVING, V2, at(50), None)


def test_a_variant_switch_closes_the_old_variant_and_opens_the_new_one() -> None:
    small = ServedModel("digits_cnn", "digits_cnn")
    serving = Interval("svc", V1, SERVING, at(0), id=1)
    other = Interval("other", V1, SERVING, at(0), id=2)
    closed, new = plan_change([serving, other], change("variant switched", 30, served=small))
    assert [(c.id, c.until, c.ended_because) for c in closed] == [(1, at(30), "variant switched")]
    (now,) = new
    assert (now.role, now.served, now.since, now.until) == (SERVING, small, at(30), None)
    assert now.started_because == "variant switched"


def test_the_history_of_a_variant_switch(kb: KnowledgeBase) -> None:
    record_change(kb, change("serve started", 0, served=V1))
    record_change(kb, change("variant switched", 20, served=V2))
    record_change(kb, change("stopped", 40))
    first, second = served_history(kb, "svc")
    assert (first.served, first.until, first.ended_because) == (V1, at(20), "variant switched")
    assert (second.served, second.started_because, second.until) == (V2, "variant switched", at(40))


def test_rollback_keeps_the_serving_version_and_says_why() -> None:
    serving = Interval("svc", V1, SERVING, at(0), id=1)
    closed, new = plan_change(
        [serving],
        change("rollout rolled back", 50, served=V2, canary_since=at(40), reason="p99 too high"),
    )
    assert closed == []
    (canary,) = new
    assert canary.role == CANARY and canary.until == at(50)
    assert canary.ended_because == "rollout rolled back: p99 too high"


def test_stop_closes_everything_open_and_never_before_it_began() -> None:
    open_ = [Interval("svc", V1, SERVING, at(10), id=1)]
    closed, new = plan_change(open_, change("stopped", 5))
    assert new == [] and closed[0].until == at(10) and closed[0].ended_because == "stopped"


def test_a_change_without_what_it_concerns_is_refused() -> None:
    with pytest.raises(ValueError, match="model"):
        change("serve started", 0)
    with pytest.raises(ValueError, match="canary"):
        change("rollout promoted", 0, served=V2)


def test_the_history_of_serve_promote_rollback_stop(kb: KnowledgeBase) -> None:
    record_change(kb, change("serve started", 0, served=V1))
    record_change(kb, change("rollout promoted", 50, served=V2, canary_since=at(40)))
    bad = ServedModel("/tmp/slow.pt", "/tmp/slow.pt")
    record_change(kb, change("rollout rolled back", 90, served=bad, canary_since=at(80)))
    record_change(kb, change("stopped", 120))
    rows = [(i.served.ref, i.role, i.since, i.until, i.ended_because) for i in served_history(kb)]
    assert rows == [
        ("digits:v1", SERVING, at(0), at(50), "rollout promoted"),
        ("digits:v2", CANARY, at(40), at(50), "rollout promoted"),
        ("digits:v2", SERVING, at(50), at(120), "stopped"),
        ("/tmp/slow.pt", CANARY, at(80), at(90), "rollout rolled back"),
    ]
    assert served_history(kb, "other") == []


def test_a_failed_write_leaves_nothing(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    record_change(kb, change("serve started", 0, served=V1))
    before = [i.as_dict() for i in served_history(kb)]

    def broken(self: object, rows: list[m.ServedVersion]) -> None:
        raise IntegrityError("insert", {}, Exception("disk full"))

    monkeypatch.setattr("sqlalchemy.orm.Session.add_all", broken)
    with pytest.raises(IntegrityError):
        record_change(kb, change("rollout promoted", 50, served=V2, canary_since=at(40)))
    monkeypatch.undo()
    assert [i.as_dict() for i in served_history(kb)] == before
    assert served_history(kb)[0].until is None  # the close was rolled back with the insert
