"""Benchmark: what sampling telemetry costs (``edgewise bench telemetry --json``).

Runs a :class:`~edgewise.telemetry.Sampler` for ``seconds`` at ``interval_s`` and
reports the CPU time of its thread (and of the whole process) over the wall time, as a
percentage of one core; the budget at 1 Hz is 1%. It also times single reads to give
the cost per sample and checks how regular the schedule was.
"""

from __future__ import annotations

import itertools
import json
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import typer

from edgewise.errors import EnvironmentProblem
from edgewise.telemetry import Sampler, nvml_status, perf_status, resolve_cgroup

BUDGET_PCT_OF_CORE = 1.0
"""Sampling at 1 Hz may use at most this much of one core."""


def _process_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _usable_cgroups(cgroups: Sequence[str]) -> list[str]:
    out = []
    for c in cgroups:
        try:
            resolve_cgroup(c)
        except EnvironmentProblem:
            continue
        out.append(c)
    return out


def run(
    seconds: float = 30,
    interval_s: float = 1.0,
    cgroups: Sequence[str] = ("/",),
    read_repeats: int = 50,
    on_progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Measure the sampler's overhead.

    Parameters
    ----------
    seconds
        How long the sampler runs.
    interval_s
        Sampling period.
    cgroups
        Groups sampled alongside the host (missing ones are skipped); the default is
        the hierarchy root, so one cgroup read is included in the cost.
    read_repeats
        Back-to-back reads timed for the per-sample cost.
    on_progress
        Called with the elapsed fraction (0..1) about every half second.

    Returns
    -------
    dict
        JSON-able figures: ``overhead_pct_of_core`` (sampler thread CPU / wall x 100),
        ``process_overhead_pct_of_core``, ``ms_per_sample`` (median of back-to-back
        reads), ``projected_pct_at_1hz``, ``samples``, ``missed_ticks``,
        ``interval_jitter_ms`` (median and max deviation of sample spacing from
        ``interval_s``), ``overhead_pct_at_1hz`` (the thread's cost scaled to one
        sample a second), ``within_budget`` (that figure under 1%) and the environment (perf / NVML lines,
        CPU count, sampled cgroups).
    """
    if seconds <= 0 or interval_s <= 0:
        raise ValueError("seconds and interval_s must be positive")
    groups = _usable_cgroups(cgroups)
    sampler = Sampler(interval_s=interval_s, cgroups=groups, keep=int(seconds / interval_s) + 10)

    # Cost of one read, measured apart from the schedule.
    durations = []
    for _ in range(max(1, read_repeats)):
        t0 = time.perf_counter()
        sampler.sample_once()
        durations.append(time.perf_counter() - t0)
    ms_per_sample = 1000 * statistics.median(durations)

    proc0 = _process_cpu_s()
    wall0 = time.monotonic()
    sampler.start()
    try:
        end = wall0 + seconds
        while (now := time.monotonic()) < end:
            time.sleep(min(0.5, end - now))
            if on_progress is not None:
                on_progress(min(1.0, (time.monotonic() - wall0) / seconds))
    finally:
        sampler.stop()
    wall = time.monotonic() - wall0
    proc_cpu = _process_cpu_s() - proc0

    samples = sampler.samples()
    gaps = [b.t - a.t for a, b in itertools.pairwise(samples)]
    dev = [abs(g - interval_s) * 1000 for g in gaps]
    overhead = 100 * sampler.cpu_time_s / wall
    return {
        "seconds": round(wall, 3),
        "interval_s": interval_s,
        "samples": len(samples),
        "missed_ticks": sampler.missed_ticks,
        "sampler_cpu_s": round(sampler.cpu_time_s, 6),
        "overhead_pct_of_core": round(overhead, 4),
        "process_overhead_pct_of_core": round(100 * proc_cpu / wall, 4),
        "ms_per_sample": round(ms_per_sample, 4),
        "projected_pct_at_1hz": round(ms_per_sample / 10, 4),
        "interval_jitter_ms": {
            "median": round(statistics.median(dev), 3) if dev else None,
            "max": round(max(dev), 3) if dev else None,
        },
        "budget_pct_of_core": BUDGET_PCT_OF_CORE,
        "overhead_pct_at_1hz": round(overhead * interval_s, 4),
        "within_budget": overhead * interval_s < BUDGET_PCT_OF_CORE,
        "cgroups": groups,
        "ncpu": samples[-1].host.ncpu if samples else None,
        "perf": perf_status().line("perf counters"),
        "nvml": nvml_status().line("NVML GPUs"),
    }


def telemetry_command(
    seconds: float = typer.Option(30.0, help="How long to sample."),
    interval_s: float = typer.Option(1.0, "--interval", help="Sampling interval in seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Sampler overhead: CPU time the 1 Hz telemetry sampler costs, in % of one core."""
    result = run(seconds=seconds, interval_s=interval_s)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        for k, v in result.items():
            typer.echo(f"{k}: {v}")


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``bench telemetry`` to ``bench_app``."""
    bench_app.command("telemetry")(telemetry_command)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m edgewise.bench.telemetry
    print(json.dumps(run(), indent=2))
