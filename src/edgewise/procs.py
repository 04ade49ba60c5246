"""Child processes and ports: one home for how edgewise starts and stops what it runs.

Every long-lived child (stress-ng, a profiled target, a device's app, a training rank)
runs in its own process group, so one signal stops it and everything it forked, and
asks Linux to kill it when its parent dies, so an interrupted command leaves no orphan.
Ports are probed on loopback only: nothing edgewise starts listens beyond it unless a
user asks for another host.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


#: Where :func:`free_port` looks first: below Linux's ephemeral range (32768-60999 by
#: default), above the ports Ray gives its workers (10002-19999) and below those of
#: Serve's HAProxy replicas (30000-31000). A port the kernel hands out (``bind`` to port
#: 0, or the source port of an outgoing connection, of which a starting Ray makes many)
#: comes from the ephemeral range: one probed there and used a moment later can be
#: taken in between (seen: Serve's proxy failing to bind a port probed before ray.init).
PORT_BAND = (20000, 30000)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` (loopback by default) that is free right now.

    Tried at random in :data:`PORT_BAND` first, then any the kernel offers.
    """
    pick = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(64):
        port = pick.randrange(*PORT_BAND)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no orphans).

    Meant for ``preexec_fn`` (it survives ``exec``); a no-op where ``prctl`` is missing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except OSError:
        pass


def child_preexec(extra: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child die with its parent, then runs ``extra``."""

    def _pre() -> None:
        die_with_parent()
        if extra is not None:
            extra()

    return _pre


def kill_group(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str],
    sig: int = signal.SIGKILL,
    *,
    reap_s: float = 0.0,
) -> None:
    """Send ``sig`` to ``proc``'s process group (started with ``start_new_session``).

    The group is signalled even when its leader has exited: what it forked may live on.
    Falls back to the process alone when the group is gone or not its own; with
    ``reap_s > 0`` waits that long for the leader to exit.
    """
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
    if reap_s > 0:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=reap_s)


def stop_group(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str], grace_s: float = 2.0
) -> int | None:
    """SIGTERM ``proc``'s group, SIGKILL it after ``grace_s``; return its exit code."""
    kill_group(proc, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        kill_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=grace_s)
    return proc.poll()
