"""Two samples in, utilisations, bandwidths and rates out (pure functions).

Counters that went backwards (a wrapped interface counter, a re-created group) give
0 rather than a negative rate. Figures that cannot be computed (no quota, no PSI, an
interval shorter than a clock tick) are ``None``.

Units: CPU figures of the host are fractions of the whole host (0..1) plus
``cpu_busy_cores``; CPU figures of a cgroup are in cores (``cpu_cores`` = 0.5 means half
a core) plus ``cpu_host_frac`` when the host's CPU count is given; bandwidths are bytes
per second (``_Bps``); PSI ``*_some`` figures are the fraction of the interval in which
some task stalled.
"""

from __future__ import annotations

from edgewise.telemetry.cgroupfs import CGroupSample
from edgewise.telemetry.host import HostSample
from edgewise.telemetry.procfs import Pressure

__all__ = ["cgroup_rates", "host_rates", "rates"]

Rates = dict[str, float | None]


def _delta(a: float, b: float) -> float:
    return max(0.0, float(b) - float(a))


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def _psi_frac(prev: Pressure | None, cur: Pressure | None, dt: float) -> float | None:
    if prev is None or cur is None:
        return None
    return min(1.0, _delta(prev.total_us, cur.total_us) / (dt * 1e6))


def host_rates(prev: HostSample, cur: HostSample) -> Rates:
    """Utilisations and bandwidths of the host between two samples.

    Raises
    ------
    ValueError
        If ``cur`` is not later than ``prev``.
    """
    dt = cur.t - prev.t
    if dt <= 0:
        raise ValueError(f"samples are not in time order: dt={dt}")
    a, b = prev.cpu, cur.cpu
    total = _delta(a.total, b.total)

    def frac(ticks: float) -> float | None:
        return ticks / total if total > 0 else None

    idle = frac(_delta(a.idle, b.idle))
    iowait = frac(_delta(a.iowait, b.iowait))
    busy = None if idle is None or iowait is None else max(0.0, 1.0 - idle - iowait)
    return {
        "dt": dt,
        "cpu_user": frac(_delta(a.user + a.nice, b.user + b.nice)),
        "cpu_system": frac(_delta(a.system + a.irq + a.softirq, b.system + b.irq + b.softirq)),
        "cpu_steal": frac(_delta(a.steal, b.steal)),
        "cpu_iowait": iowait,
        "cpu_idle": idle,
        "cpu_busy": busy,
        "cpu_busy_cores": None if busy is None else busy * cur.ncpu,
        "mem_used_bytes": float(cur.mem_used_bytes),
        "mem_used_frac": _ratio(cur.mem_used_bytes, cur.mem_total_bytes),
        "disk_read_Bps": _delta(prev.disk_read_bytes, cur.disk_read_bytes) / dt,
        "disk_write_Bps": _delta(prev.disk_write_bytes, cur.disk_write_bytes) / dt,
        "net_rx_Bps": _delta(prev.net_rx_bytes, cur.net_rx_bytes) / dt,
        "net_tx_Bps": _delta(prev.net_tx_bytes, cur.net_tx_bytes) / dt,
        "ctxt_per_s": _delta(prev.ctxt, cur.ctxt) / dt,
        "psi_cpu_some": _psi_frac(prev.psi_cpu, cur.psi_cpu, dt),
        "psi_memory_some": _psi_frac(prev.psi_memory, cur.psi_memory, dt),
        "psi_io_some": _psi_frac(prev.psi_io, cur.psi_io, dt),
        "psi_cpu_some_avg10": cur.psi_cpu.avg10 if cur.psi_cpu else None,
        "psi_memory_some_avg10": cur.psi_memory.avg10 if cur.psi_memory else None,
        "psi_io_some_avg10": cur.psi_io.avg10 if cur.psi_io else None,
        "load1": cur.load1,
        "procs_running": float(cur.procs_running),
        "procs_blocked": float(cur.procs_blocked),
    }


def _d_opt(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return _delta(a, b)


def cgroup_rates(prev: CGroupSample, cur: CGroupSample, ncpu: int | None = None) -> Rates:
    """CPU use (cores), throttling, memory and I/O of one cgroup between two samples.

    Parameters
    ----------
    prev, cur
        Two samples of the same group, ``cur`` later.
    ncpu
        The host's CPU count, for ``cpu_host_frac``; omitted gives ``None`` there.
    """
    dt = cur.t - prev.t
    if dt <= 0:
        raise ValueError(f"samples are not in time order: dt={dt}")
    used = _d_opt(prev.cpu_usage_s, cur.cpu_usage_s)
    cores = None if used is None else used / dt
    d_thr = _d_opt(prev.throttled_s, cur.throttled_s)
    psi = None
    if prev.psi_cpu_some_total_us is not None and cur.psi_cpu_some_total_us is not None:
        psi = min(1.0, _delta(prev.psi_cpu_some_total_us, cur.psi_cpu_some_total_us) / (dt * 1e6))
    rd, wr = (
        _d_opt(prev.io_read_bytes, cur.io_read_bytes),
        _d_opt(prev.io_write_bytes, cur.io_write_bytes),
    )
    return {
        "dt": dt,
        "cpu_cores": cores,
        "cpu_host_frac": _ratio(cores, ncpu),
        "cpu_limit": cur.cpu_limit,
        "cpu_of_limit": _ratio(cores, cur.cpu_limit),
        "throttled_frac": _ratio(
            _d_opt(prev.nr_throttled, cur.nr_throttled), _d_opt(prev.nr_periods, cur.nr_periods)
        ),
        "throttled_s_per_s": None if d_thr is None else d_thr / dt,
        "memory_bytes": None if cur.memory_bytes is None else float(cur.memory_bytes),
        "memory_limit_bytes": (
            None if cur.memory_limit_bytes is None else float(cur.memory_limit_bytes)
        ),
        "memory_of_limit": _ratio(cur.memory_bytes, cur.memory_limit_bytes),
        "io_read_Bps": None if rd is None else rd / dt,
        "io_write_Bps": None if wr is None else wr / dt,
        "psi_cpu_some": psi,
        "psi_cpu_some_avg10": cur.psi_cpu_some_avg10,
        "procs": None if cur.procs is None else float(cur.procs),
    }


def rates(
    prev: HostSample | CGroupSample, cur: HostSample | CGroupSample, ncpu: int | None = None
) -> Rates:
    """Rates between two samples of the same kind (host or cgroup).

    Dispatches to :func:`host_rates` or :func:`cgroup_rates`.

    Raises
    ------
    TypeError
        If the samples are of different kinds.
    ValueError
        If ``cur`` is not later than ``prev``.
    """
    if isinstance(prev, HostSample) and isinstance(cur, HostSample):
        return host_rates(prev, cur)
    if isinstance(prev, CGroupSample) and isinstance(cur, CGroupSample):
        return cgroup_rates(prev, cur, ncpu=ncpu)
    raise TypeError(f"cannot compute rates between {type(prev).__name__} and {type(cur).__name__}")
