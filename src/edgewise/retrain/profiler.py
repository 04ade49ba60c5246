"""Throughput and interference profiler: measured θ_i(k) and L_i(k) per device.

Every device is profiled at once (as they will train at once): one profiling worker
per device, inside the device's cgroup next to its background app, cycles through the
candidate intensities in phases aligned on wall-clock times shared by all workers.
A quiet window before the first phase gives each app's solo latency. The background
apps' own logs give the latency percentile in each phase.

The worker is ``python -m edgewise.retrain.profiler CONFIG DEVICE``; assembling
profiles from the measurements (:func:`assemble`) and the 20 % drift test
(:func:`needs_reprofile`) are pure.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.config import DeviceSpec
from edgewise.planning.retrain import DeviceProfile, Intensity
from edgewise.retrain.background import read_log

DEFAULT_INTENSITIES: tuple[tuple[int, int], ...] = ((1, 0), (1, 19), (2, 0), (2, 19))


def candidate_intensities(cpus: float) -> list[tuple[int, int]]:
    """(threads, nice) pairs worth trying on a device with ``cpus`` CPUs."""
    return [(t, n) for t, n in DEFAULT_INTENSITIES if t <= max(1, int(np.ceil(cpus)))]


def needs_reprofile(profiled_sps: float, measured_sps: float, tolerance: float = 0.2) -> bool:
    """True when measured throughput drifted more than ``tolerance`` from the profile."""
    if profiled_sps <= 0:
        return True
    return abs(measured_sps - profiled_sps) / profiled_sps > tolerance


def assemble(
    spec: DeviceSpec,
    phases: Sequence[Mapping[str, Any]],
    bg_log: np.ndarray,
    solo_window: tuple[float, float],
) -> DeviceProfile:
    """A device's profile from its phase measurements and its background log."""
    pct = spec.background.percentile if spec.background else 99.0

    def latency(windows: Sequence[tuple[float, float]]) -> float:
        if spec.background is None:
            return 0.0
        keep = np.zeros(len(bg_log), dtype=bool)
        for t0, t1 in windows:
            keep |= (bg_log[:, 0] >= t0) & (bg_log[:, 0] < t1)
        sel = bg_log[keep, 1]
        return float(np.percentile(sel, pct)) if sel.size else float("inf")

    # an intensity measured in several phases (interleaved, so that slow drifts of the
    # host and the first phase's warm-up do not favour one intensity): pooled figures
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for ph in phases:
        groups.setdefault((int(ph["threads"]), int(ph["nice"])), []).append(ph)
    its = tuple(
        Intensity(
            threads=threads,
            nice=nice,
            throughput_sps=sum(float(ph["samples"]) for ph in phs)
            / max(sum(float(ph["seconds"]) for ph in phs), 1e-9),
            bg_latency_ms=latency([(float(ph["t0"]), float(ph["t1"])) for ph in phs]),
        )
        for (threads, nice), phs in groups.items()
    )
    return DeviceProfile(spec.name, its, solo_latency_ms=latency([solo_window]))


def _worker(config_path: str, device: str) -> int:
    import torch

    from edgewise.procs import die_with_parent
    from edgewise.retrain.trainer import build_module, train_split
    from edgewise.workloads.zoo import logits_of

    die_with_parent()
    cfg = json.loads(Path(config_path).read_text())
    x, y, n_classes = train_split(cfg["data"], cfg["drift"], cfg["seed"])
    module = build_module(cfg["model"], cfg["seed"], n_classes)
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    b = int(cfg["batch"])
    rng = np.random.default_rng(cfg["seed"])
    from edgewise.retrain.devices import join_device_group

    join_device_group()
    (Path(cfg["workdir"]) / f"profile-ready-{device}").write_text("1")
    go = Path(cfg["workdir"]) / "profile-go.json"
    deadline = time.time() + 120.0
    while not go.exists():
        if time.time() > deadline:
            return 4
        time.sleep(0.02)
    t_start = float(json.loads(go.read_text())["t_start"])
    results = []
    schedule = [tuple(k) for k in cfg["intensities"][device]] * int(cfg.get("repeats", 1))
    for i, (threads, nice) in enumerate(schedule):
        t0 = t_start + i * cfg["phase_s"]
        t1 = t0 + cfg["phase_s"]
        torch.set_num_threads(threads)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        while time.time() < t0:
            time.sleep(min(0.01, max(0.0, t0 - time.time())))
        warm_end = t0 + cfg["warm_s"]
        samples, t_meas = 0, None
        while time.time() < t1:
            idx = torch.as_tensor(rng.integers(0, len(y), b))
            opt.zero_grad()
            loss_fn(logits_of(module(x[idx])), y[idx]).backward()
            opt.step()
            now = time.time()
            if now >= warm_end:
                if t_meas is None:
                    t_meas = now
                else:
                    samples += b
        seconds = (time.time() - t_meas) if t_meas is not None else 0.0
        results.append(
            {
                "threads": threads,
                "nice": nice,
                "samples": samples,
                "seconds": seconds,
                "t0": t0,
                "t1": t1,
            }
        )
    (Path(cfg["workdir"]) / f"profile-{device}.json").write_text(json.dumps(results))
    return 0


