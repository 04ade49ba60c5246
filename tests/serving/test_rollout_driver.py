"""The rollout driver against a fake service: canary, gate, promotion or rollback."""

from __future__ import annotations

from typing import Any

from edgewise.clock import VirtualClock
from edgewise.serving.rollout import RolloutPolicy
from edgewise.serving.runtime.rollout import RolloutTimeouts, run_rollout

POLICY = RolloutPolicy(min_requests=20, max_canary_s=30.0)
TIMEOUTS = RolloutTimeouts(load_s=10.0, replica_s=5.0, poll_s=0.5)


class FakeService:
    """Replicas that load the canary after a few looks and answer ``per_look`` canary
    requests of ``latency_ms`` (agreeing with the serving version ``agree`` of the time)."""

    def __init__(
        self,
        replicas: int = 3,
        *,
        latency_ms: float = 10.0,
        agree: float = 1.0,
        load_looks: int = 2,
        load_error: str | None = None,
        per_look: int = 4,
    ) -> None:
        self.ids = [f"h:{i}" for i in range(replicas)]
        self.latency_ms, self.agree, self.per_look = latency_ms, agree, per_look
        self.load_looks, self.load_error = load_looks, load_error
        self.looks = 0
        self.rollout: dict[str, Any] | None = None
        self.promote_calls: list[list[str]] = []
        self.switched: list[str] = []  # replicas answering with the new version
        self.finished: bool | None = None
        self.canary: dict[str, Any] = {"latencies_ms": [], "compared": 0, "agreed": 0}

    def start_rollout(self, ref: str, share: float) -> dict[str, Any]:
        self.rollout = {"id": "r1", "ref": ref, "share": share, "promoted": []}
        return dict(self.rollout)

    def rollout_view(self) -> dict[str, Any]:
        self.looks += 1
        assert self.rollout is not None
        ready = self.looks > self.load_looks
        if ready and not self.rollout["promoted"]:
            n = self.per_look
            self.canary["latencies_ms"] += [self.latency_ms] * n
            self.canary["compared"] += n
            self.canary["agreed"] += round(n * self.agree)
        lanes = {
            rid: {
                "rollout": "r1",
                "canary_ready": ready and self.load_error is None,
                "canary_error": self.load_error if rid == "h:1" else None,
                "promoted": rid in self.switched,
            }
            for rid in self.ids
        }
        self.switched = list(self.rollout["promoted"])  # a replica switches by the next look
        return {"rollout": self.rollout, "canary": dict(self.canary), "lanes": lanes}

    def promote(self, replicas: list[str]) -> None:
        assert self.rollout is not None
        self.promote_calls.append(list(replicas))
        self.rollout = {**self.rollout, "share": 0.0, "promoted": list(replicas)}

    def finish_rollout(self, promoted: bool) -> None:
        self.finished = promoted


def _run(service: FakeService) -> Any:
    return run_rollout(
        service,
        "digits:v2",
        POLICY,
        slo_ms=50.0,
        percentile=99.0,
        clock=VirtualClock(),
        timeouts=TIMEOUTS,
    )


def test_a_good_canary_is_promoted_one_replica_at_a_time() -> None:
    service = FakeService()
    out = _run(service)
    assert out.promoted and not out.rolled_back and service.finished is True
    assert service.promote_calls == [["h:0"], ["h:0", "h:1"], ["h:0", "h:1", "h:2"]]
    assert out.replicas == 3 and out.canary.answered >= POLICY.min_requests
    assert out.promote_s > 0 and out.load_s > 0
    assert out.steps[-1] == "promoted: digits:v2 answers every request"


def test_a_slow_canary_is_rolled_back_with_the_reason() -> None:
    service = FakeService(latency_ms=80.0)
    out = _run(service)
    assert out.rolled_back and service.finished is False and not service.promote_calls
    assert "over the SLO's 50 ms" in out.reason


def test_a_disagreeing_canary_is_rolled_back() -> None:
    out = _run(FakeService(agree=0.5))
    assert out.rolled_back and "agrees with the serving version on 50.0%" in out.reason


def test_a_version_that_does_not_load_rolls_back_naming_the_replica() -> None:
    service = FakeService(load_error="digits:v2: no such version")
    out = _run(service)
    assert out.rolled_back and service.finished is False
    assert out.reason == "replica h:1 could not load the new version: digits:v2: no such version"


def test_too_little_traffic_rolls_back_after_the_gates_deadline() -> None:
    out = _run(FakeService(per_look=0))
    assert out.rolled_back and "only 0 canary answers" in out.reason
    assert out.canary_s >= POLICY.max_canary_s


def test_replicas_that_never_load_roll_back_after_the_load_timeout() -> None:
    out = _run(FakeService(load_looks=10_000))
    assert out.rolled_back and "0 of 3 replicas loaded the new version within 10 s" in out.reason
