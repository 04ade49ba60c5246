"""Devices on a Ray cluster: one agent actor per device, on the node that carries it.

:class:`RayPool` is the cluster counterpart of
:class:`~edgewise.retrain.devices.EmulatedPool` and the same
:class:`~edgewise.retrain.controller.Launcher`: ``run_training``, the profiler and the
background monitor use either unchanged. Each device of the YAML gets a
:class:`DeviceAgent` actor (``num_cpus=0``) placed on the Ray node that carries it:

- a device with ``labels`` goes to a node with those labels (Ray's ``label_selector``);
- otherwise to a node with the custom resource ``device-<name>`` (one unit).

Start such a node on a real cluster with::

    ray start --address HEAD:6379 --resources '{"device-jetson-a": 1}'
    ray start --address HEAD:6379 --labels "edgewise/device=jetson-a"

The agent hosts a one-device :class:`EmulatedPool` on its node: the device's cgroup
(CPU share and memory of the YAML; on a real device set ``cpus`` to its cores) with
its background app, and it starts the training worker commands in it exactly as the
local pool does (late join, own process group, killed with the agent). The driver
gets a :class:`RemoteProcess` per worker: ``poll()`` asks the agent (at most every
50 ms per agent), a dead agent or node reads as a rank killed by ``SIGKILL``, so the
controller's failure detection, re-plan and resume work as on one host. Killing a
device (:meth:`RayPool.kill_device`) kills its app and workers and then the actor.

What is and is not shared. A worker's stderr is captured on its node and copied to
the driver's file when it exits; background rates, readiness and rendezvous ports go
through the agents. The training job itself still meets on files (the trainer reads
its group config and initial weights, writes ready markers, per-step metrics and
checkpoints under the job directory, and the controller and profiler read them;
background logs are read from ``<workdir>/<device>/bg-<device>.log``). On one host
(``ray.cluster_utils.Cluster`` or several ``ray start`` on one machine) that is the
local disk, and the rendezvous is on loopback (127.0.0.1). A cluster over several
hosts additionally needs:

- the job directory on a filesystem shared at the same path by every node (NFS); the
  pool checks this at start and names the device that cannot see it
  (``edgewise retrain --address`` copies the deployed weights into it);
- a rendezvous on rank 0's node: :meth:`RayPool.rendezvous` returns that node's
  address and a port free there, the controller passes them in the group config
  (``port``, ``extra["master_addr"]``) and the trainer connects there; gloo may also
  need ``GLOO_SOCKET_IFNAME`` on hosts with several interfaces.

On one host the agents do not pin devices to distinct CPUs (each agent knows only its
own device); the CPU quotas hold as in the local pool.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgewise.config import DeviceSpec
from edgewise.errors import EnvironmentProblem
from edgewise.procs import free_port
from edgewise.retrain.rayagent import (
    _CAPTURE,
    _DEVNULL,
    _INHERIT,
    DeviceAgent,
    device_resource,
    node_carries,
    placement_options,
    single_host,
    start_hint,
)

POLL_EVERY_S = 0.05
"""How stale a worker's exit status may be (one agent call per interval at most)."""


