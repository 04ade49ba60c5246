"""The device agent of a Ray device pool, and where on the cluster each device runs.

:class:`DeviceAgent` is the actor :class:`~edgewise.retrain.raypool.RayPool` places on
the node that carries a device (see that module for the whole picture): it hosts a
one-device :class:`~edgewise.retrain.devices.EmulatedPool` there and starts, polls and
signals the training workers in it. The placement helpers are pure: which node carries
a device (a ``device-<name>`` resource or the device's labels) and how to start one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgewise.config import DeviceSpec
from edgewise.procs import free_port, kill_group
from edgewise.retrain.devices import REAP_S, EmulatedPool

RESOURCE_PREFIX = "device-"
"""A node carries device ``X`` when it has one unit of the custom resource ``device-X``."""

_DEVNULL = "devnull"
_CAPTURE = "capture"
_INHERIT = "inherit"

# Run a command so that it dies with the agent's thread that started it, even when it
# does not ask for that itself (PR_SET_PDEATHSIG survives exec); the parent check
# closes the race of the agent dying between fork and prctl.
_DIE_WITH_AGENT = (
    "import ctypes,os,sys;"
    "ctypes.CDLL(None,use_errno=True).prctl(1,9,0,0,0);"
    "os.getppid()==int(sys.argv[1]) or os._exit(137);"
    "os.execvp(sys.argv[2],sys.argv[2:])"
)


def device_resource(name: str) -> str:
    """The custom resource that marks the node of device ``name``."""
    return f"{RESOURCE_PREFIX}{name}"


def placement_options(spec: DeviceSpec) -> dict[str, Any]:
    """Ray actor options that put the agent of ``spec`` on its node (pure)."""
    if spec.labels:
        return {"num_cpus": 0, "label_selector": dict(spec.labels)}
    return {"num_cpus": 0, "resources": {device_resource(spec.name): 1}}


def node_carries(node: Mapping[str, Any], spec: DeviceSpec) -> bool:
    """Whether a ``ray.nodes()`` entry is alive and can host the agent of ``spec`` (pure)."""
    if not node.get("Alive", False):
        return False
    if spec.labels:
        labels = node.get("Labels") or {}
        return all(labels.get(k) == v for k, v in spec.labels.items())
    return float((node.get("Resources") or {}).get(device_resource(spec.name), 0.0)) >= 1.0


def start_hint(spec: DeviceSpec) -> str:
    """The ``ray start`` command that adds a node for ``spec`` (pure)."""
    if spec.labels:
        labels = ",".join(f"{k}={v}" for k, v in spec.labels.items())
        return f'ray start --address HEAD:6379 --labels "{labels}"'
    return f"ray start --address HEAD:6379 --resources '{{\"{device_resource(spec.name)}\": 1}}'"


def single_host(ips: Sequence[str]) -> bool:
    """Whether every device node (and the driver) is on one host (pure)."""
    return len(set(ips)) <= 1


class DeviceAgent:
    """Runs on a device's node (as a Ray actor): its cgroup, its app, its workers.

    Every child is started from one long-lived thread of the agent, so children that
    ask to die with their parent (and every command, see ``_DIE_WITH_AGENT``) die when
    the agent process does.

    Parameters
    ----------
    spec : DeviceSpec
        The device.
    workdir : str
        The device's directory (background log, control file, join requests).
    seed : int
        Seed of the background app's arrivals.
    probe : str or None
        A file the driver wrote: :meth:`info` says whether this node sees it.
    """

    def __init__(self, spec: DeviceSpec, workdir: str, seed: int, probe: str | None) -> None:
        self.name = spec.name
        self.probe = probe
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agent-{spec.name}")
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._errs: dict[int, Path] = {}
        self._lock = threading.Lock()
        # captured streams live with the device's files (removed with the job directory)
        self._scratch = Path(workdir) / "streams"
        self._scratch.mkdir(parents=True, exist_ok=True)
        self.pool = EmulatedPool([spec], Path(workdir), seed=seed, pin=False)
        self._exec.submit(self.pool.__enter__).result()

    def info(self) -> dict[str, Any]:
        """Where this agent runs and what it sees."""
        import ray

        return {
            "device": self.name,
            "node_id": ray.get_runtime_context().get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": sys.executable,
            "bg_log": str(self.pool.bg_log(self.name)),
            "sees_workdir": self.probe is None or Path(self.probe).exists(),
        }

    def spawn(
        self,
        cmd: list[str],
        stdout: str,
        stderr: str,
        late_join: bool,
        env: dict[str, str] | None,
        cwd: str | None,
    ) -> int:
        """Start ``cmd`` for this device; returns its pid (on this node)."""
        if cmd and cmd[0] == "<python>":
            cmd = [sys.executable, *cmd[1:]]
        wrapped = [sys.executable, "-S", "-c", _DIE_WITH_AGENT, str(os.getpid()), *cmd]
        err_path = self._scratch / f"{uuid.uuid4().hex}.err"
        kw: dict[str, Any] = {"cwd": cwd}
        if env is not None:
            kw["env"] = env
        files = []
        for key, how in (("stdout", stdout), ("stderr", stderr)):
            if how == _DEVNULL:
                kw[key] = subprocess.DEVNULL
            elif how == _CAPTURE:
                fh = open(err_path, "ab")  # noqa: SIM115
                files.append(fh)
                kw[key] = fh

        def start() -> subprocess.Popen[bytes]:
            return self.pool.spawn(self.name, wrapped, late_join=late_join, **kw)

        try:
            proc = self._exec.submit(start).result()
        finally:
            for fh in files:
                fh.close()
        with self._lock:
            self._procs[proc.pid] = proc
            if files:
                self._errs[proc.pid] = err_path
        return proc.pid

    def poll(self) -> dict[int, int | None]:
        """Exit status of every worker this agent started (``None``: running)."""
        with self._lock:
            return {pid: p.poll() for pid, p in self._procs.items()}

    def signal(self, pid: int, sig: int) -> None:
        """Send ``sig`` to a worker's process group and reap it."""
        with self._lock:
            proc = self._procs.get(pid)
        if proc is not None and proc.poll() is None:
            kill_group(proc, sig, reap_s=REAP_S)

    def output(self, pid: int, limit: int = 1 << 16) -> bytes:
        """The last ``limit`` bytes a worker wrote to a captured stream."""
        path = self._errs.get(pid)
        if path is None or not path.exists():
            return b""
        data = path.read_bytes()
        return data[-limit:]

    def set_rate(self, rate_rps: float) -> None:
        self.pool.set_rate(self.name, rate_rps)

    def background_ready(self) -> bool:
        """Whether the device has no app or its app has served a request."""
        if self.name not in self.pool._bg:
            return True
        log = self.pool.bg_log(self.name)
        return log.exists() and log.stat().st_size > 0

    def pids(self) -> list[int]:
        """Every process of this device still running (app and workers)."""
        return self.pool.pids()

    def free_port(self) -> int:
        """A TCP port free on this node right now (for a rendezvous hosted here)."""
        return free_port()

    def close(self) -> None:
        """Kill the app and every worker, remove the device's cgroup."""
        self._exec.submit(self.pool.close).result()
        self._exec.shutdown(wait=False)
        shutil.rmtree(self._scratch, ignore_errors=True)
