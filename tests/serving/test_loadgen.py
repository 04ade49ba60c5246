from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from aiohttp import web

from edgewise.serving.loadgen import constant_arrivals, run_load
from edgewise.serving.runtime.coordinator import CoordinatorState


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def slow_server() -> Iterator[str]:
    """A loopback server whose /predict takes 20 ms and /fail answers 503."""
    port = _free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(0.02)
        return web.json_response({"ok": True})

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=503)

    async def setup() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/predict", predict)
        app.router.add_post("/fail", fail)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(setup())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ready.wait(5)
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


@pytest.mark.slow
def test_open_loop_latency_includes_server_time(slow_server: str) -> None:
    arrivals = constant_arrivals(50, 2.0, seed=1)
    res = run_load(slow_server + "/predict", arrivals, b"x", timeout_s=5)
    assert res.n == arrivals.size
    assert (res.status == 200).all()
    assert 19.0 <= res.percentile(50) < 200.0
    assert res.attainment(10.0) == 0.0 and res.attainment(1000.0) == 1.0
    assert np.median(res.sent_lag_ms) < 20.0


@pytest.mark.slow
def test_failures_and_timeouts_count_against_attainment(slow_server: str) -> None:
    res = run_load(slow_server + "/fail", np.array([0.0, 0.01, 0.02]), b"x", timeout_s=2)
    assert (res.status == 503).all() and res.attainment(1000.0) == 0.0
    dead = f"http://127.0.0.1:{_free_port()}/predict"
    res = run_load(dead, np.array([0.0]), b"x", timeout_s=1)
    assert res.status.tolist() == [0] and np.isnan(res.latency_ms[0])


def test_constant_arrivals_rate_and_seed() -> None:
    a = constant_arrivals(100, 50, seed=3)
    assert abs(a.size - 5000) < 5 * np.sqrt(5000)
    assert np.all(np.diff(a) >= 0)
    assert np.array_equal(a, constant_arrivals(100, 50, seed=3))


def test_coordinator_state_metrics_and_snapshot() -> None:
    s = CoordinatorState("app", target_replicas=2, cpus_per_replica=0.5)
    s.register("h:1", 1, "h", 0.5)
    s.record("h:1", [5.0, 12.0, 40.0], rejected=1, ongoing=3, infer_ms=[4.0, 30.0])
    s.info.update({"forecast_rps": 12.5, "plan_capacity_rps": 20.0})
    snap = s.snapshot()
    assert snap["completed"] == 3 and snap["rejected"] == 1 and snap["ongoing"] == 3
    assert sorted(snap["recent_latencies_ms"]) == [5.0, 12.0, 40.0]
    assert sorted(snap["recent_infer_ms"]) == [4.0, 30.0]
    text = s.render().decode()
    assert 'edgewise_inference_ms_bucket{le="5.0"} 1.0' in text
    assert "edgewise_inference_ms_count 2.0" in text
    assert 'edgewise_request_latency_ms_bucket{le="10.0"} 1.0' in text
    assert "edgewise_replicas 1.0" in text and "edgewise_cpus_per_replica 0.5" in text
    assert "edgewise_forecast_rps 12.5" in text
    assert 'edgewise_requests_total{outcome="rejected"} 1.0' in text
