"""Parsers over fixture copies of this host's /proc and cgroup v1 files, and v2 files
written in the kernel's documented format (cgroup-v2.rst)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewise.errors import EnvironmentProblem
from edgewise.telemetry import read_cgroup, read_host, resolve_cgroup
from edgewise.telemetry.cgroupfs import (
    CgroupMounts,
    CGroupPaths,
    format_cpu_list,
    parse_blkio,
    parse_cpu_list,
    parse_cpu_max,
    parse_flat_keyed,
    parse_io_stat,
    parse_limit,
    parse_mountinfo,
    parse_proc_cgroup,
)
from edgewise.telemetry.procfs import (
    is_whole_disk,
    parse_diskstats,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
    parse_pressure,
    parse_stat,
    sum_disks,
    sum_interfaces,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures"
PROC = FIX / "proc"
V1 = FIX / "cgroup_v1" / "group"
V2 = FIX / "cgroup_v2"


def text(p: Path) -> str:
    return p.read_text()


def test_stat() -> None:
    s = parse_stat(text(PROC / "stat"))
    assert (s.cpu.user, s.cpu.nice, s.cpu.system, s.cpu.idle) == (21795, 805, 4974, 67959)
    assert (s.cpu.iowait, s.cpu.irq, s.cpu.softirq, s.cpu.steal) == (2272, 0, 88, 68)
    assert s.cpu.total == 21795 + 805 + 4974 + 67959 + 2272 + 0 + 88 + 68
    assert s.ncpu == 2
    assert (s.ctxt, s.processes, s.procs_running, s.procs_blocked) == (579265, 7161, 5, 0)


def test_stat_without_cpu_line_is_rejected() -> None:
    with pytest.raises(ValueError, match="cpu"):
        parse_stat("ctxt 5\n")


def test_meminfo_in_bytes() -> None:
    m = parse_meminfo(text(PROC / "meminfo"))
    assert m["MemTotal"] == 24684084 * 1024
    assert m["MemAvailable"] == 23670844 * 1024
    assert m["HugePages_Total"] == 0  # unit-less count stays as is


def test_diskstats_whole_disks_only() -> None:
    d = parse_diskstats(text(PROC / "diskstats"))
    assert d["vda"].reads == 81940
    assert d["vda"].read_bytes == 5087162 * 512
    assert d["vda"].write_bytes == 5912664 * 512
    total = sum_disks(d, whole_disks=["vda", "zram0", "loop0"])
    assert total.read_bytes == 5087162 * 512  # zram and loop devices are excluded
    # Partitions are excluded by /sys/block membership or, without it, by name.
    assert not is_whole_disk("vda1", ["vda"])
    assert not is_whole_disk("nvme0n1p2")
    assert is_whole_disk("nvme0n1")
    assert not is_whole_disk("dm-0")


def test_net_dev_excludes_loopback() -> None:
    n = parse_net_dev(text(PROC / "net" / "dev"))
    assert n["eth0"].rx_bytes == 374794160 and n["eth0"].tx_bytes == 504944
    assert n["lo"].rx_bytes == 7129704
    s = sum_interfaces(n)
    assert s.rx_bytes == 374794160 + n["ifb0"].rx_bytes + n["ifb1"].rx_bytes
    assert s.tx_packets == 5039


def test_pressure_and_loadavg() -> None:
    cpu = parse_pressure(text(PROC / "pressure" / "cpu"))
    assert cpu["some"].avg10 == pytest.approx(25.90)
    assert cpu["some"].total_us == 24541611
    assert cpu["full"].total_us == 0
    io = parse_pressure(text(PROC / "pressure" / "io"))
    assert io["full"].avg300 == pytest.approx(1.72)
    la = parse_loadavg(text(PROC / "loadavg"))
    assert (la.load1, la.load5, la.load15, la.runnable, la.threads) == (1.65, 0.72, 0.32, 5, 119)
    with pytest.raises(ValueError):
        parse_loadavg("garbage")


def test_read_host_from_fixture_dir(tmp_path: Path) -> None:
    h = read_host(PROC, t=12.5, sys_block=tmp_path / "missing")
    assert h.t == 12.5 and h.ncpu == 2
    assert h.mem_used_bytes == (24684084 - 23670844) * 1024
    assert h.disk_read_bytes == 5087162 * 512  # zram0/loop* dropped by name
    assert h.net_rx_bytes == 374794160
    assert h.ctxt == 579265
    assert h.psi_cpu is not None and h.psi_cpu.avg10 == pytest.approx(25.90)
    assert h.load1 == pytest.approx(1.65)
    assert 0 < h.user_frac < 1 and h.steal_frac == pytest.approx(68 / h.cpu.total)


def test_read_host_without_psi(tmp_path: Path) -> None:
    for name in ("stat", "meminfo", "loadavg"):
        (tmp_path / name).write_text(text(PROC / name))
    h = read_host(tmp_path, t=0.0)
    assert h.psi_cpu is None and h.psi_io is None
    assert h.disk_read_bytes == 0 and h.net_rx_bytes == 0


def test_mountinfo_real_host() -> None:
    m = parse_mountinfo(text(PROC / "mountinfo"))
    assert m.v1["cpu"] == Path("/sys/fs/cgroup/cpu")
    assert m.v1["cpuacct"] == Path("/sys/fs/cgroup/cpuacct")
    assert m.v1["memory"] == Path("/sys/fs/cgroup/memory")
    assert "systemd" not in m.v1  # a named hierarchy, not a controller
    assert m.v2 == Path("/sys/fs/cgroup/unified")


def test_mountinfo_comounted_and_pure_v2() -> None:
    comounted = (
        "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
        "31 25 0:27 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset\n"
    )
    m = parse_mountinfo(comounted)
    assert m.v1["cpu"] == m.v1["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert m.v2 is None
    pure = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n"
    assert parse_mountinfo(pure) == CgroupMounts(v1={}, v2=Path("/sys/fs/cgroup"))


def test_proc_cgroup() -> None:
    c = parse_proc_cgroup(text(PROC / "self_cgroup"))
    assert c["cpu"] == "/"
    assert c["memory"].startswith("/process_api/")
    assert c["systemd"] == "/" and c[""] == "/"


def test_cgroup_value_parsers() -> None:
    assert parse_flat_keyed(text(V1 / "cpu.stat"))["nr_throttled"] == 47
    assert parse_limit("max\n") is None
    assert parse_limit("9223372036854771712\n") is None  # v1 "unlimited"
    assert parse_limit("268435456\n") == 268435456
    assert parse_cpu_max("max 100000\n") == (None, 100000)
    assert parse_cpu_max("10000 20000\n") == (10000, 20000)
    assert parse_blkio(text(V1 / "blkio.throttle.io_service_bytes")) == (0, 0)
    assert parse_blkio(text(V1 / "blkio.throttle.io_service_bytes.documented")) == (
        1459200 + 4096,
        314773504,
    )
    io = parse_io_stat(text(V2 / "group" / "io.stat"))
    assert io["8:0"]["rbytes"] == 90430464 and io["8:16"]["wbytes"] == 314773504


def test_cpu_lists_roundtrip() -> None:
    assert parse_cpu_list("0-3,6,8-9\n") == [0, 1, 2, 3, 6, 8, 9]
    assert format_cpu_list([9, 8, 6, 3, 2, 1, 0]) == "0-3,6,8-9"
    assert format_cpu_list([1]) == "1"
    with pytest.raises(ValueError):
        parse_cpu_list("3-1")


def test_read_cgroup_v1_fixture() -> None:
    paths = CGroupPaths(
        "fixture", 1, {c: V1 for c in ("cpu", "cpuacct", "memory", "blkio", "cpuset")}
    )
    s = read_cgroup(paths, t=3.0)
    assert s.version == 1 and s.t == 3.0
    assert s.cpu_usage_s == pytest.approx(312042893 / 1e9)
    assert (s.nr_periods, s.nr_throttled) == (52, 47)
    assert s.throttled_s == pytest.approx(0.306886177)
    assert s.cpu_limit == pytest.approx(6000 / 20000)
    assert s.memory_bytes == 659456 and s.memory_limit_bytes == 268435456
    assert (s.io_read_bytes, s.io_write_bytes) == (0, 0)
    assert s.psi_cpu_some_avg10 is None  # v1 has no per-group PSI


def test_read_cgroup_v2_fixture() -> None:
    s = read_cgroup(V2 / "group", t=1.0)  # absolute dir with cgroup.controllers -> v2
    assert s.version == 2
    assert s.cpu_usage_s == pytest.approx(1.5)
    assert (s.nr_periods, s.nr_throttled) == (200, 150)
    assert s.throttled_s == pytest.approx(2.5)
    assert s.cpu_limit == pytest.approx(0.5)
    assert s.memory_bytes == 52428800 and s.memory_limit_bytes == 268435456
    assert s.io_read_bytes == 1459200 + 90430464
    assert s.io_write_bytes == 314773504 + 299008000
    assert s.psi_cpu_some_avg10 == pytest.approx(12.5) and s.psi_cpu_some_total_us == 3000000
    assert s.procs == 2


def test_read_cgroup_v2_real_root_without_controllers() -> None:
    # This host's unified root: cpu.stat without throttling keys, PSI files, no limits.
    s = read_cgroup(V2 / "host_root", t=0.0)
    assert s.cpu_usage_s == pytest.approx(305.266755)
    assert s.nr_throttled is None and s.cpu_limit is None and s.memory_bytes is None
    assert s.psi_cpu_some_total_us == 32162772


def test_resolve_relative_paths_against_mounts(tmp_path: Path) -> None:
    for c in ("cpu", "cpuacct", "memory"):
        (tmp_path / c / "edgewise" / "g").mkdir(parents=True)
    unified = tmp_path / "unified"
    (unified / "only2").mkdir(parents=True)
    (unified / "only2" / "cgroup.procs").write_text("")
    mounts = CgroupMounts(
        v1={c: tmp_path / c for c in ("cpu", "cpuacct", "memory", "cpuset")}, v2=unified
    )
    p = resolve_cgroup("edgewise/g", mounts)
    assert p.version == 1 and set(p.dirs) == {"cpu", "cpuacct", "memory"}
    assert resolve_cgroup(tmp_path / "cpu" / "edgewise" / "g", mounts).dirs["memory"] == (
        tmp_path / "memory" / "edgewise" / "g"
    )
    p2 = resolve_cgroup("only2", mounts)
    assert p2.version == 2 and p2.get("cpu") == unified / "only2"
    with pytest.raises(EnvironmentProblem, match="not found"):
        resolve_cgroup("edgewise/nope", mounts)
