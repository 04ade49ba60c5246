"""The campaign's typed records read and write the stored dict shape unchanged."""

from __future__ import annotations

import dataclasses

import pytest

from edgewise.interference.campaign import (
    CampaignConfig,
    HeldOutPoint,
    RunRecord,
    SoloReference,
    prefix,
    solo_due,
)


def _stored(index: int, flags: list[str], status: str = "ok") -> dict[str, object]:
    return {
        "id": 7 + index,
        "index": index,
        "design": {"cpu": 0.5},
        "achieved": {"cpu": 0.45, "target_cpu": 0.2},
        "latency": {"p50": 10.0, "p95": 12.0, "p99": 15.0, "mean": 10.5, "n": 60},
        "status": status,
        "flags": flags,
    }


def test_run_record_round_trips_the_stored_shape() -> None:
    d = _stored(3, ["foreign_cpu=0.40"])
    rec = RunRecord.from_dict(d)
    assert rec.as_dict() == d
    assert rec.is_disturbed and rec.is_ok and not rec.is_solo and rec.p("p99") == 15.0
    solo = RunRecord.from_dict(_stored(0, ["solo"], status="flagged"))
    assert solo.is_solo and not solo.is_ok and not solo.is_disturbed
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.status = "flagged"  # type: ignore[misc]


def test_run_record_takes_defaults_for_missing_keys() -> None:
    rec = RunRecord.from_dict({"index": 2, "latency": {"p50": 1.0}})
    assert (rec.status, rec.flags, rec.design, rec.id) == ("ok", (), {}, None)


def test_solo_reference_is_the_median_of_the_baselines() -> None:
    solos = [
        RunRecord.from_dict(_stored(i, ["solo"]) | {"latency": {"p50": v, "p95": v, "p99": v}})
        for i, v in enumerate([10.0, 30.0, 20.0])
    ]
    ref = SoloReference.median_of(solos)
    assert ref == SoloReference(20.0, 20.0, 20.0, 0.2)
    assert ref.as_dict() == {"p50": 20.0, "p95": 20.0, "p99": 20.0, "cpu": 0.2}
    assert SoloReference.from_mapping(ref.as_dict()) == ref
    assert SoloReference.median_of([]) == SoloReference.placeholder()


def test_prefix_keeps_the_callers_objects_and_solo_due_counts_baselines() -> None:
    runs = [_stored(0, ["solo"]), _stored(1, []), _stored(2, []), _stored(3, [])]
    assert prefix(runs, 2) == runs[:3]
    records = [RunRecord.from_dict(r) for r in runs]
    cfg = CampaignConfig(name="x", solo_runs=1, solo_every=2)
    assert solo_due(cfg, records[:3])  # two stressed runs: a second baseline is due
    assert not solo_due(cfg, records[:2])


def test_held_out_point_round_trips_and_gives_its_first_window() -> None:
    d = {
        "pos": 1,
        "design": {"cpu": 0.3},
        "achieved": {"cpu": 0.35},
        "latency": {"p50": 11.0, "p99": 20.0},
        "repeats": [
            {"achieved": {"cpu": 0.3}, "latency": {"p50": 10.0, "p99": 19.0}},
            {"achieved": {"cpu": 0.4}, "latency": {"p50": 12.0, "p99": 21.0}},
        ],
        "reference": {"p50": 5.0, "p95": 6.0, "p99": 7.0},
    }
    h = HeldOutPoint.from_dict(d)
    assert h.as_dict() == d
    first = h.first_window()
    assert first.latency == {"p50": 10.0, "p99": 19.0} and first.reference == h.reference
