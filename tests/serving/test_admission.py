"""Admission control in front of Ray Serve's router: the limit, the gate, the middleware.

No Ray here: the middleware runs over a fake ASGI app whose requests are held until a
test lets them go, and its limits come from a fake source. The gate in Serve's real
proxy under a flood is tested in ``test_faults.py``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from edgewise.serving.policies import FlavorOption
from edgewise.serving.runtime.admission import (
    PROXY_CALLBACK,
    RETRY_AFTER_S,
    AdmissionBoard,
    AdmissionGate,
    AdmissionMiddleware,
    admission_limit,
    admits,
    gated_prefix,
    pool_admission_limit,
    proxy_middlewares,
)


def test_limit_is_the_share_of_the_slo_times_capacity_per_replica() -> None:
    assert admission_limit(500.0, 15.7) == 4  # floor(0.6 * 0.5 * 15.7)
    assert admission_limit(500.0, 15.7, share=1.0) == 7
    assert admission_limit(500.0, 15.7, share=0.8, replicas=3) == 18
    # An idle replica always takes a request, however tight the SLO.
    assert admission_limit(10.0, 1.0) == 1
    assert admission_limit(10.0, 1.0, replicas=2) == 2


def test_a_pool_holds_each_flavors_limit_and_a_pool_at_zero_one_cold_replicas() -> None:
    large = FlavorOption("large", cpus=4.0, capacity_rps=40.0, price_per_hour=4.0, max_replicas=4)
    small = FlavorOption("small", cpus=1.0, capacity_rps=10.0, price_per_hour=1.0, max_replicas=4)
    nominal = {"large": 4.0, "small": 1.0}
    # floor(0.6 x 0.5 s x 40) = 12 per large replica, floor(0.6 x 0.5 x 10) = 3 per small
    assert pool_admission_limit(500.0, (large, small), {"large": 2, "small": 1}, nominal) == 27
    # a quota halved halves the capacity the limit is derived from
    assert pool_admission_limit(500.0, (large,), {"large": 1}, {"large": 2.0}) == 6
    # scaled to zero, a request wakes one replica of the first flavor: its limit, not 1
    assert pool_admission_limit(500.0, (large, small), {"large": 0, "small": 0}, nominal) == 12
    assert pool_admission_limit(500.0, (small, large), {}, nominal) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"slo_ms": 0.0, "capacity_rps": 10.0},
        {"slo_ms": 100.0, "capacity_rps": -1.0},
        {"slo_ms": float("nan"), "capacity_rps": 10.0},
        {"slo_ms": 100.0, "capacity_rps": float("inf")},
        {"slo_ms": 100.0, "capacity_rps": 10.0, "replicas": 0},
        {"slo_ms": 100.0, "capacity_rps": 10.0, "share": 0.0},
        {"slo_ms": 100.0, "capacity_rps": 10.0, "share": 1.5},
    ],
)
def test_limit_refuses_values_that_mean_nothing(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        admission_limit(**kwargs)


def test_admits_below_the_limit_only() -> None:
    assert admits(0, 1)
    assert admits(6, 7)
    assert not admits(7, 7)
    assert not admits(9, 7)


def test_only_predict_is_gated_under_the_longest_matching_prefix() -> None:
    prefixes = {"/": 4, "/svc": 2}
    assert gated_prefix(prefixes, "/predict") == "/"
    assert gated_prefix(prefixes, "/predict/") == "/"
    assert gated_prefix(prefixes, "/svc/predict") == "/svc"
    assert gated_prefix(prefixes, "/svcx/predict") == "/"  # not under /svc
    assert gated_prefix(prefixes, "/healthz") is None
    assert gated_prefix(prefixes, "/metrics") is None
    assert gated_prefix({"/svc": 2}, "/other/predict") is None
    assert gated_prefix({}, "/predict") is None


def test_gate_counts_places_and_refusals() -> None:
    gate = AdmissionGate(2)
    assert gate.try_enter() and gate.try_enter()
    assert not gate.try_enter()
    assert (gate.in_flight, gate.refused) == (2, 1)
    gate.leave()
    assert gate.try_enter()
    # A lower limit keeps those already in; new ones wait until the count falls below it.
    gate.limit = 1
    assert not gate.try_enter()
    gate.leave()
    assert not gate.try_enter()
    gate.leave()
    assert gate.try_enter()


def test_board_keeps_and_lifts_limits() -> None:
    board = AdmissionBoard()
    board.set_limit("/", 7)
    board.set_limit("/svc", 0)  # never below one
    assert board.limits() == {"/": 7, "/svc": 1}
    board.set_limit("/", None)
    assert board.limits() == {"/svc": 1}


def test_proxy_callback_names_a_function_that_returns_the_middleware() -> None:
    module, name = PROXY_CALLBACK.split(":")
    assert module == __import__(module, fromlist=[name]).__name__
    assert getattr(__import__(module, fromlist=[name]), name) is proxy_middlewares
    (middleware,) = proxy_middlewares()
    assert middleware.cls is AdmissionMiddleware


# --- the middleware over a fake app -------------------------------------------------------


class HeldApp:
    """An ASGI app that answers 200 once the test sets :attr:`go`."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.entered += 1
        await self.go.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _request(mw: AdmissionMiddleware, path: str) -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await mw(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return int(start["status"]), headers, b"".join(m.get("body", b"") for m in sent[1:])


async def _no_limits() -> dict[str, int] | None:
    return None


def _never_polls() -> AdmissionMiddleware:
    return AdmissionMiddleware(HeldApp(), limits=_no_limits, poll_s=3600.0)


def test_middleware_refuses_above_the_limit_at_once_and_admits_again_after() -> None:
    async def scenario() -> None:
        mw = _never_polls()
        app = mw.app
        assert isinstance(app, HeldApp)
        mw.update({"/": 2})
        held = [asyncio.create_task(_request(mw, "/predict")) for _ in range(2)]
        await asyncio.sleep(0)
        # Full: the third is answered 503 while the two held ones still wait.
        status, headers, body = await asyncio.wait_for(_request(mw, "/predict"), 1.0)
        assert status == 503
        assert headers["retry-after"] == str(RETRY_AFTER_S)
        assert int(headers["content-length"]) == len(body)
        assert "overloaded: 2 requests in service (limit 2)" in json.loads(body)["error"]
        assert app.entered == 2
        # Health checks and metrics are never gated.
        health = asyncio.create_task(_request(mw, "/healthz"))
        await asyncio.sleep(0)
        assert app.entered == 3
        app.go.set()
        assert [(await t)[0] for t in [*held, health]] == [200, 200, 200]
        assert mw.gates["/"].in_flight == 0
        assert mw.gates["/"].refused == 1
        assert (await _request(mw, "/predict"))[0] == 200

    asyncio.run(scenario())


def test_middleware_passes_everything_for_a_prefix_without_a_limit() -> None:
    async def scenario() -> None:
        mw = _never_polls()
        app = mw.app
        assert isinstance(app, HeldApp)
        app.go.set()
        codes = await asyncio.gather(*(_request(mw, "/predict") for _ in range(20)))
        assert {c[0] for c in codes} == {200}
        mw.update({"/svc": 1})
        assert (await _request(mw, "/predict"))[0] == 200

    asyncio.run(scenario())


class FedLimits:
    """A limits source that answers what the test feeds it, when it feeds it."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[dict[str, int] | None] = asyncio.Queue()
        self.calls = 0

    async def __call__(self) -> dict[str, int] | None:
        self.calls += 1
        return await self.answers.get()

    async def feed(self, answer: dict[str, int] | None) -> None:
        """Give one answer and return once the middleware has applied it (asked again)."""
        before = self.calls
        await self.answers.put(answer)
        while self.calls == before:
            await asyncio.sleep(0)


def test_middleware_follows_the_polled_limits_and_keeps_them_on_a_failed_read() -> None:
    async def scenario() -> None:
        app = HeldApp()
        source = FedLimits()
        mw = AdmissionMiddleware(app, limits=source, poll_s=0.0)
        first = asyncio.create_task(_request(mw, "/healthz"))  # starts the poller
        await source.feed({"/": 1})
        assert mw.gates["/"].limit == 1
        await source.feed(None)  # a failed read keeps the gate
        assert mw.gates["/"].limit == 1
        await source.feed({"/": 3})
        assert mw.gates["/"].limit == 3
        await source.feed({})  # nothing published any more: ungated
        assert mw.gates == {}
        app.go.set()
        assert (await first)[0] == 200

    asyncio.run(scenario())


def test_limits_published_before_the_first_request_apply_to_it() -> None:
    async def scenario() -> None:
        app = HeldApp()
        source = FedLimits()
        mw = AdmissionMiddleware(app, limits=source, poll_s=60.0)  # built in the loop
        first = asyncio.create_task(_request(mw, "/predict"))
        for _ in range(3):
            await asyncio.sleep(0)
        assert app.entered == 0  # waits for the first read of the limits
        await source.answers.put({"/": 1})
        while app.entered == 0:
            await asyncio.sleep(0)
        assert (await _request(mw, "/predict"))[0] == 503
        app.go.set()
        assert (await first)[0] == 200

    asyncio.run(scenario())


def test_middleware_leaves_other_protocols_alone() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def scenario() -> None:
        mw = AdmissionMiddleware(app, limits=_no_limits, poll_s=3600.0)
        mw.update({"/": 1})
        mw.gates["/"].in_flight = 1  # full
        await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
        assert seen == ["lifespan"]

    asyncio.run(scenario())
