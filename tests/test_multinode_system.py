"""Serve and retrain on one three-node Ray cluster (``ray.cluster_utils.Cluster``).

The nodes differ in Ray CPUs (1, 1, 0), custom resources and labels. Devices ``a`` and
``b`` are addressed by resource (``device-a`` on the head, ``device-b`` on the second
node), ``c`` by label (third node). Re-training uses :class:`RayPool` through the
controller's ordinary code path, loses device ``c`` mid-run and recovers on ``a`` and
``b``; then a zoo model is served with replicas on the two nodes that have CPUs.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.config import BackgroundApp, DeviceSpec
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    plan,
)
from edgewise.retrain.controller import JobSpec, run_training

MODEL, DATA, DRIFT, SEED = "digits_cnn", "digits", "rotation", 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


def _wait_gone(pids: set[int], timeout_s: float = 10.0) -> list[int]:
    end = time.time() + timeout_s
    while (left := [p for p in pids if _alive(p)]) and time.time() < end:
        time.sleep(0.1)
    return left


def _edgewise_groups() -> list[str]:
    from edgewise.isolation import get_backend

    backend = get_backend()
    return backend.children("edgewise") if backend is not None else []


def _step_loss(steps: list[dict], step: int) -> float:
    """The global-batch loss of one step (ranks' mean losses weighted by share)."""
    rows = [s for s in steps if s["step"] == step and s["share"] > 0]
    return sum(s["loss"] * s["share"] for s in rows) / sum(s["share"] for s in rows)


def test_placement_is_by_label_or_device_resource() -> None:
    from edgewise.retrain.raypool import node_carries, placement_options, single_host, start_hint

    by_res = DeviceSpec(name="jetson-a", cpus=1.0)
    by_label = DeviceSpec(name="pi", cpus=0.5, labels={"edgewise/device": "pi"})
    assert placement_options(by_res) == {"num_cpus": 0, "resources": {"device-jetson-a": 1}}
    assert placement_options(by_label) == {
        "num_cpus": 0,
        "label_selector": {"edgewise/device": "pi"},
    }
    node = {"Alive": True, "Resources": {"device-jetson-a": 1.0}, "Labels": {"x": "y"}}
    assert node_carries(node, by_res) and not node_carries(node, by_label)
    assert not node_carries({**node, "Alive": False}, by_res)
    labelled = {"Alive": True, "Resources": {}, "Labels": {"edgewise/device": "pi"}}
    assert node_carries(labelled, by_label) and not node_carries(labelled, by_res)
    assert start_hint(by_res).endswith("""--resources '{"device-jetson-a": 1}'""")
    assert start_hint(by_label).endswith('--labels "edgewise/device=pi"')
    assert single_host(["10.0.0.1", "10.0.0.1"]) and not single_host(["10.0.0.1", "10.0.0.2"])


def test_controller_asks_the_launcher_for_rendezvous_and_kills_through_handles() -> None:
    from edgewise.retrain.controller import rendezvous, stop_rank

    class Handle:
        pid = 42

        def __init__(self) -> None:
            self.signals: list[int] = []

        def poll(self) -> int | None:
            return None

        def kill_group(self, sig: int) -> None:
            self.signals.append(sig)

    class Local:
        def spawn(self, name: str, cmd: list[str], **kw: object) -> Handle:
            return Handle()

        def kill_device(self, name: str) -> None:
            pass

    class Cluster(Local):
        def rendezvous(self, device: str) -> tuple[str, int]:
            return f"10.0.0.{ord(device)}", 29500

    host, port = rendezvous(Local(), "a")
    assert host == "127.0.0.1" and 0 < port < 65536
    assert rendezvous(Cluster(), "a") == ("10.0.0.97", 29500)
    h = Handle()
    stop_rank(h, signal.SIGTERM)
    assert h.signals == [signal.SIGTERM]


@pytest.mark.slow
def test_retrain_and_serve_on_three_node_cluster(tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from edgewise.retrain.jobs import base_weights, drift_accuracy
    from edgewise.retrain.raypool import RayPool
    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

    t_start = time.time()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"device-a": 1},
            "labels": {"edgewise/zone": "head"},
            "include_dashboard": False,
        },
    )
    try:
        cluster.add_node(num_cpus=1, resources={"device-b": 1}, labels={"edgewise/zone": "east"})
        # Ray node CPUs must be whole numbers: the third node lends none to Ray; its
        # device's share (0.34 of a core) is its cgroup quota
        node_c = cluster.add_node(
            num_cpus=0, labels={"edgewise/zone": "west", "edgewise/device": "c"}
        )
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            include_dashboard=False,
            log_to_driver=False,
            namespace="edgewise",
        )
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 3
        expected = {
            "a": next(n["NodeID"] for n in nodes if "device-a" in n["Resources"]),
            "b": next(n["NodeID"] for n in nodes if "device-b" in n["Resources"]),
            "c": next(n["NodeID"] for n in nodes if n["Labels"].get("edgewise/device") == "c"),
        }
        assert len(set(expected.values())) == 3

        # ------------------------------------------------------------ retrain
        specs = [
            DeviceSpec(
                name="a", cpus=1.0, background=BackgroundApp(rate_rps=5.0, deadline_ms=500.0)
            ),
            DeviceSpec(name="b", cpus=0.5),
            DeviceSpec(name="c", cpus=0.34, labels={"edgewise/device": "c"}),
        ]
        states = [DeviceState(s.name, s.cpus, 1024.0) for s in specs]
        profiles = {
            s.name: DeviceProfile(s.name, (Intensity(1, 0, 600.0 * s.cpus),)) for s in specs
        }
        base = base_weights(MODEL, DATA, DRIFT, SEED)
        before = drift_accuracy(MODEL, DATA, DRIFT, SEED, base)
        job = JobSpec(
            MODEL,
            DATA,
            DRIFT,
            SEED,
            total_steps=60,
            workdir=tmp_path / "job",
            lr=0.05,
            checkpoint_every=5,
            timeout_s=5.0,
            init_weights=str(base),
        )
        seen: dict[int, tuple[str, int | None]] = {}  # worker pid -> (device, its parent)
        app_pids: set[int] = set()
        lost: list[float] = []
        with RayPool(specs, tmp_path / "pool", seed=SEED) as pool:
            agent_pid = {n: int(i["pid"]) for n, i in pool.info.items()}
            assert {n: i["node_id"] for n, i in pool.info.items()} == expected
            pool.wait_background_ready()

            def on_step(_step: int, _total: int) -> None:
                new = [h for h in pool.handles if h.pid not in seen and _alive(h.pid)]
                for h in new:
                    seen[h.pid] = (h.device, _ppid(h.pid))
                if new:  # once per generation: asking every agent costs a round trip each
                    app_pids.update(pool.pids())
                if _step >= 8 and not lost:
                    # device c's whole node fails: its agent and its rank die with it
                    lost.append(time.time())
                    cluster.remove_node(node_c)

            res = run_training(
                pool,
                states,
                profiles,
                RetrainConstraints(global_batch=256),
                job,
                plan,
                on_step=on_step,
            )
            handles = pool.handles
        # every rank ran on the node that carries its device, as a child of its agent
        assert [h.device for h in handles] == ["a", "b", "c", "a", "b"]
        assert all(h.node_id == expected[h.device] for h in handles)
        assert {d for d, _ in seen.values()} == {"a", "b", "c"}
        assert all(parent == agent_pid[d] for d, parent in seen.values()), seen
        by_gen = {g: {s["device"] for s in res.steps if s["generation"] == g} for g in (0, 1)}
        assert by_gen == {0: {"a", "b", "c"}, 1: {"a", "b"}}
        # the lost node was detected, its device planned out, training resumed from a
        # checkpoint no more than one interval back
        assert [f["devices"] for f in res.failures] == [["c"]]
        assert res.failures[0]["t_detect"] - lost[0] < 10.0
        assert res.failures[0]["step"] - res.failures[0]["resume_step"] <= 5
        assert res.plans[-1].shares.keys() == {"a", "b"} and res.final_step == 60
        resumed = min(s["t"] for s in res.steps if s["generation"] == 1)
        # it learned: the loss went down and the drifted split is better served
        assert _step_loss(res.steps, 60) < _step_loss(res.steps, 1)
        after = drift_accuracy(MODEL, DATA, DRIFT, SEED, res.final_weights)
        assert after > before + 0.05, (before, after)
        # nothing outlives the pool: workers, the background app
        assert app_pids - set(seen), "the background app was never seen"
        assert not _wait_gone(set(seen) | app_pids)
        owners = {str(p) for p in agent_pid.values()}
        left_groups = [g for g in _edgewise_groups() if g.split("--")[-1].split("-")[0] in owners]
        assert not left_groups

        # a worker's exit status and stderr come back; an agent's death takes its children
        with RayPool([specs[1]], tmp_path / "pool2") as pool:
            err = open(tmp_path / "fail.err", "wb")  # noqa: SIM115
            failing = pool.spawn(
                "b", [sys.executable, "-c", "import sys; sys.exit('boom')"], stderr=err
            )
            err.close()
            assert failing.wait(timeout=30) == 1
            assert b"boom" in (tmp_path / "fail.err").read_bytes()
            sleeper = pool.spawn("b", ["sleep", "60"], late_join=False)
            assert sleeper.poll() is None and _alive(sleeper.pid)
            pool.kill_agent("b")
            assert sleeper.wait(timeout=10) == -signal.SIGKILL
            assert not _wait_gone({sleeper.pid})
        t_retrain = time.time() - t_start

        # ------------------------------------------------------------ the CLI, same path
        yaml = tmp_path / "cluster.yaml"
        yaml.write_text(
            "devices:\n"
            "  - {name: a, cpus: 0.5, memory_mb: 2048,\n"
            "     background: {model: digits_cnn, rate_rps: 5, deadline_ms: 500}}\n"
            "  - {name: b, cpus: 0.5, memory_mb: 1024}\n"
        )
        app = make_app(["retrain"])
        args = ["retrain", "--devices", str(yaml), "--address", cluster.address]
        args += ["--steps", "20", "--global-batch", "64", "--workdir", str(tmp_path / "cli")]
        kill = ["--kill-at-step", "1", "--kill-device", "b"]
        out = CliRunner().invoke(app, [*args, *kill, "--json"])
        assert out.exit_code == 0, out.output[-3000:]
        got = json.loads(out.stdout[out.stdout.index("{") :])
        assert got["steps"] == 20 and got["profiles"] == "measured"
        assert [f["devices"] for f in got["failures"]] == [["b"]] and got["recovery_s"] > 0
        assert set(got["plan"]["shares"]) == {"a", "b"} and got["background"]["a"]["p99_ms"] > 0
        # a device no node carries: one line, exit 2
        yaml.write_text("devices:\n  - {name: zz, cpus: 1.0}\n")
        out = CliRunner().invoke(app, args)
        assert out.exit_code == 2 and "device zz: no alive Ray node has resource device-zz" in (
            out.output
        ), out.output[-2000:]
        t_cli = time.time() - t_start - t_retrain

        # ------------------------------------------------------------ serve
        cfg = RuntimeConfig(
            model=MODEL,
            app="system",
            cpus_per_replica=0.75,
            initial_replicas=2,
            max_replicas=2,
            port=0,
            address=cluster.address,
        )
        with ServingRuntime(cfg) as rt:
            rt.wait_for_replicas(2, timeout_s=120)
            served_on = {v["node"] for v in rt.replicas().values()}
            # 0.75 CPU each: one per node that lends CPUs to Ray (not the third)
            assert served_on == {expected["a"], expected["b"]}
            buf = io.BytesIO()
            np.save(buf, np.zeros((1, 32, 32), np.float32))
            codes = [
                httpx.post(rt.url + "/predict", content=buf.getvalue(), timeout=60).status_code
                for _ in range(20)
            ]
            assert codes == [200] * 20
        print(
            f"retrain {t_retrain:.1f} s (accuracy {before:.3f} -> {after:.3f}, "
            f"node lost to first step after resume {resumed - lost[0]:.1f} s), cli {t_cli:.1f} s, total {time.time() - t_start:.1f} s, pid {os.getpid()}"
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
