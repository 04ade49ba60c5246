"""Sampler thread, Prometheus endpoint, optional perf/NVML detection, and the benchmark."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edgewise.bench.telemetry import run as bench_run
from edgewise.telemetry import Sampler, SampleSet, nvml_status, perf_status
from edgewise.telemetry.hw import HwStatus, parse_perf_csv, probe_perf

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def wait_for(pred: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_sampler_collects_on_schedule_and_measures_itself() -> None:
    seen: list[SampleSet] = []
    s = Sampler(interval_s=0.05, cgroups=[FIX / "cgroup_v2" / "group"], on_sample=seen.append)
    with s:
        wait_for(lambda: len(s.samples()) >= 4)
    samples = s.samples()
    assert len(seen) == len(samples) >= 4
    ts = [x.t for x in samples]
    assert all(b > a for a, b in itertools.pairwise(ts))
    assert 0.02 < (ts[-1] - ts[0]) / (len(ts) - 1) < 0.5
    name = str(FIX / "cgroup_v2" / "group")
    assert list(samples[-1].cgroups) == [name]
    r = s.latest_rates()
    assert r is not None and r["host"]["dt"] > 0 and r["cgroups"][name]["cpu_cores"] == 0.0
    assert len(s.rates_series()) == len(samples) - 1
    assert s.cpu_time_s > 0 and s.wall_s > 0
    n = len(s.samples())
    time.sleep(0.15)
    assert len(s.samples()) == n  # stopped means stopped


def test_sampler_keeps_a_bounded_history_and_survives_bad_callbacks() -> None:
    def boom(_: SampleSet) -> None:
        raise RuntimeError("callback bug")

    with Sampler(interval_s=0.02, keep=3, on_sample=boom) as s:
        wait_for(lambda: len(s.samples()) == 3)
        first = s.samples()[0].t
        wait_for(lambda: s.samples()[0].t > first)
    assert len(s.samples()) == 3


def test_sampler_without_proc_files_keeps_running(tmp_path: Path) -> None:
    s = Sampler(interval_s=0.02, proc=tmp_path / "nothing")
    with s:
        time.sleep(0.1)
        assert s._thread is not None and s._thread.is_alive()
    assert s.samples() == []
    with pytest.raises(ValueError):
        Sampler(interval_s=0)


def test_prometheus_endpoint_on_loopback() -> None:
    with Sampler(interval_s=0.05, cgroups=[FIX / "cgroup_v2" / "group"], prometheus_port=0) as s:
        wait_for(lambda: s.latest_rates() is not None)
        port = s.prometheus_bound_port
        assert port is not None
        assert s._httpd.server_address[0] == "127.0.0.1"
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "edgewise_host_cpu_user " in body
    assert "edgewise_host_ctxt_per_s " in body
    assert 'edgewise_cgroup_cpu_limit{cgroup="' in body
    assert s.prometheus_bound_port is None  # endpoint gone after stop


def test_parse_perf_csv() -> None:
    assert parse_perf_csv("<not supported>,,instructions,0,100.00,,\n") == {"instructions": None}
    text = (
        "1234567,,instructions,2000000,100.00,0.56,insn per cycle\n"
        "2200000,,cycles,2000000,100.00,,\n"
        "<not counted>,,cache-misses,0,0.00,,\n"
    )
    assert parse_perf_csv(text) == {
        "instructions": 1234567.0,
        "cycles": 2200000.0,
        "cache-misses": None,
    }
    interval = "     1.000123456,98765,,cycles,1000000,100.00,,\n     2.000200000,99999,,cycles,1000000,100.00,,\n"
    assert parse_perf_csv(interval, interval=True) == {"cycles": 99999.0}


def _runner(rc: int, stderr: str) -> Any:
    def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        assert cmd[:2] == ["perf", "stat"]
        return subprocess.CompletedProcess(cmd, rc, "", stderr)

    return run


def test_probe_perf_cases() -> None:
    assert probe_perf(which=lambda _: None) == HwStatus(False, "perf is not installed")
    no = probe_perf(
        runner=_runner(0, "<not supported>,,instructions,0,100.00,,\n"), which=lambda _: "/x"
    )
    assert not no.available and "not supported" in no.reason
    yes = probe_perf(runner=_runner(0, "5000,,instructions,100,100.00,,\n"), which=lambda _: "/x")
    assert yes.available
    bad = probe_perf(
        runner=_runner(255, "perf_event_paranoid setting is 4\n"), which=lambda _: "/x"
    )
    assert not bad.available and "exited 255: perf_event_paranoid" in bad.reason


def test_real_probes_report_one_line_and_never_fail() -> None:
    for status, what in ((perf_status(), "perf counters"), (nvml_status(), "NVML GPUs")):
        line = status.line(what)
        assert "\n" not in line and line.startswith(what)
    try:
        import pynvml  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        assert nvml_status() == HwStatus(False, "pynvml is not installed")


def test_bench_reports_overhead_under_budget() -> None:
    out = bench_run(seconds=1.0, interval_s=0.1, read_repeats=5)
    assert out["samples"] >= 6
    assert 0 < out["overhead_pct_of_core"] < 100
    # Thread CPU time does not grow with foreign load, so the budget check is stable.
    assert out["overhead_pct_at_1hz"] < 1.0 and out["within_budget"] is True
    assert out["ms_per_sample"] > 0 and out["interval_jitter_ms"]["max"] is not None
    assert out["perf"].startswith("perf counters:")


def test_sampler_thread_is_a_daemon_and_named() -> None:
    with Sampler(interval_s=0.05) as s:
        names = [t.name for t in threading.enumerate()]
        assert "edgewise-sampler" in names
        assert s._thread is not None and s._thread.daemon
