"""``edgewise monitor``: live host and cgroup telemetry.

Prints a refreshing table on a terminal, one line per sample otherwise (pipes, logs,
tests). The formatting functions are pure; the command runs a
:class:`~edgewise.telemetry.Sampler` and prints what it reports.
"""

from __future__ import annotations

import queue
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from edgewise.errors import EnvironmentProblem
from edgewise.telemetry import Sampler, SampleSet, nvml_status, perf_status, rates_between

MiB = 1024 * 1024


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _mbps(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:.2f}"


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def format_host_line(r: dict[str, Any], elapsed_s: float) -> str:
    """One line for the host part of a rates dict (from ``rates_between``)."""
    h = r["host"]
    mem = h["mem_used_bytes"]
    return (
        f"t={elapsed_s:6.1f}s cpu={_pct(h['cpu_busy'])} usr={_pct(h['cpu_user'])} "
        f"sys={_pct(h['cpu_system'])} steal={_pct(h['cpu_steal'])} iowait={_pct(h['cpu_iowait'])} "
        f"mem={_num(None if mem is None else mem / MiB, '.0f')}MiB ctxsw={_num(h['ctxt_per_s'], '.0f')}/s "
        f"disk_r/w={_mbps(h['disk_read_Bps'])}/{_mbps(h['disk_write_Bps'])}MB/s "
        f"net_rx/tx={_mbps(h['net_rx_Bps'])}/{_mbps(h['net_tx_Bps'])}MB/s "
        f"psi_cpu/mem/io={_pct(h['psi_cpu_some'])}/{_pct(h['psi_memory_some'])}/{_pct(h['psi_io_some'])} "
        f"load1={_num(h['load1'])}"
    )


def format_cgroup_line(name: str, c: dict[str, float | None]) -> str:
    """One line for one cgroup's rates."""
    mem = c["memory_bytes"]
    lim = c["memory_limit_bytes"]
    return (
        f"  cgroup {name}: cpu={_num(c['cpu_cores'])} cores (limit {_num(c['cpu_limit'])}) "
        f"throttled={_pct(c['throttled_frac'])} "
        f"mem={_num(None if mem is None else mem / MiB, '.1f')}MiB"
        f"/{_num(None if lim is None else lim / MiB, '.0f')}MiB "
        f"io_r/w={_mbps(c['io_read_Bps'])}/{_mbps(c['io_write_Bps'])}MB/s "
        f"procs={_num(c['procs'], '.0f')}"
    )


def build_table(r: dict[str, Any], elapsed_s: float) -> Table:
    """A rich table of the host and cgroup figures of one rates dict."""
    h = r["host"]
    table = Table(title=f"edgewise monitor, t={elapsed_s:.1f}s", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("cpu busy", _pct(h["cpu_busy"])),
        ("cpu user / system", f"{_pct(h['cpu_user'])} / {_pct(h['cpu_system'])}"),
        ("cpu steal / iowait", f"{_pct(h['cpu_steal'])} / {_pct(h['cpu_iowait'])}"),
        ("memory used", f"{_num(h['mem_used_bytes'] / MiB, '.0f')} MiB"),
        ("context switches", f"{_num(h['ctxt_per_s'], '.0f')} /s"),
        ("disk read / write", f"{_mbps(h['disk_read_Bps'])} / {_mbps(h['disk_write_Bps'])} MB/s"),
        ("net rx / tx", f"{_mbps(h['net_rx_Bps'])} / {_mbps(h['net_tx_Bps'])} MB/s"),
        (
            "PSI some cpu / mem / io",
            f"{_pct(h['psi_cpu_some'])} / {_pct(h['psi_memory_some'])} / {_pct(h['psi_io_some'])}",
        ),
        ("load1", _num(h["load1"])),
    ]
    for name, c in r["cgroups"].items():
        rows.append(
            (
                f"{name} cpu",
                f"{_num(c['cpu_cores'])} cores (limit {_num(c['cpu_limit'])}), "
                f"throttled {_pct(c['throttled_frac'])}",
            )
        )
        if c["memory_bytes"] is not None:
            rows.append((f"{name} memory", f"{c['memory_bytes'] / MiB:.1f} MiB"))
    for gpu in r["gpus"]:
        rows.append((f"gpu{int(gpu['index'])}", f"util {_pct(gpu.get('util_gpu'))}"))
    for k, v in r["perf"].items():
        rows.append((f"perf {k}", _num(v, ".3g")))
    for k, v in rows:
        table.add_row(k, v)
    return table