class RemoteProcess:
    """A worker started by a :class:`DeviceAgent`, seen from the driver (Popen-like).

    ``returncode`` is negative for a signal, ``-SIGKILL`` also when the agent or its
    node died. A captured stream is copied to ``local_output`` once the worker exits.
    """

    def __init__(
        self, pool: RayPool, device: str, pid: int, node_id: str, local_output: Path | None
    ) -> None:
        self.pool = pool
        self.device = device
        self.pid = pid
        self.node_id = node_id
        self.local_output = local_output
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self.pool._exit_code(self.device, self.pid)
            if code is not None:
                self.returncode = code
                self._fetch_output()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.time() + timeout
        while (code := self.poll()) is None:
            if end is not None and time.time() > end:
                raise subprocess.TimeoutExpired(f"{self.device}:{self.pid}", timeout or 0.0)
            time.sleep(POLL_EVERY_S)
        return code

    def send_signal(self, sig: int) -> None:
        self.pool._signal(self.device, self.pid, sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's process group and wait (bounded) until it is gone."""
        self.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(timeout=5.0)

    def kill(self) -> None:
        self.kill_group(signal.SIGKILL)

    def _fetch_output(self) -> None:
        if self.local_output is None:
            return
        data = self.pool._output(self.device, self.pid)
        with contextlib.suppress(OSError), open(self.local_output, "ab") as fh:
            fh.write(data)


class RayPool:
    """A pool of devices on a Ray cluster, one :class:`DeviceAgent` each (context manager).

    Parameters
    ----------
    devices : sequence of DeviceSpec
        The devices; each is placed by its labels or by the ``device-<name>`` resource.
    workdir : Path
        Job directory on the driver; device ``X`` keeps its files in ``workdir/X``.
        Must be visible at the same path on every node (checked at start).
    seed : int
        Seed of the background apps (device ``i`` gets ``seed + i``, as locally).
    address : str or None
        Ray address to join when Ray is not initialised yet (``None``: local Ray).
    startup_timeout_s : float
        How long the agents may take to start.
    """

    def __init__(
        self,
        devices: Sequence[DeviceSpec],
        workdir: Path,
        seed: int = 0,
        address: str | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.specs = {d.name: d for d in devices}
        self.workdir = Path(workdir)
        self.seed = seed
        self.address = address
        self.startup_timeout_s = startup_timeout_s
        self.agents: dict[str, Any] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self._dead: set[str] = set()
        self._handles: list[RemoteProcess] = []
        self._codes: dict[str, tuple[float, dict[int, int | None]]] = {}
        self._session: Any = None
        self._driver_ip = "127.0.0.1"

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> RayPool:
        import ray

        from edgewise.rayenv import RaySession

        try:
            if not ray.is_initialized():
                self._session = RaySession(self.address).__enter__()
            self._driver_ip = ray.util.get_node_ip_address()
            self._start_agents()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_agents(self) -> None:
        import ray

        nodes = ray.nodes()
        for spec in self.specs.values():
            if not any(node_carries(n, spec) for n in nodes):
                where = (
                    f"labels {spec.labels}"
                    if spec.labels
                    else f"resource {device_resource(spec.name)}"
                )
                raise EnvironmentProblem(
                    f"device {spec.name}: no alive Ray node has {where}; start one with "
                    f"{start_hint(spec)}"
                )
        self.workdir.mkdir(parents=True, exist_ok=True)
        probe = self.workdir / f".pool-probe-{uuid.uuid4().hex}"
        probe.write_text("1")
        try:
            remote = ray.remote(DeviceAgent)
            for i, spec in enumerate(self.specs.values()):
                self.agents[spec.name] = remote.options(
                    **placement_options(spec), max_restarts=0, max_concurrency=1
                ).remote(spec, str(self.workdir / spec.name), self.seed + i, str(probe))
            refs = {name: a.info.remote() for name, a in self.agents.items()}
            end = time.time() + self.startup_timeout_s
            for name, ref in refs.items():
                try:
                    self.info[name] = ray.get(ref, timeout=max(0.1, end - time.time()))
                except ray.exceptions.GetTimeoutError:
                    raise EnvironmentProblem(
                        f"device {name}: its agent did not start in {self.startup_timeout_s:g} s "
                        f"(is its node busy or gone?)"
                    ) from None
                except ray.exceptions.RayError as err:
                    last = str(err).strip().splitlines()[-1] if str(err).strip() else ""
                    raise EnvironmentProblem(
                        f"device {name}: its agent failed to start: {last}"
                    ) from None
        finally:
            probe.unlink(missing_ok=True)
        for name, info in self.info.items():
            if not info["sees_workdir"]:
                raise EnvironmentProblem(
                    f"device {name} (node {info['ip']}): job directory {self.workdir} is not "
                    "visible there; on several hosts put --workdir on a filesystem shared at "
                    "the same path by every node"
                )

    def close(self) -> None:
        """Stop every agent (its app, workers and cgroup go with it). Safe to call twice."""
        import ray

        if ray.is_initialized():
            closing = {n: a.close.remote() for n, a in self.agents.items() if n not in self._dead}
            for _name, ref in closing.items():
                with contextlib.suppress(Exception):
                    ray.get(ref, timeout=15.0)
            for agent in self.agents.values():
                with contextlib.suppress(Exception):
                    ray.kill(agent, no_restart=True)
        self.agents.clear()
        self._dead.clear()
        with contextlib.suppress(Exception):
            from edgewise.isolation import cleanup_stale

            cleanup_stale()
        if self._session is not None:
            self._session.__exit__(None, None, None)
            self._session = None

    # ------------------------------------------------------------------ Launcher
    def spawn(self, name: str, cmd: list[str], late_join: bool = True, **kw: Any) -> RemoteProcess:
        """Start ``cmd`` on device ``name``'s node in its cgroup (see ``EmulatedPool.spawn``).

        ``stdout``/``stderr`` may be ``None`` (the agent's log), ``subprocess.DEVNULL`` or
        an open file (its path gets the output when the worker exits); ``env`` and
        ``cwd`` pass through. ``sys.executable`` in ``cmd`` becomes the node's Python.
        """
        import ray

        if name not in self.agents or name in self._dead:
            raise KeyError(f"no live device {name!r} in this pool")
        unknown = set(kw) - {"stdout", "stderr", "env", "cwd"}
        if unknown:
            raise TypeError(f"RayPool.spawn: unsupported arguments {sorted(unknown)}")
        local: Path | None = None
        how: dict[str, str] = {}
        for key in ("stdout", "stderr"):
            target = kw.get(key)
            if target is None:
                how[key] = _INHERIT
            elif target == subprocess.DEVNULL:
                how[key] = _DEVNULL
            elif isinstance(getattr(target, "name", None), str):
                how[key] = _CAPTURE
                local = Path(target.name)
            else:
                raise TypeError(f"RayPool.spawn: {key} must be None, DEVNULL or an open file")
        argv = ["<python>", *cmd[1:]] if cmd and cmd[0] == sys.executable else list(cmd)
        env = kw.get("env")
        try:
            pid = ray.get(
                self.agents[name].spawn.remote(
                    argv,
                    how["stdout"],
                    how["stderr"],
                    late_join,
                    dict(env) if env is not None else None,
                    str(kw["cwd"]) if kw.get("cwd") is not None else None,
                ),
                timeout=30.0,
            )
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            # the device went away (or cannot be reached): a rank that died at once,
            # so the controller plans it out like any other failed device
            self._dead.add(name)
            pid = -1
        handle = RemoteProcess(self, name, int(pid), self.info[name]["node_id"], local)
        if pid < 0:
            handle.returncode = -signal.SIGKILL
        self._handles.append(handle)
        return handle

    def kill_device(self, name: str) -> None:
        """Emulate the failure of a device: its app and workers die, then its agent."""
        import ray

        agent = self.agents.get(name)
        if agent is None or name in self._dead:
            return
        with contextlib.suppress(Exception):
            ray.get(agent.close.remote(), timeout=10.0)
        self.kill_agent(name)

    def kill_agent(self, name: str) -> None:
        """Kill a device's agent actor outright (as if its node died); children die with it."""
        import ray

        agent = self.agents.get(name)
        if agent is None:
            return
        with contextlib.suppress(Exception):
            ray.kill(agent, no_restart=True)
        self._dead.add(name)

    def rendezvous(self, device: str) -> tuple[str, int]:
        """Host and port for a group whose rank 0 runs on ``device``.

        Loopback when every device node is on the driver's host; otherwise rank 0's
        node address and a port free there.
        """
        import ray

        ips = [self._driver_ip, *(i["ip"] for i in self.info.values())]
        if single_host(ips):
            return "127.0.0.1", free_port()
        port = int(ray.get(self.agents[device].free_port.remote(), timeout=10.0))
        return str(self.info[device]["ip"]), port

    # ------------------------------------------------------------------ what EmulatedPool offers
    def bg_log(self, name: str) -> Path:
        """Background log of device ``name`` (on the shared job directory)."""
        if name in self.info:
            return Path(self.info[name]["bg_log"])
        return self.workdir / name / f"bg-{name}.log"

    def set_rate(self, name: str, rate_rps: float) -> None:
        """Change a background app's request rate (it picks it up within 0.5 s)."""
        import ray

        ray.get(self.agents[name].set_rate.remote(rate_rps), timeout=10.0)

    def wait_background_ready(self, timeout_s: float = 60.0) -> None:
        """Block until every background app has logged at least one request."""
        import ray

        end = time.time() + timeout_s
        for name, agent in self.agents.items():
            while not ray.get(agent.background_ready.remote(), timeout=10.0):
                if time.time() > end:
                    raise TimeoutError(f"background app of {name} did not start")
                time.sleep(0.1)

    def pids(self) -> list[int]:
        """PIDs (on their nodes) of every app and worker of the pool still running."""
        import ray

        out: list[int] = []
        for name, agent in self.agents.items():
            if name in self._dead:
                continue
            with contextlib.suppress(Exception):
                out.extend(ray.get(agent.pids.remote(), timeout=10.0))
        return out

    def node_of(self, name: str) -> str:
        """Ray node id of the node hosting device ``name``."""
        return str(self.info[name]["node_id"])

    @property
    def handles(self) -> list[RemoteProcess]:
        """Every worker this pool started, in order."""
        return list(self._handles)

    # ------------------------------------------------------------------ internals
    def _exit_code(self, name: str, pid: int) -> int | None:
        import ray

        now = time.time()
        cached = self._codes.get(name)
        if name in self._dead:
            known = cached[1].get(pid) if cached is not None else None
            return known if known is not None else -signal.SIGKILL
        if cached is None or now - cached[0] >= POLL_EVERY_S or pid not in cached[1]:
            try:
                codes = ray.get(self.agents[name].poll.remote(), timeout=10.0)
            except (ray.exceptions.GetTimeoutError, ray.exceptions.ActorUnavailableError):
                return None  # unknown for now; the controller's progress timeout bounds it
            except ray.exceptions.RayActorError:
                # the agent (or its node) is gone: so are its workers
                self._dead.add(name)
                return -signal.SIGKILL
            except ray.exceptions.RayError:
                return None
            self._codes[name] = (now, codes)
            cached = self._codes[name]
        return cached[1].get(pid)

    def _signal(self, name: str, pid: int, sig: int) -> None:
        import ray

        if name in self._dead:
            return
        with contextlib.suppress(ray.exceptions.RayError):
            ray.get(self.agents[name].signal.remote(pid, int(sig)), timeout=15.0)
        self._codes.pop(name, None)

    def _output(self, name: str, pid: int) -> bytes:
        import ray

        if name in self._dead:
            return b""
        try:
            return bytes(ray.get(self.agents[name].output.remote(pid), timeout=10.0))
        except ray.exceptions.RayError:
            return b""
