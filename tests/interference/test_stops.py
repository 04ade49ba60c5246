"""A profile campaign stopped by a signal: record ``interrupted``, no process, no scratch.

A real ``edgewise profile`` runs in a subprocess with its own ``TMPDIR`` and
``EDGEWISE_HOME``; once its stress-ng stressors run, it gets SIGINT (Ctrl-C), SIGTERM
(``timeout``, systemd, Kubernetes) or SIGKILL (nothing of it can clean up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _is_stress_ng(p: psutil.Process) -> bool:
    try:
        return p.name().startswith("stress-ng")
    except psutil.Error:
        return False


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_for_stressors(proc: subprocess.Popen[bytes], timeout_s: float) -> list[psutil.Process]:
    """Every process under ``proc`` once stress-ng runs there (the campaign measures)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "edgewise profile exited before it stressed anything"
        tree = _descendants(proc.pid)
        if any(_is_stress_ng(p) and p.children() for p in tree):
            time.sleep(0.3)  # the workers forked: a window is open or about to be
            return _descendants(proc.pid)
        time.sleep(0.1)
    raise AssertionError(f"no stress-ng under edgewise profile within {timeout_s:g} s")


def _campaign_status(home: Path) -> str:
    from edgewise.kb import KnowledgeBase
    from edgewise.kb import models as m

    kb = KnowledgeBase.open(f"sqlite:///{home / 'kb.sqlite'}")
    with kb.snapshot() as s:
        return str(s.query(m.Campaign).one().status)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_profile_leaves_no_process_and_no_scratch(tmp_path: Path, sig: int) -> None:
    home, scratch = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    scratch.mkdir()
    env = dict(os.environ, EDGEWISE_HOME=str(home), TMPDIR=str(scratch))
    env.pop("EDGEWISE_DB_URL", None)
    argv = [sys.executable, "-m", "edgewise.cli.main", "profile", "digits_cnn"]
    argv += ["--budget", "6", "--seconds", "2", "--warmup", "0.5", "--rate", "40"]
    with open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            # the test process may have inherited an ignored SIGINT; a child inherits that
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            tree = _wait_for_stressors(proc, timeout_s=240.0)
            assert any(_is_stress_ng(p) for p in tree)
            proc.send_signal(sig)
            proc.wait(timeout=90)  # a loaded 2-core host took over 30 s to stop
        finally:
            if proc.poll() is None:  # hung: leave nothing to later tests
                for p in _descendants(proc.pid):
                    p.kill()
                proc.kill()
                proc.wait(timeout=5)
    stderr = (tmp_path / "stderr.txt").read_text(errors="replace")
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and (any(_alive(p) for p in tree) or any(scratch.iterdir())):
        time.sleep(0.1)
    left = [f"{p.pid} {p.name()}" for p in tree if _alive(p)]
    assert not left, f"outlived a {signal.Signals(sig).name}: {left}"
    found = subprocess.run(["pgrep", "-f", str(scratch)], capture_output=True, text=True)
    assert found.stdout.strip() == "", f"processes still use {scratch}: {found.stdout}"
    assert sorted(p.name for p in scratch.iterdir()) == [], "scratch files left behind"
    if sig != signal.SIGKILL:
        assert "Traceback" not in stderr, stderr
        assert _campaign_status(home) == "interrupted"
