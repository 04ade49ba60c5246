"""rates(prev, cur): utilisations, bandwidths and PSI fractions from two samples."""

from __future__ import annotations

import dataclasses

import pytest

from edgewise.telemetry import CGroupSample, HostSample, rates
from edgewise.telemetry.procfs import CpuTimes, Pressure


def host(t: float, **over: object) -> HostSample:
    base = HostSample(
        t=t,
        ncpu=2,
        cpu=CpuTimes(
            user=1000, nice=0, system=200, idle=5000, iowait=100, irq=0, softirq=0, steal=0
        ),
        mem_total_bytes=8 * 2**30,
        mem_available_bytes=6 * 2**30,
        disk_read_bytes=10_000,
        disk_write_bytes=20_000,
        net_rx_bytes=1_000,
        net_tx_bytes=2_000,
        ctxt=50_000,
        procs_running=1,
        procs_blocked=0,
        psi_cpu=Pressure(1.0, 1.0, 1.0, 1_000_000),
        psi_memory=Pressure(0.0, 0.0, 0.0, 0),
        psi_io=None,
        load1=0.5,
        load5=0.4,
        load15=0.3,
    )
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


def test_host_rates_fractions_and_bandwidths() -> None:
    a = host(10.0)
    # 2 s on 2 CPUs at 100 Hz = 400 ticks: 200 user, 40 system, 20 steal, 20 iowait, 120 idle.
    b = host(
        12.0,
        cpu=CpuTimes(1200, 0, 240, 5120, 120, 0, 0, 20),
        disk_read_bytes=10_000 + 4_000_000,
        disk_write_bytes=20_000 + 1_000_000,
        net_rx_bytes=1_000 + 500,
        net_tx_bytes=2_000 + 300,
        ctxt=50_000 + 9_000,
        psi_cpu=Pressure(30.0, 10.0, 2.0, 1_000_000 + 500_000),
        load1=1.5,
    )
    r = rates(a, b)
    assert r["dt"] == pytest.approx(2.0)
    assert r["cpu_user"] == pytest.approx(200 / 400)
    assert r["cpu_system"] == pytest.approx(40 / 400)
    assert r["cpu_steal"] == pytest.approx(20 / 400)
    assert r["cpu_iowait"] == pytest.approx(20 / 400)
    assert r["cpu_idle"] == pytest.approx(120 / 400)
    assert r["cpu_busy"] == pytest.approx(1 - 140 / 400)
    assert r["cpu_busy_cores"] == pytest.approx(2 * (1 - 140 / 400))
    assert r["disk_read_Bps"] == pytest.approx(2_000_000)
    assert r["disk_write_Bps"] == pytest.approx(500_000)
    assert r["net_rx_Bps"] == pytest.approx(250) and r["net_tx_Bps"] == pytest.approx(150)
    assert r["ctxt_per_s"] == pytest.approx(4_500)
    assert r["psi_cpu_some"] == pytest.approx(0.25)  # 0.5 s stalled out of 2 s
    assert r["psi_cpu_some_avg10"] == pytest.approx(30.0)
    assert r["psi_io_some"] is None  # no PSI file
    assert r["mem_used_frac"] == pytest.approx(0.25)
    assert r["load1"] == 1.5


def test_counter_going_backwards_gives_zero_not_negative() -> None:
    r = rates(host(0.0, net_rx_bytes=10_000), host(1.0, net_rx_bytes=5))
    assert r["net_rx_Bps"] == 0.0


def test_interval_shorter_than_a_tick_gives_none() -> None:
    r = rates(host(0.0), host(0.001))
    assert r["cpu_user"] is None and r["cpu_busy_cores"] is None


def test_time_must_advance_and_kinds_must_match() -> None:
    with pytest.raises(ValueError, match="time order"):
        rates(host(5.0), host(5.0))
    with pytest.raises(TypeError):
        rates(host(0.0), CGroupSample(t=1.0, name="g", version=1))


def test_cgroup_rates_cores_throttling_memory_io() -> None:
    a = CGroupSample(
        t=0.0,
        name="g",
        version=2,
        cpu_usage_s=10.0,
        nr_periods=100,
        nr_throttled=10,
        throttled_s=1.0,
        cpu_limit=0.5,
        memory_bytes=100,
        memory_limit_bytes=400,
        io_read_bytes=0,
        io_write_bytes=0,
        psi_cpu_some_total_us=0,
        procs=3,
    )
    b = dataclasses.replace(
        a,
        t=4.0,
        cpu_usage_s=12.0,
        nr_periods=300,
        nr_throttled=160,
        throttled_s=3.0,
        memory_bytes=200,
        io_read_bytes=4_000,
        io_write_bytes=8_000,
        psi_cpu_some_total_us=1_000_000,
        psi_cpu_some_avg10=20.0,
    )
    r = rates(a, b, ncpu=2)
    assert r["cpu_cores"] == pytest.approx(0.5)
    assert r["cpu_host_frac"] == pytest.approx(0.25)
    assert r["cpu_of_limit"] == pytest.approx(1.0)
    assert r["throttled_frac"] == pytest.approx(150 / 200)
    assert r["throttled_s_per_s"] == pytest.approx(0.5)
    assert r["memory_of_limit"] == pytest.approx(0.5)
    assert r["io_read_Bps"] == pytest.approx(1_000) and r["io_write_Bps"] == pytest.approx(2_000)
    assert r["psi_cpu_some"] == pytest.approx(0.25)
    assert r["procs"] == 3.0


def test_cgroup_rates_with_missing_figures() -> None:
    a = CGroupSample(t=0.0, name="g", version=1, cpu_usage_s=1.0)
    b = CGroupSample(t=1.0, name="g", version=1, cpu_usage_s=1.25)
    r = rates(a, b)
    assert r["cpu_cores"] == pytest.approx(0.25)
    assert r["cpu_host_frac"] is None  # no ncpu given
    assert r["cpu_of_limit"] is None and r["throttled_frac"] is None
    assert r["memory_bytes"] is None and r["io_read_Bps"] is None
