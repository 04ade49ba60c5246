"""Optional hardware telemetry: ``perf stat`` counters and NVIDIA GPUs through NVML.

Both are optional. Support is detected once per process (:func:`perf_status`,
:func:`nvml_status`) and reported as one line; nothing here raises because a counter
or a GPU is missing. The CSV parser is pure and tested on fixture text; the
:class:`PerfCounters` reader runs ``perf stat -I`` in the background.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_EVENTS",
    "HwStatus",
    "PerfCounters",
    "nvml_status",
    "parse_perf_csv",
    "perf_status",
    "probe_perf",
    "read_gpus",
]

DEFAULT_EVENTS: tuple[str, ...] = ("instructions", "cycles", "cache-misses")


@dataclass(frozen=True)
class HwStatus:
    """Whether an optional source works here, and one line saying why (not)."""

    available: bool
    reason: str

    def line(self, what: str) -> str:
        """One line for a log or the monitor header."""
        return f"{what}: {'available' if self.available else 'unavailable'} ({self.reason})"


def parse_perf_csv(text: str, interval: bool = False) -> dict[str, float | None]:
    """Parse ``perf stat -x,`` output into ``event -> count``.

    Parameters
    ----------
    text
        perf's stderr. Each counter line is ``value,unit,event,run,pct,...``, preceded
        by a timestamp field with ``-I``. ``<not supported>`` and ``<not counted>``
        become ``None``.
    interval
        Whether lines carry the ``-I`` timestamp field; with several intervals the
        last one wins.
    """
    out: dict[str, float | None] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        if interval:
            fields = fields[1:]
        if len(fields) < 3:
            continue
        value, event = fields[0].strip(), fields[2].strip()
        if not event:
            continue
        try:
            out[event] = float(value)
        except ValueError:
            out[event] = None
    return out


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def probe_perf(
    event: str = "instructions",
    runner: Runner = subprocess.run,
    which: Callable[[str], str | None] = shutil.which,
) -> HwStatus:
    """Run ``perf stat -e EVENT true`` once and say whether the counter works.

    ``runner`` and ``which`` are injectable for tests; :func:`perf_status` caches the
    real probe.
    """
    if which("perf") is None:
        return HwStatus(False, "perf is not installed")
    try:
        proc = runner(
            ["perf", "stat", "-x,", "-e", event, "true"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return HwStatus(False, f"perf failed to run: {err}")
    counts = parse_perf_csv(proc.stderr)
    if proc.returncode != 0 and event not in counts:
        first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), "no output")
        return HwStatus(False, f"perf stat exited {proc.returncode}: {first.strip()}")
    if counts.get(event) is None:
        return HwStatus(False, f"hardware counter '{event}' is not supported on this machine")
    return HwStatus(True, f"perf stat counts '{event}'")


@functools.cache
def perf_status() -> HwStatus:
    """Whether ``perf stat`` hardware counters work here (probed once per process)."""
    return probe_perf()


class PerfCounters:
    """System-wide ``perf stat -a -I`` in the background; :meth:`latest` gives counts.

    Start it only when :func:`perf_status` says counters are available.

    Parameters
    ----------
    events
        perf event names.
    interval_ms
        perf's reporting interval.
    """

    def __init__(self, events: Sequence[str] = DEFAULT_EVENTS, interval_ms: int = 1000) -> None:
        self.events = tuple(events)
        self.interval_ms = int(interval_ms)
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._latest: dict[str, float | None] = {}

    def start(self) -> PerfCounters:
        """Start perf; lines are parsed as they arrive."""
        cmd = [
            "perf",
            "stat",
            "-a",
            "-x,",
            "-I",
            str(self.interval_ms),
            "-e",
            ",".join(self.events),
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._thread = threading.Thread(target=self._pump, name="edgewise-perf", daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            parsed = parse_perf_csv(line, interval=True)
            if parsed:
                with self._lock:
                    self._latest.update(parsed)

    def latest(self) -> dict[str, float | None]:
        """Counts of the last complete perf interval."""
        with self._lock:
            return dict(self._latest)

    def stop(self) -> None:
        """Stop perf and its reader."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)


def _import_pynvml() -> Any:
    import pynvml  # type: ignore[import-not-found]

    return pynvml


@functools.cache
def nvml_status() -> HwStatus:
    """Whether NVML (``pynvml``) is importable and sees at least one GPU (checked once)."""
    try:
        nv = _import_pynvml()
    except ImportError:
        return HwStatus(False, "pynvml is not installed")
    try:
        nv.nvmlInit()
        count = int(nv.nvmlDeviceGetCount())
    except Exception as err:  # NVMLError subclasses: no driver, no library
        return HwStatus(False, f"NVML could not start: {err}")
    if count == 0:
        return HwStatus(False, "no NVIDIA GPU")
    return HwStatus(True, f"{count} NVIDIA GPU(s)")


def read_gpus() -> list[dict[str, float]]:
    """Utilisation, memory, power and temperature of each GPU; ``[]`` without NVML."""
    if not nvml_status().available:
        return []
    nv = _import_pynvml()
    out: list[dict[str, float]] = []
    for i in range(int(nv.nvmlDeviceGetCount())):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        util = nv.nvmlDeviceGetUtilizationRates(h)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        row = {
            "index": float(i),
            "util_gpu": float(util.gpu) / 100.0,
            "util_mem": float(util.memory) / 100.0,
            "mem_used_bytes": float(mem.used),
            "mem_total_bytes": float(mem.total),
        }
        try:
            row["power_w"] = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            row["temp_c"] = float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        except Exception:  # not every board reports power / temperature
            pass
        out.append(row)
    return out
