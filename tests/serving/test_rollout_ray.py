"""A rollout on a live service under load (real Ray Serve): a good version is promoted
with no failed request; a slower one is rolled back and the serving version answers."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from edgewise.clock import WallClock
from edgewise.serving.loadgen import constant_arrivals, run_load
from edgewise.serving.rollout import RolloutPolicy
from edgewise.serving.runtime import RuntimeConfig, ServingRuntime
from edgewise.serving.runtime.rollout import RolloutTimeouts, run_rollout

pytestmark = pytest.mark.slow

CARD = {
    "task": "classification",
    "input": {"kind": "image", "shape": [1, 8, 8]},
    "labels": ["a", "b", "c", "d"],
}


class Slow(nn.Module):
    """The same classifier behind a few hundred matrix products (a deliberately slow v3)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.w = nn.Parameter(torch.eye(256) * 0.5, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ones(256, 256)
        for _ in range(120):
            y = torch.tanh(y @ self.w)
        return self.net(x) + 0.0 * y.sum()


def _save(module: nn.Module, path: Path) -> str:
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    path.with_name(path.name + ".card.yaml").write_text(yaml.safe_dump(CARD))
    return str(path)


def _versions(tmp: Path) -> tuple[str, str, str]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))
    v1 = _save(net, tmp / "v1.pt")
    with torch.no_grad():  # v2: nearly the same weights, so it agrees with v1
        for p in net.parameters():
            p.add_(1e-4)
    return v1, _save(net, tmp / "v2.pt"), _save(Slow(net), tmp / "v3.pt")


def _body() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).normal(size=(1, 8, 8)).astype(np.float32))
    return buf.getvalue()


def _under_load(url: str, rps: float, seconds: float) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def drive() -> None:
        out["result"] = run_load(url, constant_arrivals(rps, seconds, seed=1), _body())

    thread = threading.Thread(target=drive)
    thread.start()
    return thread, out


def test_rollout_promotes_a_good_version_and_rolls_back_a_slow_one(tmp_path: Path) -> None:
    v1, v2, v3 = _versions(tmp_path)
    cfg = RuntimeConfig(
        model=v1,
        app="rolltest",
        cpus_per_replica=0.5,
        initial_replicas=2,
        max_replicas=2,
        port=0,
        num_cpus=2,
        use_cgroup=False,
    )
    policy = RolloutPolicy(canary_share=0.2, min_requests=15, max_canary_s=30.0)
    limits = RolloutTimeouts(load_s=60.0, replica_s=15.0)
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(2, 120)
        url = rt.url + "/predict"
        thread, load = _under_load(url, 30.0, 14.0)
        good = run_rollout(
            rt.rollout_port(),
            v2,
            policy,
            slo_ms=200.0,
            percentile=99.0,
            clock=WallClock(),
            timeouts=limits,
        )
        thread.join()
        assert good.promoted, good.reason
        assert good.replicas == 2 and len(good.steps) >= 5
        assert (load["result"].status == 200).all(), "a request failed during the rollout"
        after = httpx.post(url, content=_body(), timeout=30).json()
        assert after["model"] == "v2.pt"

        thread, load = _under_load(url, 20.0, 10.0)
        slow = run_rollout(
            rt.rollout_port(),
            v3,
            policy,
            slo_ms=50.0,
            percentile=99.0,
            clock=WallClock(),
            timeouts=limits,
        )
        thread.join()
        assert slow.rolled_back and "over the SLO's 50 ms" in slow.reason, slow.reason
        answers = [httpx.post(url, content=_body(), timeout=30).json() for _ in range(10)]
        assert {a["model"] for a in answers} == {"v2.pt"}
        assert all(h is None for h in _canaries(rt.url))


def _canaries(base: str) -> list[Any]:
    return [httpx.get(base + "/healthz", timeout=30).json().get("canary") for _ in range(4)]
