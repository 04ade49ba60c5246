"""Background sampler: host and per-cgroup samples on a clock, optional Prometheus export.

The sampler is the imperative shell of telemetry: a thread that reads
:func:`~edgewise.telemetry.host.read_host` and
:func:`~edgewise.telemetry.cgroupfs.read_cgroup` every ``interval_s`` seconds of its
clock and keeps the samples; the figures come from the pure
:func:`~edgewise.telemetry.rates.rates`. It also measures its own cost (CPU time of its
thread), which ``edgewise bench telemetry`` reports.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewise.clock import Clock, WallClock
from edgewise.telemetry.cgroupfs import (
    CGroupPaths,
    CGroupRef,
    CGroupSample,
    read_cgroup,
    resolve_cgroup,
)
from edgewise.telemetry.host import HostSample, read_host
from edgewise.telemetry.hw import PerfCounters, nvml_status, perf_status, read_gpus
from edgewise.telemetry.rates import cgroup_rates, host_rates

__all__ = ["SampleSet", "Sampler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleSet:
    """Everything read at one tick: the host, each cgroup, and optional GPU / perf data."""

    t: float
    host: HostSample
    cgroups: dict[str, CGroupSample] = field(default_factory=dict)
    gpus: list[dict[str, float]] = field(default_factory=list)
    perf: dict[str, float | None] = field(default_factory=dict)


def rates_between(prev: SampleSet, cur: SampleSet) -> dict[str, Any]:
    """Host and per-cgroup rates between two sample sets.

    Returns
    -------
    dict
        ``{"t": cur.t, "host": {...}, "cgroups": {name: {...}}, "gpus": [...],
        "perf": {...}}``; a cgroup present in only one of the sets is left out.
    """
    cg = {
        name: cgroup_rates(prev.cgroups[name], s, ncpu=cur.host.ncpu)
        for name, s in cur.cgroups.items()
        if name in prev.cgroups
    }
    return {
        "t": cur.t,
        "host": host_rates(prev.host, cur.host),
        "cgroups": cg,
        "gpus": cur.gpus,
        "perf": cur.perf,
    }


class Sampler:
    """Sample the host and some cgroups in a background thread.

    Parameters
    ----------
    interval_s
        Sampling period in seconds.
    cgroups
        Groups to sample: ``edgewise.isolation.CGroup`` objects, :class:`CGroupPaths`,
        or paths (see :func:`~edgewise.telemetry.cgroupfs.resolve_cgroup`); resolved
        when the sampler starts.
    keep
        How many sample sets to keep (oldest dropped first).
    clock
        Time source for timestamps and the schedule (default :class:`WallClock`).
    proc
        The ``/proc`` to read (a fixture directory in tests).
    prometheus_port
        Serve ``/metrics`` on this port while running (0 picks a free port; ``None``:
        no endpoint).
    prometheus_addr
        Address to bind; loopback unless you ask otherwise.
    hw_counters
        Run ``perf stat`` alongside when :func:`perf_status` says it works.
    gpus
        Read NVML GPUs; ``None`` means when :func:`nvml_status` finds one.
    on_sample
        Called in the sampler thread with each new :class:`SampleSet`.

    Examples
    --------
    >>> with Sampler(interval_s=0.5) as s:  # doctest: +SKIP
    ...     time.sleep(2)
    >>> s.latest_rates()["host"]["cpu_busy"]  # doctest: +SKIP
    """

    def __init__(
        self,
        interval_s: float = 1.0,
        cgroups: Iterable[CGroupRef] = (),
        *,
        keep: int = 3600,
        clock: Clock | None = None,
        proc: Path = Path("/proc"),
        prometheus_port: int | None = None,
        prometheus_addr: str = "127.0.0.1",
        hw_counters: bool = False,
        gpus: bool | None = None,
        on_sample: Callable[[SampleSet], None] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = float(interval_s)
        self._refs: list[CGroupRef] = list(cgroups)
        self.clock: Clock = clock if clock is not None else WallClock()
        self.proc = Path(proc)
        self.prometheus_port = prometheus_port
        self.prometheus_addr = prometheus_addr
        self.hw_counters = hw_counters
        self.gpus = gpus
        self.on_sample = on_sample
        self._samples: deque[SampleSet] = deque(maxlen=max(2, int(keep)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._paths: list[CGroupPaths] = []
        self._perf: PerfCounters | None = None
        self._httpd: Any = None
        self._cpu_s = 0.0
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self.missed_ticks = 0

    # ------------------------------------------------------------------ reading
    def sample_once(self) -> SampleSet:
        """Read the host and every cgroup now (called by the thread; usable alone)."""
        if not self._paths and self._refs:
            self._paths = [resolve_cgroup(r) for r in self._refs]
        t = self.clock.now()
        host = read_host(self.proc, t=t)
        cgs = {p.name: read_cgroup(p, t=t) for p in self._paths}
        gpus = read_gpus() if self._want_gpus() else []
        perf = self._perf.latest() if self._perf is not None else {}
        return SampleSet(t=t, host=host, cgroups=cgs, gpus=gpus, perf=perf)

    def _want_gpus(self) -> bool:
        if self.gpus is None:
            return nvml_status().available
        return self.gpus

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sampler:
        """Resolve the cgroups, start the thread (and the endpoint / perf if asked)."""
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._paths = [resolve_cgroup(r) for r in self._refs]
        if self.hw_counters and perf_status().available:
            self._perf = PerfCounters(interval_ms=max(100, int(self.interval_s * 1000))).start()
        if self.prometheus_port is not None:
            self._start_prometheus()
        self._stop.clear()
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="edgewise-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, the endpoint and perf; samples stay available."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
        self._stopped_at = time.monotonic()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._perf is not None:
            self._perf.stop()
            self._perf = None

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        cpu0 = time.thread_time()
        next_t = self.clock.now()
        failed_once = False
        while not self._stop.is_set():
            try:
                s = self.sample_once()
            except (OSError, ValueError) as err:
                if not failed_once:
                    log.warning("telemetry sample failed: %s", err)
                    failed_once = True
            else:
                with self._lock:
                    self._samples.append(s)
                if self.on_sample is not None:
                    try:
                        self.on_sample(s)
                    except Exception:
                        log.exception("on_sample callback failed")
            self._cpu_s = time.thread_time() - cpu0
            next_t += self.interval_s
            now = self.clock.now()
            if now > next_t:  # fell behind (suspended, overloaded): skip, do not burst
                skipped = int((now - next_t) // self.interval_s) + 1
                self.missed_ticks += skipped
                next_t += skipped * self.interval_s
            self._stop.wait(max(0.0, next_t - now))
        self._cpu_s = time.thread_time() - cpu0

    # ------------------------------------------------------------------ results
    def samples(self) -> list[SampleSet]:
        """The kept sample sets, oldest first."""
        with self._lock:
            return list(self._samples)

    def latest_rates(self) -> dict[str, Any] | None:
        """Rates between the last two samples (``None`` before there are two)."""
        with self._lock:
            if len(self._samples) < 2:
                return None
            prev, cur = self._samples[-2], self._samples[-1]
        return rates_between(prev, cur)

    def rates_series(self) -> list[dict[str, Any]]:
        """Rates between each pair of consecutive kept samples."""
        s = self.samples()
        return [rates_between(a, b) for a, b in itertools.pairwise(s)]

    @property
    def cpu_time_s(self) -> float:
        """CPU time the sampler thread has used so far (reads, parsing, callbacks)."""
        return self._cpu_s

    @property
    def wall_s(self) -> float:
        """Seconds since start (until stop, once stopped)."""
        if self._started_at is None:
            return 0.0
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        return end - self._started_at

    @property
    def cgroup_names(self) -> Sequence[str]:
        """Names of the sampled groups (keys of :attr:`SampleSet.cgroups`)."""
        return [p.name for p in self._paths]

    # ------------------------------------------------------------------ prometheus
    @property
    def prometheus_bound_port(self) -> int | None:
        """The port the endpoint listens on (useful with ``prometheus_port=0``)."""
        return None if self._httpd is None else int(self._httpd.server_port)

    def _start_prometheus(self) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_RatesCollector(self))
        assert self.prometheus_port is not None
        self._httpd, _ = start_http_server(
            self.prometheus_port, addr=self.prometheus_addr, registry=registry
        )


class _RatesCollector:
    """Exports the latest rates as gauges: ``edgewise_host_*`` and ``edgewise_cgroup_*``."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        r = self.sampler.latest_rates()
        if r is None:
            return
        for key, val in r["host"].items():
            if val is not None and key != "dt":
                yield GaugeMetricFamily(f"edgewise_host_{key}", f"host {key}", value=val)
        per_key: dict[str, GaugeMetricFamily] = {}
        for name, cg in r["cgroups"].items():
            for key, val in cg.items():
                if val is None or key == "dt":
                    continue
                fam = per_key.get(key)
                if fam is None:
                    fam = GaugeMetricFamily(
                        f"edgewise_cgroup_{key}", f"cgroup {key}", labels=["cgroup"]
                    )
                    per_key[key] = fam
                fam.add_metric([name], val)
        yield from per_key.values()
        gpu_fams: dict[str, GaugeMetricFamily] = {}
        for gpu in r["gpus"]:
            idx = str(int(gpu["index"]))
            for key, val in gpu.items():
                if key == "index":
                    continue
                if key not in gpu_fams:
                    gpu_fams[key] = GaugeMetricFamily(
                        f"edgewise_gpu_{key}", f"GPU {key}", labels=["gpu"]
                    )
                gpu_fams[key].add_metric([idx], val)
        yield from gpu_fams.values()
        for event, count in r["perf"].items():
            if count is not None:
                name = "edgewise_perf_" + event.replace("-", "_")
                yield GaugeMetricFamily(name, f"perf {event} per interval", value=count)
