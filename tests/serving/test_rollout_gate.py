"""The rollout gate, purely: observations in, a verdict with its reason out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from edgewise.errors import SpecError
from edgewise.serving.rollout import (
    CanaryContext,
    CanaryStats,
    RolloutPolicy,
    Verdict,
    check_compatible,
    judge,
    promotion_steps,
)

POLICY = RolloutPolicy(min_requests=20, min_labelled=10, max_canary_s=60.0)


def make_ctx(**overrides: Any) -> CanaryContext:
    stats = {"latencies_ms": (10.0,) * 40, "compared": 40, "agreed": 39}
    stats.update(overrides.pop("canary", {}))
    base: dict[str, Any] = {
        "now": 30.0,
        "started_at": 0.0,
        "slo_ms": 50.0,
        "percentile": 99.0,
        "canary": CanaryStats(**stats),
    }
    base.update(overrides)
    return CanaryContext(**base)


def test_a_fast_agreeing_canary_is_promoted_with_its_figures() -> None:
    v = judge(make_ctx(), POLICY)
    assert v.action == "promote"
    assert "p99 10.0 ms within the SLO's 50 ms" in v.reason and "97.5%" in v.reason


def test_too_few_answers_wait_then_roll_back_after_the_deadline() -> None:
    few = {"latencies_ms": (10.0,) * 5, "compared": 5, "agreed": 5}
    assert judge(make_ctx(canary=few), POLICY) == Verdict("wait", "5 of 20 canary answers")
    late = judge(make_ctx(canary=few, now=61.0), POLICY)
    assert late.action == "rollback" and "only 5 canary answers in 61 s" in late.reason


def test_a_canary_over_the_slo_percentile_rolls_back() -> None:
    slow = {"latencies_ms": (10.0,) * 35 + (90.0,) * 5}
    v = judge(make_ctx(canary=slow), POLICY)
    assert v.action == "rollback" and "over the SLO's 50 ms" in v.reason
    # The same sample passes a p50 SLO: the service's percentile is what is judged.
    assert judge(make_ctx(canary=slow, percentile=50.0), POLICY).action == "promote"


def test_failures_roll_back_at_once() -> None:
    v = judge(make_ctx(canary={"latencies_ms": (10.0,) * 3, "errors": 1}), POLICY)
    assert v == Verdict("rollback", "the canary failed 1 of 4 requests")
    tolerant = dataclasses.replace(POLICY, max_error_rate=0.05)
    assert judge(make_ctx(canary={"errors": 1}), tolerant).action == "promote"


def test_disagreeing_canary_rolls_back_without_labels() -> None:
    v = judge(make_ctx(canary={"agreed": 20}), POLICY)
    assert v.action == "rollback" and "agrees with the serving version on 50.0%" in v.reason


def test_comparisons_trailing_the_answers_make_the_gate_wait() -> None:
    assert judge(make_ctx(canary={"compared": 3, "agreed": 3}), POLICY).action == "wait"


def test_labels_decide_accuracy_when_enough_requests_carry_them() -> None:
    # Disagreeing with the serving version is fine when the labels say the canary is right.
    better = {"agreed": 10, "labelled": 20, "correct": 19, "stable_labelled": 20}
    better["stable_correct"] = 12
    v = judge(make_ctx(canary=better), POLICY)
    assert v.action == "promote" and "accuracy 95.0% (serving version 60.0%)" in v.reason
    worse = dict(better, correct=10)
    w = judge(make_ctx(canary=worse), POLICY)
    assert w.action == "rollback" and "canary accuracy 50.0% on 20 labelled" in w.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"canary_share": 0.0},
        {"canary_share": 1.0},
        {"min_requests": 0},
        {"min_agreement": 1.5},
        {"max_canary_s": 0.0},
    ],
)
def test_policy_refuses_impossible_thresholds(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="rollout"):
        RolloutPolicy(**kwargs)


def test_context_and_policy_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_ctx().now = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.min_requests = 1  # type: ignore[misc]


def test_stats_from_the_coordinators_dict() -> None:
    s = CanaryStats.from_dict({"latencies_ms": [1, 2], "agreed": 2, "compared": 2, "x": 9})
    assert s.answered == 2 and s.agreed == 2 and s.errors == 0


def test_promotion_goes_one_replica_at_a_time() -> None:
    assert promotion_steps(["b", "a", "c"]) == [["b"], ["b", "a"], ["b", "a", "c"]]
    assert promotion_steps([]) == []


@dataclass(frozen=True)
class _Input:
    kind: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class _Card:
    input: _Input
    task: str = "classification"


def test_a_rollout_to_another_input_kind_is_one_line_naming_the_field() -> None:
    img = _Card(_Input("image", (1, 8, 8)))
    check_compatible(img, _Card(_Input("image", (1, 8, 8))), "digits:v2")
    with pytest.raises(SpecError, match=r"^digits:v2: input.kind 'text' differs"):
        check_compatible(img, _Card(_Input("text", (16,), "int64")), "digits:v2")
    with pytest.raises(SpecError, match=r"input.shape \[1, 16, 16\] differs"):
        check_compatible(img, _Card(_Input("image", (1, 16, 16))), "digits:v2")
    with pytest.raises(SpecError, match="task 'regression' differs"):
        check_compatible(img, _Card(_Input("image", (1, 8, 8)), "regression"), "digits:v2")


def test_answers_over_the_slo_beyond_what_the_percentile_allows_roll_back_early() -> None:
    early = {"latencies_ms": (10.0, 300.0, 10.0), "compared": 3, "agreed": 3}
    v = judge(make_ctx(canary=early), POLICY)
    assert v.action == "rollback"
    assert v.reason == "1 of 3 canary answers over the SLO's 50 ms, more than its p99 allows in 20"
    # A p50 SLO tolerates one slow answer in 20: wait for the rest.
    assert judge(make_ctx(canary=early, percentile=50.0), POLICY).action == "wait"


def test_a_slow_host_is_not_blamed_on_the_canary() -> None:
    # The serving version misses the 50 ms SLO too: the canary is held to its tail + 20%.
    busy = {"latencies_ms": (70.0,) * 40, "stable_latencies_ms": (65.0,) * 40}
    v = judge(make_ctx(canary=busy), POLICY)
    assert v.action == "promote" and "the serving version's own p99 65.0 ms +20%" in v.reason
    slower = dict(busy, latencies_ms=(70.0,) * 30 + (120.0,) * 10)
    w = judge(make_ctx(canary=slower), POLICY)
    assert w.action == "rollback" and "it misses the SLO's 50 ms meanwhile" in w.reason
    # Too few serving answers to tell: the SLO itself is the bound.
    few = dict(busy, stable_latencies_ms=(65.0,) * 5)
    assert "over the SLO's 50 ms" in judge(make_ctx(canary=few), POLICY).reason