def profile_pool(
    pool: Any,
    devices: Sequence[DeviceSpec],
    model: str,
    data: str,
    drift: str,
    seed: int,
    batch: int = 32,
    phase_s: float = 2.0,
    warm_s: float = 0.4,
    solo_s: float = 2.0,
    startup_timeout_s: float = 90.0,
    repeats: int = 2,
) -> dict[str, DeviceProfile]:
    """Measure every device of ``pool`` (an :class:`EmulatedPool`) at every intensity.

    The intensities are cycled ``repeats`` times (A B A B ...), each phase ``phase_s``
    long; an intensity's figures pool its phases.
    """
    work = Path(pool.workdir)
    intens = {d.name: candidate_intensities(d.cpus) for d in devices}
    cfg: dict[str, Any] = {
        "model": model,
        "data": data,
        "drift": drift,
        "seed": seed,
        "batch": batch,
        "phase_s": phase_s,
        "warm_s": warm_s,
        "workdir": str(work),
        "intensities": intens,
        "repeats": repeats,
        "t_start": 0.0,
    }
    for d in devices:
        (work / f"profile-ready-{d.name}").unlink(missing_ok=True)
        (work / f"profile-{d.name}.json").unlink(missing_ok=True)
    (work / "profile-go.json").unlink(missing_ok=True)
    cfg_path = work / "profile.json"
    cfg_path.write_text(json.dumps(cfg))
    for d in devices:
        pool.spawn(
            d.name,
            [sys.executable, "-m", "edgewise.retrain.profiler", str(cfg_path), d.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    give_up = time.time() + startup_timeout_s
    while not all((work / f"profile-ready-{d.name}").exists() for d in devices):
        if time.time() > give_up:
            raise TimeoutError("profiling workers did not start")
        time.sleep(0.05)
    # quiet window (solo latency), then the phases
    t_start = time.time() + solo_s
    tmp = work / "profile-go.tmp"
    tmp.write_text(json.dumps({"t_start": t_start}))
    os.replace(tmp, work / "profile-go.json")
    n_phases = max(len(v) for v in intens.values()) * repeats
    end = t_start + n_phases * phase_s
    while not all((work / f"profile-{d.name}.json").exists() for d in devices):
        if time.time() > end + 30.0:
            raise TimeoutError("profiling workers did not finish")
        time.sleep(0.1)
    time.sleep(0.6)  # let background apps flush their last requests
    out = {}
    for d in devices:
        phases = json.loads((work / f"profile-{d.name}.json").read_text())
        out[d.name] = assemble(
            d, phases, read_log(pool.bg_log(d.name)), (t_start - solo_s + 0.3, t_start)
        )
    return out


def profiles_to_json(profiles: Mapping[str, DeviceProfile]) -> dict[str, Any]:
    """Plain-JSON form of profiles (for the KB and reports)."""
    return {
        n: {
            "solo_latency_ms": p.solo_latency_ms,
            "intensities": [
                {
                    "threads": k.threads,
                    "nice": k.nice,
                    "throughput_sps": k.throughput_sps,
                    "bg_latency_ms": k.bg_latency_ms,
                }
                for k in p.intensities
            ],
        }
        for n, p in profiles.items()
    }


def profiles_from_json(raw: Mapping[str, Any]) -> dict[str, DeviceProfile]:
    """Inverse of :func:`profiles_to_json`."""
    return {
        n: DeviceProfile(n, tuple(Intensity(**k) for k in v["intensities"]), v["solo_latency_ms"])
        for n, v in raw.items()
    }


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], sys.argv[2]))
