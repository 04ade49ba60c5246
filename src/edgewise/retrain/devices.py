"""Emulated device pool: one cgroup per device (CPU quota, memory), a background app in it.

Effects only. Each device of a :class:`~edgewise.config.DevicePool` becomes an
:class:`edgewise.isolation.CGroup` with the device's CPU quota and memory limit and a
high CPU weight (``cpu_weight=1000``), so that a device reaches its quota even when the
host is crowded by processes outside edgewise. Its latency-critical app
(:mod:`edgewise.retrain.background`) and the training workers run inside it, so they
compete for the device's quota as they would on the device.

Late join. Importing torch and building the model under a 0.33-CPU quota would take
three times as long as on the real (unthrottled) start-up path, so a child spawned with
``late_join=True`` starts outside the group, does its slow start-up, then calls
:func:`join_device_group`: it drops a request file in the pool's join directory and
waits for the acknowledgement. A thread of the pool moves it with
:meth:`CGroup.add_pid` and acknowledges. Every child runs in its own process group, asks
the kernel to kill it when its parent dies, and :meth:`EmulatedPool.close` kills what is
left (the groups kill their members on exit).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgewise.config import DeviceSpec
from edgewise.isolation import CGroup, spawn_in_cgroup
from edgewise.procs import kill_group

JOIN_ENV = "EDGEWISE_JOIN_DIR"
"""Environment variable naming the join directory of a late-joining child."""

DEVICE_CPU_WEIGHT = 10000
"""CPU weight of every device group (the v2 maximum). A device is emulated by a CPU
quota, and on a host crowded by other processes a group only reaches its quota if its
weight dominates theirs: with 1000 (ten busy processes' worth) the 1-CPU device's
measured throughput fell by up to 30 % while other test suites ran. The quotas still
cap every device."""

DEVICE_PERIOD_US = 5000
"""CFS period of device groups: a throttled rank or app waits at most this long."""


def pack_cpus(cpus: Sequence[float], host_cpus: Sequence[int]) -> list[str | None]:
    """Pin each device to one host CPU, first-fit decreasing (pure).

    Separate devices do not share a core, so emulated devices whose quotas fit on one
    CPU each are packed onto distinct CPUs where possible. Returns a cpuset per device,
    or all ``None`` when some device needs more than one CPU or the packing fails.
    """
    if not host_cpus or any(c > 1.0 for c in cpus):
        return [None] * len(cpus)
    free = {cpu: 1.0 for cpu in host_cpus}
    out: list[str | None] = [None] * len(cpus)
    for i in sorted(range(len(cpus)), key=lambda j: -cpus[j]):
        # the emptiest CPU that still holds it (spreads load, keeps big devices alone)
        fits = [cpu for cpu in host_cpus if free[cpu] + 1e-9 >= cpus[i]]
        if not fits:
            return [None] * len(cpus)
        cpu = max(fits, key=lambda k: (free[k], -k))
        free[cpu] -= cpus[i]
        out[i] = str(cpu)
    return out


def join_device_group(timeout_s: float = 30.0) -> bool:
    """Ask the spawning pool to move this process into its device's group; wait for it.

    Called by a late-joining child after its slow start-up (imports, data, model).
    Returns ``True`` once moved, ``False`` when not spawned for a late join or when the
    pool did not answer within ``timeout_s`` (the child then runs unthrottled and says
    so on stderr).
    """
    where = os.environ.pop(JOIN_ENV, None)
    if not where:
        return False
    d = Path(where)
    pid = os.getpid()
    tmp = d / f"{pid}.tmp"
    tmp.write_text(str(pid))
    os.replace(tmp, d / f"{pid}.req")
    ack = d / f"{pid}.ack"
    end = time.time() + timeout_s
    while time.time() < end:
        if ack.exists():
            with contextlib.suppress(OSError):
                ack.unlink()
            return True
        time.sleep(0.005)
    print(f"pid {pid}: device group join not acknowledged in {timeout_s:g} s", file=sys.stderr)
    return False


#: How long a killed process group's leader is waited for.
REAP_S = 5.0


class EmulatedPool:
    """A pool of emulated devices on this host (context manager).

    Parameters
    ----------
    devices : sequence of DeviceSpec
        The devices; each gets a group with ``cpus`` and ``memory_mb`` and, if it has
        one, its background app.
    workdir : Path
        Where background logs, control files and join requests go.
    seed : int
        Seed of the background apps' arrival processes.
    cpu_weight : int
        CPU weight of each device group (v2 scale).
    pin : bool
        Pin devices to distinct host CPUs where their quotas fit (:func:`pack_cpus`).
    kb_url : str, optional
        The knowledge base a registered background model (``NAME:vN``) is loaded from
        (default: ``$EDGEWISE_DB_URL`` or the default one).
    """

    def __init__(
        self,
        devices: Sequence[DeviceSpec],
        workdir: Path,
        seed: int = 0,
        cpu_weight: int = DEVICE_CPU_WEIGHT,
        pin: bool = True,
        kb_url: str | None = None,
    ) -> None:
        self.specs = {d.name: d for d in devices}
        self.kb_url = kb_url
        self.workdir = Path(workdir)
        self.seed = seed
        self.cpu_weight = cpu_weight
        self.pin = pin
        self.groups: dict[str, CGroup] = {}
        self._bg: dict[str, subprocess.Popen[bytes]] = {}
        self._children: list[subprocess.Popen[bytes]] = []
        self._device_of: dict[int, str] = {}
        self._stack = contextlib.ExitStack()
        self._stop = threading.Event()
        self._joiner: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def join_dir(self) -> Path:
        return self.workdir / "join"

    def __enter__(self) -> EmulatedPool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.join_dir.mkdir(exist_ok=True)
        cpusets = (
            pack_cpus([s.cpus for s in self.specs.values()], sorted(os.sched_getaffinity(0)))
            if self.pin
            else [None] * len(self.specs)
        )
        try:
            for (name, spec), cpuset in zip(self.specs.items(), cpusets, strict=True):
                cg = CGroup(
                    f"retrain-{name}",
                    cpus=spec.cpus,
                    cpuset=cpuset,
                    memory_mb=spec.memory_mb,
                    cpu_weight=self.cpu_weight,
                    period_us=DEVICE_PERIOD_US,
                )
                self._stack.enter_context(cg)
                self.groups[name] = cg
            self._joiner = threading.Thread(target=self._join_loop, daemon=True)
            self._joiner.start()
            for i, (name, spec) in enumerate(self.specs.items()):
                if spec.background is None:
                    continue
                self.set_rate(name, spec.background.rate_rps)
                cmd = [
                    sys.executable,
                    "-m",
                    "edgewise.retrain.background",
                    "--model",
                    spec.background.model,
                    "--rate",
                    str(spec.background.rate_rps),
                    "--out",
                    str(self.bg_log(name)),
                    "--control",
                    str(self._control(name)),
                    "--seed",
                    str(self.seed + i),
                    "--batch-size",
                    str(spec.background.batch_size),
                ]
                env = dict(os.environ, EDGEWISE_DB_URL=self.kb_url) if self.kb_url else None
                self._bg[name] = self._spawn(
                    name, cmd, late_join=True, stderr=subprocess.DEVNULL, env=env
                )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ join requests
    def _join_loop(self) -> None:
        while not self._stop.is_set():
            self.serve_joins()
            self._stop.wait(0.01)

    def serve_joins(self) -> int:
        """Move every process that asked to join into its device's group; returns how many."""
        moved = 0
        try:
            reqs = [p for p in self.join_dir.iterdir() if p.suffix == ".req"]
        except OSError:
            return 0
        for req in reqs:
            with contextlib.suppress(ValueError):
                pid = int(req.stem)
                with self._lock:
                    name = self._device_of.get(pid)
                if name is None or name not in self.groups:
                    continue
                with contextlib.suppress(OSError, RuntimeError):
                    self.groups[name].add_pid(pid)
                    moved += 1
                with contextlib.suppress(OSError):
                    req.unlink()
                    (self.join_dir / f"{pid}.ack").write_text("1")
        return moved

    # ------------------------------------------------------------------ children
    def _spawn(
        self, name: str, cmd: list[str], late_join: bool = True, **kw: Any
    ) -> subprocess.Popen[bytes]:
        if name not in self.groups:
            raise KeyError(f"no device {name!r} in this pool")
        if not late_join:
            return spawn_in_cgroup(cmd, self.groups[name], **kw)
        kw["env"] = {**(kw.get("env") or os.environ), JOIN_ENV: str(self.join_dir)}
        kw.setdefault("process_group", 0)
        with self._lock:
            proc: subprocess.Popen[bytes] = subprocess.Popen(cmd, **kw)
            self._device_of[proc.pid] = name
        return proc

    def bg_log(self, name: str) -> Path:
        return self.workdir / f"bg-{name}.log"

    def _control(self, name: str) -> Path:
        return self.workdir / f"bg-{name}.json"

    def set_rate(self, name: str, rate_rps: float) -> None:
        """Change a background app's request rate (it picks it up within 0.5 s)."""
        tmp = self._control(name).with_suffix(".tmp")
        tmp.write_text(json.dumps({"rate_rps": rate_rps}))
        os.replace(tmp, self._control(name))

    def wait_background_ready(self, timeout_s: float = 60.0) -> None:
        """Block until every background app has logged at least one request."""
        end = time.time() + timeout_s
        for name in self._bg:
            while not (self.bg_log(name).exists() and self.bg_log(name).stat().st_size > 0):
                if time.time() > end:
                    raise TimeoutError(f"background app of {name} did not start")
                time.sleep(0.1)

    def spawn(
        self, name: str, cmd: list[str], late_join: bool = True, **kw: Any
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` for device ``name`` (own process group, dies with us).

        With ``late_join`` the child starts outside the group and moves in when it calls
        :func:`join_device_group`; otherwise it starts inside.
        """
        proc = self._spawn(name, cmd, late_join=late_join, **kw)
        self._children.append(proc)
        return proc

    def kill_device(self, name: str) -> None:
        """Emulate a device failure: its background app goes too."""
        if name in self._bg:
            kill_group(self._bg.pop(name), reap_s=REAP_S)

    def pids(self) -> list[int]:
        """PIDs of every child this pool started that is still running."""
        return [p.pid for p in [*self._bg.values(), *self._children] if p.poll() is None]

    def close(self) -> None:
        """Kill every child, stop the join thread, remove the groups. Safe to call twice."""
        self._stop.set()
        if self._joiner is not None:
            self._joiner.join(timeout=2.0)
            self._joiner = None
        for proc in [*self._children, *self._bg.values()]:
            if proc.poll() is None:
                kill_group(proc, reap_s=REAP_S)
        self._bg.clear()
        self._children.clear()
        self._stack.close()


@contextlib.contextmanager
def emulated_pool(
    devices: Sequence[DeviceSpec], workdir: Path, seed: int = 0
) -> Iterator[EmulatedPool]:
    with EmulatedPool(devices, workdir, seed) as pool:
        yield pool
