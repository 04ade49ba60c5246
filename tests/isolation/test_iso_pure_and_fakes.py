"""Isolation without root: naming, helpers, v1/v2 backends on fake roots, and the
affinity fallback with its single warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewise.isolation import (
    CGroup,
    CgroupV1Backend,
    CgroupV2Backend,
    cleanup_stale,
    quota_us,
    spawn_in_cgroup,
    threads_for,
)
from edgewise.isolation import cgroup as cgmod
from edgewise.isolation.cgroup import fallback_affinity
from edgewise.isolation.naming import (
    GroupOwner,
    format_group_name,
    group_name,
    owner_alive,
    parse_group_name,
    process_start_ticks,
    safe_name,
)
from edgewise.telemetry import read_cgroup


@pytest.fixture(autouse=True)
def _fresh_module_state() -> Iterator[None]:
    cgmod._reset_for_tests()
    yield
    cgmod._reset_for_tests()


def wait_for(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------- pure


def test_names_roundtrip_and_sanitise() -> None:
    n = format_group_name("resnet 50/a", 1234, 987654, 7)
    assert n == "resnet_50_a--1234-l62u-7"  # 987654 in base 36
    assert parse_group_name(n) == GroupOwner("resnet_50_a", 1234, 987654, 7)
    assert parse_group_name("not-ours") is None
    assert parse_group_name("a--b-c-d") is None
    assert safe_name("...") == "group" and len(safe_name("x" * 200)) == 64
    mine = parse_group_name(group_name("x"))
    assert mine is not None and mine.pid == os.getpid() and owner_alive(mine)
    start = process_start_ticks(os.getpid())
    assert start is not None
    assert not owner_alive(GroupOwner("x", os.getpid(), start + 1, 0))  # pid reused
    assert not owner_alive(GroupOwner("x", dead_pid(), 0, 0))


def test_threads_quota_and_affinity_helpers() -> None:
    # rounded half up: a thread more than the quota would wait on a throttled straggler
    assert [threads_for(c) for c in (0.25, 0.5, 1.0, 1.01, 1.5, 2.0, 2.5)] == [1, 1, 1, 1, 2, 2, 3]
    assert threads_for(8, max_threads=2) == 2
    with pytest.raises(ValueError):
        threads_for(0)
    assert quota_us(0.5) == 10_000 and quota_us(1.0) == 20_000 and quota_us(2.0) == 40_000
    assert quota_us(0.01) == 1_000  # kernel minimum
    assert quota_us(0.5, period_us=100_000) == 50_000
    assert fallback_affinity(0.5, None, [0, 1, 2, 3]) == [0]
    assert fallback_affinity(2.5, None, [0, 1, 2, 3]) == [0, 1, 2]
    assert fallback_affinity(1.0, [3], [0, 1, 2, 3]) == [3]
    assert fallback_affinity(None, None, [1, 0]) == [0, 1]
    assert fallback_affinity(16, None, [0, 1]) == [0, 1]


# --------------------------------------------------------------------------- fake v2


def make_v2_root(tmp_path: Path) -> Path:
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("")
    # The kernel gives a child the controllers enabled in its parent; emulate that for
    # the parent group, as if an earlier run had made it.
    parent = root / "edgewise"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpuset cpu memory\n")
    return root


def only_group(root: Path) -> Path:
    (g,) = [p for p in (root / "edgewise").iterdir() if p.is_dir()]
    return g


def test_v2_fake_root_limits_spawn_and_cleanup(tmp_path: Path) -> None:
    root = make_v2_root(tmp_path)
    backend = CgroupV2Backend(root, rmdir=shutil.rmtree)
    with CGroup("svc", cpus=0.5, cpuset="0", memory_mb=64, cpu_weight=300, backend=backend) as cg:
        g = only_group(root)
        assert cg.isolated and cg.version == 2 and cg.path == f"edgewise/{g.name}"
        assert parse_group_name(g.name) is not None
        assert (root / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory"
        assert (root / "edgewise" / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory"
        assert (g / "cpu.max").read_text() == "10000 20000"
        assert (g / "cpuset.cpus").read_text() == "0"
        assert (g / "memory.max").read_text() == str(64 * 1024 * 1024)
        assert (g / "cpu.weight").read_text() == "300"
        assert (root / "edgewise" / "cpu.weight").read_text() == "300"  # parent raised too
        t0 = time.monotonic()
        cg.set_cpus(0.75)
        assert time.monotonic() - t0 < 1.0
        assert (g / "cpu.max").read_text() == "15000 20000" and cg.cpus == 0.75
        (g / "cgroup.kill").write_text("")
        (g / "cpu.stat").write_text(
            "usage_usec 250000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 30000\n"
        )
        proc = spawn_in_cgroup(["sleep", "30"], cg)
        # The wrapper wrote its pid (the pid that then became `sleep`) before exec.
        procs_file = g / "cgroup.procs"
        wait_for(lambda: procs_file.exists() and procs_file.read_text().strip() == str(proc.pid))
        assert cg.pids() == [proc.pid]
        assert os.getpgid(proc.pid) == proc.pid  # own process group
        assert cg.cpu_usage_s() == pytest.approx(0.25)
        assert cg.throttled() == {"nr_periods": 10.0, "nr_throttled": 4.0, "throttled_s": 0.03}
        s = read_cgroup(cg)
        assert s.version == 2 and s.cpu_limit == pytest.approx(0.75)
    assert proc.returncode == -9
    assert (tmp_path / "cg2" / "edgewise").is_dir() and not g.exists()
    cg.close()  # idempotent


def test_v2_cleanup_runs_when_the_body_raises(tmp_path: Path) -> None:
    root = make_v2_root(tmp_path)
    backend = CgroupV2Backend(root, rmdir=shutil.rmtree)
    procs: list[subprocess.Popen[bytes]] = []
    with (
        pytest.raises(RuntimeError, match="body failed"),
        CGroup("boom", cpus=1, backend=backend) as cg,
    ):
        procs.append(spawn_in_cgroup(["sleep", "30"], cg))
        raise RuntimeError("body failed")
    assert procs[0].returncode == -9
    assert [p for p in (root / "edgewise").iterdir() if p.is_dir()] == []


def test_v2_stale_groups_are_removed_and_members_killed(tmp_path: Path) -> None:
    root = make_v2_root(tmp_path)
    backend = CgroupV2Backend(root, rmdir=shutil.rmtree)
    victim = subprocess.Popen(["sleep", "30"])
    stale = root / "edgewise" / format_group_name("old", dead_pid(), 0, 0)
    stale.mkdir()
    (stale / "cgroup.procs").write_text(f"{victim.pid}\n")
    live = root / "edgewise" / group_name("mine")  # owned by this (live) process
    live.mkdir()
    foreign = root / "edgewise" / "somebody-else"
    foreign.mkdir()
    assert cleanup_stale(backend) == 1
    assert victim.wait(timeout=5) == -9
    assert not stale.exists() and live.exists() and foreign.exists()


def test_spawn_rejects_missing_programs_and_inactive_groups(tmp_path: Path) -> None:
    backend = CgroupV2Backend(make_v2_root(tmp_path), rmdir=shutil.rmtree)
    cg = CGroup("idle", backend=backend)
    with pytest.raises(RuntimeError, match="not active"):
        spawn_in_cgroup(["true"], cg)
    with cg:
        with pytest.raises(FileNotFoundError, match="no-such-program-xyz"):
            spawn_in_cgroup(["no-such-program-xyz"], cg)
        with pytest.raises(ValueError):
            spawn_in_cgroup(["true"], cg, shell=True)
    with pytest.raises(ValueError):
        CGroup("bad", cpus=0)
    with pytest.raises(ValueError):
        CGroup("bad", cpu_weight=0)


# --------------------------------------------------------------------------- fake v1


def test_v1_fake_roots_quota_cpuset_and_memory(tmp_path: Path) -> None:
    roots = {c: tmp_path / c for c in ("cpu", "cpuacct", "cpuset", "memory")}
    for r in roots.values():
        r.mkdir()
    (roots["cpuset"] / "cpuset.cpus").write_text("0-1\n")
    (roots["cpuset"] / "cpuset.mems").write_text("0\n")
    backend = CgroupV1Backend(roots)
    cpu_only = backend.create("edgewise/a--1-1-0", memory=False)
    assert set(cpu_only.dirs) == {"cpu", "cpuacct", "cpuset"}  # memory only on request
    paths = backend.create("edgewise/b--1-1-1", memory=True)
    d = paths.dirs
    # A new v1 cpuset group copies cpus/mems from its parent, level by level.
    assert (roots["cpuset"] / "edgewise" / "cpuset.cpus").read_text() == "0-1"
    assert (d["cpuset"] / "cpuset.mems").read_text() == "0"
    backend.set_cpu_quota(paths, 0.25, 20_000)
    assert (d["cpu"] / "cpu.cfs_period_us").read_text() == "20000"
    assert (d["cpu"] / "cpu.cfs_quota_us").read_text() == "5000"
    backend.set_cpu_quota(paths, None, 20_000)
    assert (d["cpu"] / "cpu.cfs_quota_us").read_text() == "-1"
    backend.set_cpu_weight(paths, 200)
    assert (d["cpu"] / "cpu.shares").read_text() == "2048"
    backend.set_memory(paths, 1 << 20)
    assert (d["memory"] / "memory.limit_in_bytes").read_text() == str(1 << 20)
    assert [f.parent.parent.parent.name for f in backend.procs_files(paths)] == [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
    ]
    with pytest.raises(ValueError, match="memory"):
        backend.set_memory(cpu_only, 1)
    assert backend.children("edgewise") == ["a--1-1-0", "b--1-1-1"]


# --------------------------------------------------------------------------- fallback


def test_fallback_pins_threads_warns_once_and_kills(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    allowed = sorted(os.sched_getaffinity(0))
    with pytest.warns(RuntimeWarning, match="falling back to CPU affinity") as rec:
        with CGroup("fb", cpus=0.5, backend=None) as cg:
            assert not cg.isolated and cg.cgroup_paths() is None and cg.version is None
            assert cg.threads == 1
            proc = spawn_in_cgroup(["sleep", "30"], cg)
            assert os.sched_getaffinity(proc.pid) == {allowed[0]}
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
            assert b"OMP_NUM_THREADS=1" in environ
            assert cg.pids() == [proc.pid] and cg.throttled() == {}
            if len(allowed) > 1:
                cg.set_cpus(float(len(allowed)))
                assert os.sched_getaffinity(proc.pid) == set(allowed)
        with CGroup("fb2", cpus=1, backend=None):
            pass
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1
    assert proc.returncode == -9


def test_fallback_cpu_usage_counts_members() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with CGroup("fbcpu", cpus=1, backend=None) as cg:
            busy = spawn_in_cgroup([sys.executable, "-c", "while True: pass"], cg)
            wait_for(lambda: cg.cpu_usage_s() > 0.05)
    assert busy.returncode == -9


def test_detect_backend_needs_writable_hierarchies(tmp_path: Path) -> None:
    from edgewise.isolation import detect_backend
    from edgewise.telemetry import CgroupMounts

    missing = {c: tmp_path / "nowhere" / c for c in ("cpu", "cpuacct", "cpuset")}
    assert detect_backend(CgroupMounts(v1=missing, v2=None)) is None
    assert detect_backend(CgroupMounts(v1={}, v2=None)) is None
    no_cpu = tmp_path / "v2-no-cpu"
    no_cpu.mkdir()
    (no_cpu / "cgroup.controllers").write_text("hugetlb\n")  # like this host's unified tree
    assert detect_backend(CgroupMounts(v1={}, v2=no_cpu)) is None
    v2 = detect_backend(CgroupMounts(v1={}, v2=make_v2_root(tmp_path)))
    assert isinstance(v2, CgroupV2Backend)
