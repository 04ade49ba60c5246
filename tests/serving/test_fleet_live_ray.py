"""The live fleet runs the planner's placement on this host (real Ray Serve).

``serve_fleet`` on a two-node fleet (each node one CPU of this host) of two services:
every replica must run pinned to the CPUs of the node its pool entry names, with its
flavor's CPU quota, each service must answer on its own route, and the fleet is
re-planned from the observed rates. About 30 s (two deployments of digits_cnn).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgewise.api.fleet_live import FleetRuntime, serve_fleet
from edgewise.planning.fleet import FleetPlan
from edgewise.serving.fleet import node_of
from edgewise.serving.live import sample_body

pytestmark = pytest.mark.slow

FLEET = """
services:
  - name: left
    variants: [{model: digits_cnn, accuracy: 0.98}]
    slo: {latency_ms: 200, percentile: 99}
  - name: right
    variants: [{model: digits_cnn, accuracy: 0.98}]
    slo: {latency_ms: 200, percentile: 99}
nodes:
  - {name: node, cpus: 1, memory_mb: 4096, price_per_hour: 0.05, count: 2}
flavors:
  - {name: small, cpus: 0.5, memory_mb: 1024, price_per_hour: 0.025, max_replicas: 2}
  - {name: medium, cpus: 1.0, memory_mb: 2048, price_per_hour: 0.05, max_replicas: 2}
"""


def _cpu_list(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _allowed(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return _cpu_list(line.split(":", 1)[1].strip())
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def _placement(runtime: FleetRuntime) -> list[tuple[str, str, float, set[int], set[int]]]:
    """(service, entry, CPUs, allowed CPUs, the entry's node's CPUs) of every replica."""
    out = []
    for name, rt in runtime.runtimes.items():
        for info in rt.snapshot()["replicas"].values():
            entry = str(info.get("flavor", ""))
            want = set(runtime.fleet.cpusets[node_of(entry)])
            out.append((name, entry, float(info["cpus"]), _allowed(int(info["pid"])), want))
    return out


def test_serve_fleet_pins_every_replica_to_its_node_and_answers_on_each_route(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET)
    stop = threading.Event()
    seen: dict[str, Any] = {}
    replans: list[tuple[FleetPlan | None, str | None]] = []

    def send(runtime: FleetRuntime) -> None:
        body, ctype = sample_body("digits_cnn")
        headers = {"content-type": ctype}
        with httpx.Client(timeout=30.0) as client:
            seen["status"] = {
                name: [
                    client.post(runtime.url(name), content=body, headers=headers).status_code
                    for _ in range(20)
                ]
                for name in runtime.runtimes
            }

    def started(runtime: FleetRuntime, plan: FleetPlan) -> None:
        time.sleep(1.0)  # replicas take their assignment on their next poll (0.2 s)
        seen["placement"] = _placement(runtime)
        seen["planned"] = sorted((r.service, f"{r.option.flavor}@{r.node}") for r in plan.replicas)
        seen["sender"] = threading.Thread(target=send, args=(runtime,))
        seen["sender"].start()  # traffic in the first window, which the next plan follows

    def replanned(plan: FleetPlan | None, why: str | None) -> None:
        replans.append((plan, why))
        stop.set()

    plans = serve_fleet(fleet=spec, window_s=4.0, stop=stop, started=started, replanned=replanned)
    seen["sender"].join()
    placement = seen["placement"]
    assert sorted((svc, entry) for svc, entry, *_ in placement) == seen["planned"]
    for svc, entry, cpus, allowed, node_cpus in placement:
        assert allowed == node_cpus, f"{svc} replica of {entry} runs on {allowed}"
        assert cpus == {"small": 0.5, "medium": 1.0}[entry.split("@")[0]]
    assert seen["status"] == {"left": [200] * 20, "right": [200] * 20}
    # the next window was planned at the rates observed, not the floor the first used
    assert replans and replans[0][0] is not None and len(plans) == 2
    assert replans[0][0].rates_rps["left"] > 1.0 and replans[0][0].rates_rps["right"] > 1.0
