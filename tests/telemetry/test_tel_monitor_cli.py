"""`edgewise monitor`: one line per sample when not a TTY; clear errors; table rendering."""

from __future__ import annotations

import socket
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.cli.monitor import build_table, format_cgroup_line, format_host_line
from edgewise.telemetry.cgroupfs import read_cgroup
from edgewise.telemetry.host import read_host
from edgewise.telemetry.sampler import SampleSet, rates_between

FIX = Path(__file__).resolve().parents[1] / "fixtures"
GROUP = FIX / "cgroup_v2" / "group"


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(make_app(["monitor"]), ["monitor", *args])


def test_monitor_prints_samples_and_exits() -> None:
    # 3 s for two samples at 0.25 s: room for a slow start (perf/NVML probes) on a busy host
    res = invoke("--seconds", "3", "--interval", "0.25", "--cgroup", str(GROUP))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("perf counters: ")
    assert lines[1].startswith("NVML GPUs: ")
    host_lines = [ln for ln in lines if ln.startswith("t=")]
    assert len(host_lines) >= 2
    assert all("cpu=" in ln and "psi_cpu/mem/io=" in ln and "ctxsw=" in ln for ln in host_lines)
    cg_lines = [ln for ln in lines if ln.startswith(f"  cgroup {GROUP}:")]
    assert len(cg_lines) == len(host_lines)
    assert "limit 0.50" in cg_lines[0] and "mem=50.0MiB/256MiB" in cg_lines[0]


def test_monitor_unknown_cgroup_is_one_line_exit_2() -> None:
    res = invoke("--seconds", "1", "--cgroup", "edgewise/does-not-exist")
    assert res.exit_code == 2
    err = [ln for ln in res.output.splitlines() if ln.startswith("edgewise: error:")]
    assert len(err) == 1 and "edgewise/does-not-exist" in err[0] and "not found" in err[0]


def test_monitor_bad_interval_and_busy_port() -> None:
    assert invoke("--interval", "0").exit_code == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = invoke("--seconds", "1", "--prometheus-port", str(port))
    assert res.exit_code == 2
    assert f"cannot serve Prometheus on 127.0.0.1:{port}" in res.output


def test_formatters_from_fixture_samples() -> None:
    a = SampleSet(
        t=0.0, host=read_host(FIX / "proc", t=0.0), cgroups={"g": read_cgroup(GROUP, t=0.0)}
    )
    b = SampleSet(
        t=1.0, host=read_host(FIX / "proc", t=1.0), cgroups={"g": read_cgroup(GROUP, t=1.0)}
    )
    r = rates_between(a, b)
    line = format_host_line(r, 1.0)
    assert line.startswith("t=   1.0s cpu=-") and "ctxsw=0/s" in line  # no ticks elapsed
    assert "throttled=-" in format_cgroup_line("g", r["cgroups"]["g"])  # no periods elapsed
    console = Console(record=True, width=120)
    console.print(build_table(r, 1.0))
    out = console.export_text()
    assert "PSI some cpu / mem / io" in out and "g cpu" in out and "0.50" in out
