"""Every live stressor and scratch directory, and the watchdog that outlives the driver.

Stressors must not outlive the process that started them, whichever way it ends:

- a normal exit or an exception goes through :meth:`StressMix.stop` (``atexit`` runs
  :func:`kill_all_live` for anything left);
- Ctrl-C, and SIGTERM under the CLI (its entry point turns SIGTERM into
  ``KeyboardInterrupt``), unwind through the same ``stop``/``close`` path;
- SIGTERM or SIGHUP to a library caller that left them at their defaults kills the
  registered groups, then lets the signal do what it would have done;
- SIGKILL leaves no handler to run: each stressor asks Linux to kill it when its parent
  dies (:func:`edgewise.procs.die_with_parent`), and the watchdog, a tiny process in its
  own session reading ``+PGID``/``-PGID`` and ``<DIR``/``>DIR`` lines, kills every group
  and removes every scratch directory still registered when its stdin reaches EOF. A
  duty-cycled stressor may be SIGSTOPped at that moment, and a stopped stress-ng never
  reaches its own ``--timeout``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False

_WATCHDOG_SRC = """
import os, shutil, signal, sys, time
live, dirs = set(), set()
for line in sys.stdin:
    op, arg = line[:1], line[1:].rstrip("\\n")
    if op in ("+", "-") and arg.isdigit():
        (live.add if op == "+" else live.discard)(int(arg))
    elif op in ("<", ">") and arg:
        (dirs.add if op == "<" else dirs.discard)(arg)
for pgid in live:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
deadline = time.monotonic() + 5.0
while live and time.monotonic() < deadline:
    for pgid in list(live):
        try:
            os.killpg(pgid, 0)
        except OSError:
            live.discard(pgid)
    time.sleep(0.05)
for path in dirs:
    shutil.rmtree(path, ignore_errors=True)
"""
_WATCHDOG: subprocess.Popen[bytes] | None = None


def _tell_watchdog(line: str) -> None:
    """Send one registry line to the watchdog, starting it on first use (hold _LIVE_LOCK)."""
    global _WATCHDOG
    if _WATCHDOG is None or _WATCHDOG.poll() is not None:
        _WATCHDOG = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG_SRC],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    assert _WATCHDOG.stdin is not None
    with contextlib.suppress(OSError, ValueError):
        _WATCHDOG.stdin.write(line.encode() + b"\n")
        _WATCHDOG.stdin.flush()


def register(proc: subprocess.Popen[bytes]) -> None:
    """Track ``proc``'s process group (it leads its own) until :func:`unregister`."""
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc
        _tell_watchdog(f"+{proc.pid}")


def unregister(pgid: int) -> None:
    """Stop tracking group ``pgid`` (it has been stopped and reaped)."""
    with _LIVE_LOCK:
        if _LIVE.pop(pgid, None) is not None:
            _tell_watchdog(f"-{pgid}")


def register_scratch(path: str) -> None:
    """Have the watchdog remove directory ``path`` if the driver dies before it does."""
    if "\n" in path:
        return  # cannot travel on one line; the driver's own clean-up still removes it
    with _LIVE_LOCK:
        _tell_watchdog(f"<{path}")


def unregister_scratch(path: str) -> None:
    """The driver removed ``path`` itself: the watchdog can forget it."""
    if "\n" in path:
        return
    with _LIVE_LOCK:
        _tell_watchdog(f">{path}")


def signal_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to process group ``pgid``; a group that is gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still exists (zombies count until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_all_live() -> int:
    """SIGKILL every stressor group still alive; returns how many groups were hit."""
    with _LIVE_LOCK:
        items = list(_LIVE.items())
        _LIVE.clear()
        for pgid, _ in items:
            _tell_watchdog(f"-{pgid}")
    for pgid, proc in items:
        signal_group(pgid, signal.SIGCONT)
        signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=2)
    return len(items)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    kill_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_handlers() -> None:
    """Kill the stressors at exit, and on SIGTERM/SIGHUP where those are at their defaults.

    A handler already installed (the CLI's SIGTERM -> ``KeyboardInterrupt``) is kept:
    the interrupt unwinds through :meth:`StressMix.stop` like Ctrl-C.
    """
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(kill_all_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)
