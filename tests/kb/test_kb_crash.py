"""A writer killed with SIGKILL in the middle of a transaction leaves the KB consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from edgewise.kb import KnowledgeBase
from edgewise.kb import models as m

pytestmark = pytest.mark.slow

SAMPLES_PER_RUN = 10

WRITER = textwrap.dedent(
    """
    import sys, time
    from edgewise.kb import KnowledgeBase, models as m

    kb = KnowledgeBase.open(sys.argv[1])
    mode = sys.argv[2]
    with kb.transaction() as s:
        w = m.Workload(name="target", kind="zoo", params={})
        s.add(w)
        s.flush()
        c = m.Campaign(name="c", target_workload_id=w.id)
        s.add(c)
    if mode == "hang":
        with kb.transaction() as s:
            for i in range(200):
                s.add(m.Run(campaign_id=c.id, index=i, design={"cpu": 0.5}))
            s.flush()
            print("IN-TRANSACTION", flush=True)
            time.sleep(60)
    else:  # "loop": one run and its samples per transaction, as a campaign does
        i = 0
        while True:
            with kb.transaction() as s:
                run = m.Run(campaign_id=c.id, index=i, design={"cpu": 0.1})
                s.add(run)
                s.flush()
                for k in range(SAMPLES):
                    s.add(m.Sample(run_id=run.id, t=float(k), metrics={"cpu": 0.5}))
            print(f"COMMITTED {i}", flush=True)
            i += 1
    """
).replace("SAMPLES", str(SAMPLES_PER_RUN))


def _start_writer(url: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def _wait_for(
    proc: subprocess.Popen[str], prefix: str, count: int = 1, timeout_s: float = 30
) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen = 0
    while seen < count:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"writer exited early (rc={proc.poll()}): {err[-2000:]}")
        if line.startswith(prefix):
            seen += 1
        assert time.monotonic() < deadline, "writer too slow"


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _assert_healthy(kb: KnowledgeBase) -> None:
    with kb.engine.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    # The dead writer's lock is gone: a new write goes through at once.
    with kb.transaction() as s:
        s.add(m.Plan(kind="serving", inputs={}, decision={}))
    assert kb.counts()["plans"] == 1


def test_sigkill_inside_transaction_leaves_none_of_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kb.sqlite'}"
    proc = _start_writer(url, "hang")
    try:
        _wait_for(proc, "IN-TRANSACTION")
    finally:
        _kill(proc)
    with KnowledgeBase.open(url) as kb:
        got = kb.counts()
        assert got["campaigns"] == 1  # committed before the kill
        assert got["runs"] == 0  # 200 flushed but uncommitted rows: gone
        _assert_healthy(kb)


def test_sigkill_during_a_campaign_keeps_every_committed_run_whole(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kb.sqlite'}"
    proc = _start_writer(url, "loop")
    try:
        _wait_for(proc, "COMMITTED", count=5)
    finally:
        _kill(proc)  # lands at an arbitrary point of the next transaction
    with KnowledgeBase.open(url) as kb:
        with kb.snapshot() as s:
            per_run = dict(
                s.execute(
                    select(m.Run.index, func.count(m.Sample.id))
                    .join(m.Sample, m.Sample.run_id == m.Run.id, isouter=True)
                    .group_by(m.Run.index)
                ).all()
            )
        assert len(per_run) >= 5
        assert sorted(per_run) == list(range(len(per_run)))  # resumable: no gaps
        assert set(per_run.values()) == {SAMPLES_PER_RUN}  # no half-written run
        _assert_healthy(kb)