def run_monitor(
    seconds: float,
    interval: float,
    cgroups: list[str],
    prometheus_port: int | None,
    console: Console,
    live: bool,
) -> int:
    """Sample for ``seconds`` (0: until Ctrl-C), printing each interval; return #samples shown."""
    q: queue.Queue[SampleSet] = queue.Queue()
    sampler = Sampler(
        interval_s=interval,
        cgroups=cgroups,
        prometheus_port=prometheus_port,
        hw_counters=True,
        on_sample=q.put,
    )
    shown = 0
    prev: SampleSet | None = None
    start = time.monotonic()
    deadline = start + seconds if seconds > 0 else float("inf")
    try:
        sampler.start()
    except OSError as err:
        sampler.stop()
        raise EnvironmentProblem(
            f"cannot serve Prometheus on {sampler.prometheus_addr}:{prometheus_port}: {err.strerror or err}"
        ) from err
    t0: float | None = None
    view: Live | None = None
    try:
        console.print(perf_status().line("perf counters"), highlight=False, soft_wrap=True)
        console.print(nvml_status().line("NVML GPUs"), highlight=False, soft_wrap=True)
        if sampler.prometheus_bound_port is not None:
            console.print(
                f"prometheus: http://{sampler.prometheus_addr}:{sampler.prometheus_bound_port}/metrics",
                highlight=False,
            )
        if live:
            view = Live(console=console, auto_refresh=False, transient=False)
            view.start()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                cur = q.get(timeout=min(remaining, max(0.1, interval)))
            except queue.Empty:
                continue
            if t0 is None:
                t0 = cur.t
            if prev is not None:
                r = rates_between(prev, cur)
                elapsed = cur.t - t0
                if view is not None:
                    view.update(build_table(r, elapsed), refresh=True)
                else:
                    console.print(format_host_line(r, elapsed), highlight=False, soft_wrap=True)
                    for name, c in r["cgroups"].items():
                        console.print(format_cgroup_line(name, c), highlight=False, soft_wrap=True)
                shown += 1
            prev = cur
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.stop()
        sampler.stop()
    return shown


def register(app: typer.Typer) -> None:
    """Add ``edgewise monitor`` to the app."""

    @app.command("monitor")
    def monitor(
        seconds: Annotated[
            float, typer.Option("--seconds", "-n", help="Stop after this many seconds (0: Ctrl-C).")
        ] = 0.0,
        interval: Annotated[
            float, typer.Option("--interval", "-i", help="Seconds between samples.")
        ] = 1.0,
        cgroup: Annotated[
            list[str] | None,
            typer.Option(
                "--cgroup",
                "-c",
                help="cgroup to follow, relative to the hierarchy root (edgewise/x) or absolute; repeatable.",
            ),
        ] = None,
        prometheus_port: Annotated[
            int | None,
            typer.Option(
                "--prometheus-port", help="Serve /metrics on 127.0.0.1:PORT while running."
            ),
        ] = None,
    ) -> None:
        """Show host and cgroup telemetry live: CPU, memory, disk, network, PSI, throttling."""
        if interval <= 0:
            raise typer.BadParameter("must be positive", param_hint="--interval")
        if seconds < 0:
            raise typer.BadParameter("must be >= 0", param_hint="--seconds")
        console = Console()
        live = sys.stdout.isatty()
        shown = run_monitor(seconds, interval, list(cgroup or []), prometheus_port, console, live)
        if shown == 0 and seconds > 0:
            console.print(
                f"no sample pair within {seconds:g} s; use --seconds > 2 x --interval",
                highlight=False,
            )
