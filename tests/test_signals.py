"""SIGTERM stops a command the way Ctrl-C does (``timeout``, systemd and Kubernetes send it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_monitor_stops_cleanly_on_both_signals(tmp_path: Path, sig: int) -> None:
    env = dict(os.environ, EDGEWISE_HOME=str(tmp_path))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgewise.cli.main",
            "monitor",
            "--seconds",
            "60",
            "--interval",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first sample: the loop is running
        assert line.strip(), "monitor printed nothing"
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
        assert time.monotonic() - t0 < 10
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
