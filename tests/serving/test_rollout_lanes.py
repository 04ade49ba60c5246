"""A replica's rollout parts without Ray: the share split, the canary tally, labels, and
the coordinator's rollout state."""

from __future__ import annotations

import pytest

from edgewise.serving.rollout import CanaryStats
from edgewise.serving.runtime.coordinator import CoordinatorState
from edgewise.serving.runtime.lanes import CanaryTally, ShareSplitter, parse_labels


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5, 0.9])
def test_the_splitter_sends_exactly_the_share_spread_evenly(share: float) -> None:
    s = ShareSplitter(share)
    picks = [s.to_canary() for _ in range(1000)]
    assert sum(picks) == round(1000 * share)
    # Evenly: no window of 1/share requests holds more than one canary request (+1).
    window = round(1 / share)
    assert max(sum(picks[i : i + window]) for i in range(1000 - window)) <= 2


def test_tally_counts_labels_agreement_and_starts_over_when_taken() -> None:
    t = CanaryTally("r1")
    t.latencies_ms += [5.0, 7.0]
    t.stable_latencies_ms.append(3.0)
    t.count_labels(True, ["cat", "dog"], ["cat", "cat"])
    t.count_labels(False, ["cat"], ["cat"])
    t.count_labels(True, ["cat"], None)
    t.count_agreement(["cat", "dog"], ["cat", "cat"])
    t.count_agreement([[1.0, 2.0]], [[1.0, 2.0001]])
    out = t.take()
    assert out == {
        "rollout": "r1",
        "latencies_ms": [5.0, 7.0],
        "stable_latencies_ms": [3.0],
        "errors": 0,
        "compared": 3,
        "agreed": 2,
        "labelled": 2,
        "correct": 1,
        "stable_labelled": 1,
        "stable_correct": 1,
    }
    assert t.take()["compared"] == 0 and t.latencies_ms == [] and t.rollout == "r1"


def test_labels_header_one_per_sample() -> None:
    assert parse_labels(None, 1) is None and parse_labels(" ", 1) is None
    assert parse_labels("cat, dog", 2) == ["cat", "dog"]
    with pytest.raises(ValueError, match="2 labels for 1 samples"):
        parse_labels("cat,dog", 1)


def test_coordinator_carries_the_assignment_and_sums_the_canary() -> None:
    s = CoordinatorState("app", 2, 0.5)
    for rid in ("h:1", "h:2"):
        s.register(rid, 1, "node", 0.5)
    assert s.assignment() == {"rollout": None, "serving_ref": None}
    r = s.start_rollout("digits:v2", 0.1)
    lane = {"rollout": r["id"], "canary_ready": True, "promoted": False}
    s.report_canary("h:1", {"rollout": r["id"], "latencies_ms": [4.0], "agreed": 1}, lane)
    s.report_canary(
        "h:2",
        {"rollout": r["id"], "latencies_ms": [6.0], "stable_latencies_ms": [2.0], "agreed": 1},
        lane,
    )
    s.report_canary("h:2", {"rollout": "old", "latencies_ms": [99.0]}, lane)  # stale: ignored
    view = s.rollout_view()
    stats = CanaryStats.from_dict(view["canary"])
    assert stats.latencies_ms == (4.0, 6.0) and stats.agreed == 2
    assert stats.stable_latencies_ms == (2.0,)
    assert set(view["lanes"]) == {"h:1", "h:2"}
    s.promote(["h:1"])
    assert s.assignment()["rollout"]["promoted"] == ["h:1"]
    assert s.assignment()["rollout"]["share"] == 0.0
    s.finish_rollout(True)
    assert s.assignment() == {"rollout": None, "serving_ref": "digits:v2"}
    s.start_rollout("digits:v3", 0.1)
    s.finish_rollout(False)  # rolled back: the promoted version keeps serving
    assert s.assignment() == {"rollout": None, "serving_ref": "digits:v2"}
