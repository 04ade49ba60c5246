"""Nothing a default ``edgewise serve`` starts listens beyond loopback.

A real ``edgewise serve`` (digits_cnn, default options) is started as a subprocess; once
it answers on its port, every listening TCP socket of its process tree (the CLI, Ray's
GCS, raylet, agents, Serve's controller, proxy and replicas) is read from
``/proc/net/tcp`` and ``/proc/net/tcp6`` and must be bound to ``127.0.0.0/8`` or ``::1``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgewise.procs import stop_group

pytestmark = pytest.mark.slow

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp*

# Ray Serve 2.60 starts every replica's inter-deployment gRPC server on all interfaces,
# whatever the node IP or the HTTP host (ray/serve/_private/replica.py,
# ``ReplicaBase._on_initialized``: ``add_port_to_grpc_server(self._server, "[::]:0")``);
# it is guarded by Ray's token authentication. Exactly one such socket per replica is
# tolerated, and the test fails the day Ray stops opening it, so that this goes too.
_RAY_HARDCODED_WIDE = {"ray::ServeReplica": 1}


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket and the process that holds it."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    pid: int
    command: str

    @property
    def loopback(self) -> bool:
        addr = self.address
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped.is_loopback
        return addr.is_loopback


def _parse_address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as the kernel prints it in /proc/net/tcp* (32-bit words, host order)."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return ipaddress.IPv4Address(words)
    return ipaddress.IPv6Address(words)


def test_parse_address_reads_the_kernels_byte_order() -> None:
    assert str(_parse_address("0100007F")) == "127.0.0.1"
    assert str(_parse_address("00000000")) == "0.0.0.0"
    assert str(_parse_address("00000000000000000000000001000000")) == "::1"
    mapped = _parse_address("0000000000000000FFFF00000100007F")
    assert isinstance(mapped, ipaddress.IPv6Address) and str(mapped.ipv4_mapped) == "127.0.0.1"


def _process_tree(root: int) -> set[int]:
    """``root`` and all its descendants, from each process's parent in /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def _socket_owners(pids: set[int]) -> dict[int, int]:
    """Socket inode -> pid, for the sockets the given processes hold open."""
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[len("socket:[") : -1])] = pid
    return owners


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def listeners(root: int) -> list[Listener]:
    """Every listening TCP socket held by ``root``'s process tree."""
    owners = _socket_owners(_process_tree(root))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != _LISTEN or int(fields[9]) not in owners:
                continue
            hex_addr, hex_port = fields[1].split(":")
            pid = owners[int(fields[9])]
            found.append(Listener(_parse_address(hex_addr), int(hex_port, 16), pid, _command(pid)))
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie waiting for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop_leftovers(pids: set[int], wait_s: float) -> dict[int, str]:
    """Give ``pids`` ``wait_s`` to exit; SIGKILL and return those still running."""
    deadline = time.monotonic() + wait_s
    alive = {p: _command(p) for p in pids if _running(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = {p: c for p, c in alive.items() if _running(p)}
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return alive


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"edgewise serve exited early with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"edgewise serve did not answer on {url} within {timeout_s:.0f} s")


def test_default_serve_listens_on_loopback_only(tmp_path: Path, service_url: Any) -> None:
    service = tmp_path / "service.yaml"
    service.write_text(
        "name: digits\n"
        "variants:\n  - {model: digits_cnn, accuracy: 0.98}\n"
        "min_accuracy: 0.9\n"
        "slo: {latency_ms: 200, percentile: 95}\n"
    )
    env = {**os.environ, "EDGEWISE_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewise.cli.main", "serve", str(service), "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    started: set[int] = set()
    try:
        url = service_url(proc, tmp_path / "home", "digits", timeout_s=400)
        port = int(url.rsplit(":", 1)[1])
        _wait_until_serving(proc, f"{url}/healthz", timeout_s=60)
        started = _process_tree(proc.pid)
        found = listeners(proc.pid)
    finally:
        stop_group(proc, grace_s=30.0)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        left = _stop_leftovers(started - {proc.pid}, wait_s=30.0)
    assert not left, f"serve left processes behind: {left}"
    assert any(s.port == port and s.loopback for s in found), found  # the front door
    assert any("gcs_server" in s.command for s in found), "Ray's processes were not seen"
    wide = [s for s in found if not s.loopback]
    tolerated = {
        name: [s for s in wide if s.command.startswith(name) and s.address.is_unspecified]
        for name in _RAY_HARDCODED_WIDE
    }
    replicas = {s.pid for s in found if s.command.startswith("ray::ServeReplica")}
    for name, per_process in _RAY_HARDCODED_WIDE.items():
        assert len(tolerated[name]) == per_process * len(replicas), (tolerated, replicas)
    others = [s for s in wide if not any(s in t for t in tolerated.values())]
    assert not others, f"listening beyond loopback: {others}\n{stderr[-2000:]}"
