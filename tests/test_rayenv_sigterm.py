"""The Ray session keeps the process's SIGTERM handling across ``ray.init``.

``ray.init`` installs Ray's own SIGTERM handler in the driver; :class:`SigtermGuard`
puts back the one in place before, and the original after ``ray.shutdown``. Ray is not
started here: its handler is stood in for by another function installed between
``save`` and ``take_back``, as ``ray.init`` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from edgewise.rayenv import SigtermGuard


def _ours(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _rays(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(signum)


@pytest.fixture(autouse=True)
def _keep_sigterm() -> Iterator[None]:
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, saved)


def test_our_handler_comes_back_after_ray_init_and_stays_until_restore() -> None:
    signal.signal(signal.SIGTERM, _ours)
    guard = SigtermGuard()
    guard.save()
    signal.signal(signal.SIGTERM, _rays)  # what ray.init does
    guard.take_back()
    assert signal.getsignal(signal.SIGTERM) is _ours
    guard.restore()
    assert signal.getsignal(signal.SIGTERM) is _ours


def test_a_delivered_sigterm_takes_our_path() -> None:
    signal.signal(signal.SIGTERM, _ours)
    guard = SigtermGuard()
    guard.save()
    signal.signal(signal.SIGTERM, _rays)
    guard.take_back()
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        signal.raise_signal(signal.SIGTERM)


def test_at_the_default_rays_python_handler_is_kept_and_the_default_restored() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    guard = SigtermGuard()
    guard.save()
    signal.signal(signal.SIGTERM, _rays)
    guard.take_back()
    assert signal.getsignal(signal.SIGTERM) is _rays
    guard.restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_outside_the_main_thread_nothing_is_touched() -> None:
    signal.signal(signal.SIGTERM, _ours)
    guard = SigtermGuard()
    errors: list[BaseException] = []

    def in_a_thread() -> None:
        try:
            guard.save()
            guard.take_back()
            guard.restore()
        except BaseException as err:
            errors.append(err)

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    worker.join()
    assert errors == []
    assert signal.getsignal(signal.SIGTERM) is _ours


def test_a_handler_set_after_take_back_is_kept() -> None:
    signal.signal(signal.SIGTERM, _ours)
    guard = SigtermGuard()
    guard.save()
    signal.signal(signal.SIGTERM, _rays)
    guard.take_back()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the CLI's: a second SIGTERM kills
    guard.restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_failed_ray_init_gives_the_handler_back() -> None:
    signal.signal(signal.SIGTERM, _ours)
    guard = SigtermGuard()
    guard.save()
    signal.signal(signal.SIGTERM, _rays)  # installed before ray.init failed
    guard.restore()
    assert signal.getsignal(signal.SIGTERM) is _ours


_RAY_SCRIPT = """
import signal
import sys
import time
import ray
from edgewise.rayenv import RaySession

def interrupt(signum, frame):  # as the CLI's entry point does
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt(f"signal {signum}")

signal.signal(signal.SIGTERM, interrupt)
try:
    with RaySession(num_cpus=1):
        print("answer", ray.get(ray.remote(lambda: 42).remote()), flush=True)
        time.sleep(60)
except KeyboardInterrupt as err:
    print(f"interrupted by {err}; Ray still up: {ray.is_initialized()}", flush=True)
    sys.exit(130)
"""


@pytest.mark.slow
def test_sigterm_to_a_real_ray_driver_takes_the_ctrl_c_path(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _RAY_SCRIPT],
        env={**os.environ, "EDGEWISE_HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "answer 42"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]  # not -6: Ray's C++ handler did not abort
    assert "interrupted by signal 15; Ray still up: False" in out, out + err[-3000:]
