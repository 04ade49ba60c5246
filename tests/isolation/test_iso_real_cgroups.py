"""Real cgroups on this host (v1 here, v2 where its controllers are enabled).

Skipped with a reason where cgroups are not writable (not root, read-only mounts).
The busy children get a high CPU weight so that the quota, not foreign load from
other tests on the shared CPUs, is what limits them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from edgewise.isolation import CGroup, cgroups_writable, cleanup_stale, get_backend, spawn_in_cgroup
from edgewise.isolation import cgroup as cgmod
from edgewise.isolation.naming import PARENT, format_group_name, pid_alive
from edgewise.telemetry import read_cgroup

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not cgroups_writable(), reason="cgroups are not writable here (needs root and v1/v2 cpu)"
    ),
]

BUSY_2_THREADS = ["/bin/sh", "-c", "while :; do :; done & while :; do :; done"]
WEIGHT = 2000  # 20x the default share: reach the quota even on a busy host


@pytest.fixture(autouse=True)
def _fresh_module_state() -> Iterator[None]:
    cgmod._reset_for_tests()
    yield


def measured_cores(cg: CGroup, seconds: float) -> float:
    u0, t0 = cg.cpu_usage_s(), time.monotonic()
    time.sleep(seconds)
    return (cg.cpu_usage_s() - u0) / (time.monotonic() - t0)


def test_quota_half_a_cpu_is_accurate_within_10_percent() -> None:
    with CGroup("quota", cpus=0.5, cpu_weight=WEIGHT) as cg:
        proc = spawn_in_cgroup(BUSY_2_THREADS, cg)
        time.sleep(0.3)
        thr0 = cg.throttled()["nr_throttled"]
        cores = measured_cores(cg, 2.0)
        assert len(cg.pids()) == 2  # the shell and its background loop
        assert cg.throttled()["nr_throttled"] > thr0  # the quota is what binds
        s = read_cgroup(cg)
        assert s.cpu_limit == pytest.approx(0.5)
    assert abs(cores - 0.5) / 0.5 < 0.10, f"measured {cores:.3f} cores for a 0.5 quota"
    assert proc.returncode == -9


def test_set_cpus_changes_the_quota_in_place() -> None:
    with CGroup("resize", cpus=0.25, cpu_weight=WEIGHT) as cg:
        proc = spawn_in_cgroup(BUSY_2_THREADS, cg)
        time.sleep(0.3)
        before = measured_cores(cg, 1.2)
        pids = cg.pids()
        t0 = time.monotonic()
        cg.set_cpus(0.75)
        change_s = time.monotonic() - t0
        time.sleep(0.1)
        after = measured_cores(cg, 1.5)
        assert cg.pids() == pids and proc.poll() is None  # same processes, still running
    assert change_s < 1.0
    assert abs(before - 0.25) / 0.25 < 0.10, f"measured {before:.3f} cores for 0.25"
    assert abs(after - 0.75) / 0.75 < 0.10, f"measured {after:.3f} cores for 0.75"


def test_memory_limit_is_set_and_enforced() -> None:
    hog = "b = bytearray(256 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    with CGroup("mem", memory_mb=64) as cg:
        s = read_cgroup(cg)
        assert s.memory_limit_bytes == 64 * 1024 * 1024
        proc = spawn_in_cgroup([sys.executable, "-c", hog], cg, stderr=subprocess.DEVNULL)
        rc = proc.wait(timeout=30)
    assert rc == -9  # OOM-killed inside the group, not the host


def test_exit_kills_every_member_even_when_the_body_raises() -> None:
    # The child starts a grandchild in a new session (outside its process group):
    # only the cgroup membership can find it.
    script = "setsid sleep 60 & echo $! ; exec sleep 60"
    with pytest.raises(RuntimeError, match="body failed"), CGroup("crash", cpus=0.5) as cg:
        proc = spawn_in_cgroup(["/bin/sh", "-c", script], cg, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        paths = cg.cgroup_paths()
        assert paths is not None and set(cg.pids()) == {proc.pid, grandchild}
        raise RuntimeError("body failed")
    assert proc.returncode == -9
    time.sleep(0.05)
    assert not pid_alive(grandchild)
    assert not any(d.exists() for d in paths.dirs.values())


def test_stale_group_of_a_dead_owner_is_removed_on_next_start() -> None:
    backend = get_backend()
    assert backend is not None
    dead = subprocess.Popen(["true"])
    dead.wait()
    rel = f"{PARENT}/{format_group_name('leftover', dead.pid, 0, 0)}"
    paths = backend.create(rel, memory=False)
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        backend.add_pid(paths, orphan.pid)
        assert orphan.pid in backend.pids(paths)
        assert cleanup_stale() >= 1
        assert orphan.wait(timeout=5) == -9
        assert not any(d.exists() for d in paths.dirs.values())
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        for d in paths.dirs.values():
            if d.exists():
                os.rmdir(d)
