"""``edgewise rollout`` from another process (real Ray Serve): ``edgewise serve`` runs a
registered v1 in one process, ``edgewise rollout SERVICE --to tiny:v2`` joins its Ray
instance from a second one and promotes v2 under light traffic, and the knowledge base
says v1 served, then the canary, then v2 until the service stopped."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from edgewise.api.models import add_model
from edgewise.kb import KnowledgeBase
from edgewise.kb.served import CANARY, SERVING, served_history
from edgewise.procs import stop_group

pytestmark = pytest.mark.slow

CARD = {
    "task": "classification",
    "input": {"kind": "image", "shape": [1, 8, 8]},
    "labels": ["a", "b", "c", "d"],
}
SERVICE = "rollcli"


def _register_versions(tmp: Path) -> None:
    """``tiny:v1`` and ``tiny:v2``: the same small classifier, v2 nudged (they agree)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    for version in (1, 2):
        path = tmp / f"v{version}.pt"
        torch.jit.save(torch.jit.script(net), str(path))
        path.with_name(path.name + ".card.yaml").write_text(yaml.safe_dump(CARD))
        add_model(name="tiny", path=path)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1e-4)


def _store_capacity_profile() -> None:
    """A stored profile of ``tiny:v1`` in serve's default flavor (a 0.5-CPU ``small``), so
    that serve starts at once: the profiler's replica builds zoo models only."""
    from edgewise.kb import models as m

    samples = [4.0 + 0.01 * i for i in range(100)]
    with KnowledgeBase.open() as kb, kb.transaction() as s:
        s.add(
            m.CapacityProfile(
                model="tiny:v1",
                flavor="small",
                batch_size=1,
                host="test",
                cpus=0.5,
                service_ms={"p50": 4.5, "p95": 4.95, "p99": 4.99, "mean": 4.5, "samples": samples},
                slo_ms=500.0,
                percentile=95.0,
                capacity_rps=100.0,
                validation={},
            )
        )


def _service(tmp: Path) -> Path:
    path = tmp / "service.yaml"
    doc = {
        "name": SERVICE,
        "model": "tiny:v1",
        "slo": {"latency_ms": 500, "percentile": 95},
        "rollout": {"canary_share": 0.3, "min_requests": 10, "max_canary_s": 45},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _body() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).normal(size=(1, 8, 8)).astype(np.float32))
    return buf.getvalue()


def _wait_until_answering(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"edgewise serve exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.post(url, content=_body(), timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"edgewise serve did not answer on {url} within {timeout_s:.0f} s")


def _traffic(url: str, stop: threading.Event, codes: list[int], failed: list[str]) -> None:
    """About 25 requests a second until ``stop`` (the canary needs live requests); what
    answered other than 200 goes to ``failed`` with its body."""
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            response = client.post(url, content=_body())
            codes.append(response.status_code)
            if response.status_code != 200:
                failed.append(f"{time.time():.3f} {response.status_code} {response.text[:300]}")
            time.sleep(0.04)


def _edgewise(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgewise.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=dict(os.environ),
    )


def test_rollout_from_another_process_promotes_and_is_recorded(
    tmp_path: Path, _isolated_home: Path, service_url: Any
) -> None:
    _register_versions(tmp_path)
    _store_capacity_profile()
    service = _service(tmp_path)
    serve = subprocess.Popen(
        [sys.executable, "-m", "edgewise.cli.main", "serve", str(service), "--port", "0"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    stop, codes, failed = threading.Event(), [], []
    try:
        url = service_url(serve, _isolated_home, SERVICE, timeout_s=240) + "/predict"
        _wait_until_answering(serve, url, timeout_s=60)
        clients = threading.Thread(target=_traffic, args=(url, stop, codes, failed), daemon=True)
        clients.start()
        t0 = time.monotonic()
        done = _edgewise("rollout", str(service), "--to", "tiny:v2", "--json", timeout_s=180)
        took = time.monotonic() - t0
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        result = json.loads(done.stdout)
        assert result["promoted"] and result["to"] == "tiny:v2", result
        assert result["canary_requests"] >= 10 and result["replicas"] >= 1
        assert took < 120, f"the rollout took {took:.0f} s"
        answer = httpx.post(url, content=_body(), timeout=30).json()
        assert (answer["model"], answer["version"]) == ("tiny", 2)
        stop.set()
        clients.join(timeout=30)
        assert codes and set(codes) == {200}, f"requests failed during the rollout: {failed}"
        serve.send_signal(signal.SIGINT)  # Ctrl-C: serve stops and records 'stopped'
        code = serve.wait(timeout=90)
        err = serve.stderr.read().decode(errors="replace") if serve.stderr else ""
        assert code == 0, err[-3000:]
    finally:
        stop.set()
        stop_group(serve, grace_s=30.0)
    with KnowledgeBase.open() as kb:
        history = served_history(kb, SERVICE)
    got = [(i.served.ref, i.role, i.started_because, i.ended_because) for i in history]
    assert got == [
        ("tiny:v1", SERVING, "serve started", "rollout promoted"),
        ("tiny:v2", CANARY, "rollout started", "rollout promoted"),
        ("tiny:v2", SERVING, "rollout promoted", "stopped"),
    ]
    assert all(i.until is not None and i.until >= i.since for i in history)
    assert history[0].until == history[2].since
