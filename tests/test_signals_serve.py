"""``edgewise serve`` stops the same way on SIGTERM as on Ctrl-C (real Ray Serve).

Ray installs its own SIGTERM handler in the driver when ``ray.init`` runs; before the
Ray session put edgewise's back, SIGTERM to a running ``serve`` aborted it (exit -6)
and left its service record behind. Each signal gets a fresh ``serve`` of a tiny
registered model with a stored capacity profile (so it starts without measuring); once
it answers ``/healthz``, the signal is sent and the exit code, Ray's own processes
(GCS, raylet) and the service record are checked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import yaml
from torch import nn

from edgewise.api.models import add_model
from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m
from edgewise.kb.served import served_history
from edgewise.procs import stop_group
from edgewise.serving.runtime.services import record_path

pytestmark = pytest.mark.slow

SERVICE = "sigserve"
CARD = {
    "task": "classification",
    "input": {"kind": "image", "shape": [1, 8, 8]},
    "labels": ["a", "b", "c", "d"],
}


def _tiny_service(tmp: Path) -> Path:
    """Register ``tiny:v1`` with a stored profile in serve's default flavor; its spec."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()
    path = tmp / "tiny.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    path.with_name(path.name + ".card.yaml").write_text(yaml.safe_dump(CARD))
    add_model(name="tiny", path=path)
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
    spec = tmp / "service.yaml"
    doc = {"name": SERVICE, "model": "tiny:v1", "slo": {"latency_ms": 500, "percentile": 95}}
    spec.write_text(yaml.safe_dump(doc))
    return spec


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _ray_daemons(root: int) -> dict[int, str]:
    """The GCS server and raylet among ``root``'s descendants, by pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError):
            name = Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
            if name in ("gcs_server", "raylet"):
                found[pid] = name
    return found


def _running(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def _wait_until_healthy(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"edgewise serve exited with {proc.returncode}: {err[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"edgewise serve did not answer on {url} within {timeout_s:.0f} s")


def _gone_within(pids: set[int], timeout_s: float) -> set[int]:
    """Those of ``pids`` still running after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.25)
        alive = {pid for pid in alive if _running(pid)}
    return alive


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_on_both_signals(
    tmp_path: Path, sig: int, _isolated_home: Path, service_url: Any
) -> None:
    spec = _tiny_service(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewise.cli.main", "serve", str(spec), "--port", "0"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # the record is written once serve.run returned: the service runs
        url = service_url(proc, _isolated_home, SERVICE, timeout_s=240)
        _wait_until_healthy(proc, f"{url}/healthz", timeout_s=30)
        ours = set(_ray_daemons(proc.pid))
        assert ours, "serve's Ray processes (GCS, raylet) were not seen"
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    finally:
        stop_group(proc, grace_s=10.0)
    assert code == 0, f"exit {code} on {signal.Signals(sig).name}: {err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    left = _gone_within(ours, timeout_s=15.0)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"Ray processes of serve left running: {left}"
    assert not record_path(SERVICE).exists(), "the service record was left behind"
    with KnowledgeBase.open() as kb:
        history = served_history(kb, SERVICE)
    assert history and all(i.until is not None for i in history), history
    assert history[-1].ended_because == "stopped"
