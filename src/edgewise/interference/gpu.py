"""GPU interference: NVML features, a duty-cycled matrix-multiply stressor, availability.

Where CUDA is present a campaign can add the resource ``gpu`` (the stressor's duty
cycle) to its stress space. :class:`GpuStress` runs ``python -m
edgewise.interference.gpu`` — a child that multiplies two ``size x size`` matrices on
the GPU for ``duty x period`` seconds out of every ``period`` — and reports the
**achieved** intensity: the mean NVML utilisation over the measurement window when
NVML works, else the busy fraction the child measured itself (CUDA-synchronised).
:func:`gpu_features` reads NVML utilisation and memory use for the feature vector.

Without CUDA, :func:`gpu_available` says why in one line and every GPU path is skipped.
Pure part: :func:`duty_schedule` (busy/idle split of one period).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from edgewise.errors import EnvironmentProblem, SpecError
from edgewise.lifecycle import Closing

GPU_RESOURCES: tuple[str, ...] = ("gpu", "gpumem")


@dataclass(frozen=True)
class GpuAvailability:
    """Whether CUDA (and NVML) can be used here, with one line saying why (not)."""

    cuda: bool
    nvml: bool
    reason: str


def gpu_available() -> GpuAvailability:
    """CUDA through torch, NVML through the telemetry module; never raises."""
    try:
        import torch
    except ImportError:
        return GpuAvailability(False, False, "torch is not installed")
    try:
        from edgewise.telemetry import nvml_status

        nv = nvml_status()
        nvml, nv_reason = nv.available, nv.reason
    except Exception as err:  # telemetry optional parts must not break the check
        nvml, nv_reason = False, f"NVML check failed: {err}"
    if not torch.cuda.is_available():
        return GpuAvailability(False, nvml, f"no CUDA device visible to torch {torch.__version__}")
    name = torch.cuda.get_device_name(0)
    return GpuAvailability(True, nvml, f"{name}; NVML: {nv_reason}")


def require_gpu() -> GpuAvailability:
    """EnvironmentProblem with the reason when no CUDA device can be used."""
    av = gpu_available()
    if not av.cuda:
        raise EnvironmentProblem(f"GPU requested but unavailable: {av.reason}")
    return av


def gpu_features(index: int = 0) -> dict[str, float]:
    """NVML utilisation (``gpu``, 0..1) and memory in use (``gpumem``, 0..1); {} without NVML."""
    try:
        from edgewise.telemetry import read_gpus

        rows = read_gpus()
    except Exception:
        return {}
    for r in rows:
        if int(r.get("index", -1)) == index:
            total = r.get("mem_total_bytes", 0.0) or 1.0
            return {"gpu": float(r["util_gpu"]), "gpumem": float(r["mem_used_bytes"]) / total}
    return {}


def duty_schedule(duty: float, period_s: float) -> tuple[float, float]:
    """(busy seconds, idle seconds) of one period for a duty cycle in [0, 1]."""
    if not 0.0 <= duty <= 1.0:
        raise SpecError(f"GPU duty cycle is {duty:g}: must lie in [0, 1]")
    if period_s <= 0:
        raise SpecError(f"GPU duty period must be positive, got {period_s:g}")
    return duty * period_s, (1.0 - duty) * period_s


class GpuStress(Closing):
    """A duty-cycled matmul loop on one GPU in a child process (context manager).

    ``begin_window()`` / ``end_window()`` bracket the measurement; the achieved
    ``gpu`` intensity is NVML's mean utilisation over the window (sampled every
    ``sample_interval_s``) or, without NVML, the child's own busy fraction.
    """

    def __init__(
        self,
        duty: float,
        *,
        size: int = 4096,
        period_s: float = 0.1,
        device: int = 0,
        sample_interval_s: float = 0.2,
        start_timeout_s: float = 120.0,
    ) -> None:
        duty_schedule(duty, period_s)
        self.duty = float(duty)
        self.size = int(size)
        self.period_s = float(period_s)
        self.device = int(device)
        self.sample_interval_s = sample_interval_s
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._samples: list[dict[str, float]] = []
        self._sampling = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_enter(self) -> None:
        self.start()

    def close(self) -> None:
        """Stop the child and the sampler (what leaving ``with`` does); see :meth:`stop`."""
        self.stop()

    def start(self) -> None:
        require_gpu()
        cmd = [
            sys.executable,
            "-m",
            "edgewise.interference.gpu",
            "--duty",
            str(self.duty),
            "--size",
            str(self.size),
            "--period",
            str(self.period_s),
            "--device",
            str(self.device),
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        line = self._readline(self.start_timeout_s)
        if line.strip() != "READY":
            self.stop()
            raise EnvironmentProblem(f"GPU stressor failed to start: {line.strip() or 'no output'}")
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._thread.start()

    def _readline(self, timeout_s: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout_s)
        if not ready:
            return ""
        line = self._proc.stdout.readline()
        if not line and self._proc.stderr is not None:
            return (self._proc.stderr.read().strip().splitlines() or ["exited"])[-1]
        return line

    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            if self._sampling.is_set():
                f = gpu_features(self.device)
                if f:
                    self._samples.append(f)
            self._stop.wait(self.sample_interval_s)

    def begin_window(self) -> None:
        self._samples = []
        self._sampling.set()

    def end_window(self) -> dict[str, float]:
        """Achieved ``gpu`` (and ``gpumem`` with NVML) over the window."""
        self._sampling.clear()
        if self._samples:
            n = len(self._samples)
            return {k: sum(s[k] for s in self._samples) / n for k in GPU_RESOURCES}
        return {"gpu": self._child_busy_fraction(), "gpumem": 0.0}

    def _child_busy_fraction(self) -> float:
        """Ask the child for its busy fraction (SIGUSR1 -> one JSON line)."""
        if self._proc is None or self._proc.poll() is not None:
            return float("nan")
        os.kill(self._proc.pid, signal.SIGUSR1)
        line = self._readline(5.0)
        try:
            return float(json.loads(line)["busy_fraction"])
        except (ValueError, KeyError, TypeError):
            return float("nan")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)
        self._proc = None


# --------------------------------------------------------------------------- child
def _child(duty: float, size: int, period_s: float, device: int) -> None:  # pragma: no cover
    import torch

    dev = torch.device("cuda", device)
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(size, size, device=dev, generator=gen)
    b = torch.randn(size, size, device=dev, generator=gen)
    torch.cuda.synchronize(dev)
    busy_s, idle_s = duty_schedule(duty, period_s)
    totals = {"busy": 0.0, "t0": time.perf_counter()}

    def report(signum: int, frame: FrameType | None) -> None:
        wall = max(1e-9, time.perf_counter() - totals["t0"])
        print(json.dumps({"busy_fraction": totals["busy"] / wall}), flush=True)
        totals["busy"], totals["t0"] = 0.0, time.perf_counter()

    signal.signal(signal.SIGUSR1, report)
    print("READY", flush=True)
    while True:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < busy_s:
            torch.mm(a, b)
            torch.cuda.synchronize(dev)
        totals["busy"] += time.perf_counter() - t0
        if idle_s > 0:
            time.sleep(idle_s)


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - child
    ap = argparse.ArgumentParser(prog="edgewise.interference.gpu")
    ap.add_argument("--duty", type=float, required=True)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--period", type=float, default=0.1)
    ap.add_argument("--device", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        _child(a.duty, a.size, a.period, a.device)
    except Exception as err:
        print(f"ERROR {type(err).__name__}: {err}".replace("\n", " "), flush=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
