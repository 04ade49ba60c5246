"""Throughput and interference profiler: measured θ_i(k) and L_i(k) per device.

Every device is profiled at once (as they will train at once): one profiling worker
per device, inside the device's cgroup next to its background app, cycles through the
candidate intensities in phases aligned on wall-clock times shared by all workers.
A quiet window before the first phase gives each app's solo latency. The background
apps' own logs give the latency percentile in each phase.

The worker is ``python -m edgewise.retrain.profiler CONFIG DEVICE``; assembling
profiles from the measurements (:func:`assemble`) and the 20 % drift test
(:func:`needs_reprofile`) are pure.

Before any measurement a profile can be predicted instead: the training job's CPU
pressure on a device (:func:`training_pressure`, the neighbour an app's interference
model is asked about), the throughput scaled from one thread's (:func:`time_training`,
:func:`estimated_throughput`) and the profile assembled from the predicted latencies
(:func:`predicted_profile`); :func:`prediction_errors` puts a plan made from it beside
the latency measured later. A device is a CFS bandwidth group (a CPU quota refilled
every period) holding the app and the trainer: what the quota does to the app is
modelled apart from the interference model (pure): its solo latency
(:func:`quota_solo_ms`, from the app's CPU demand :func:`app_cpu_demand`), whether
training makes the quota bind (:func:`quota_binds`) and then, for a request that fits in
a period's runtime (:func:`quota_runtime_ms`), the app's throttling tail
(:func:`throttled_latency_ms`). The knowledge base is read by the caller
(:func:`edgewise.api.retrain.predict_profiles`): this pillar does not import the
interference pillar.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.config import DeviceSpec
from edgewise.planning.retrain import DeviceProfile, Intensity, RetrainPlan
from edgewise.retrain.background import read_log

DEFAULT_INTENSITIES: tuple[tuple[int, int], ...] = ((1, 0), (1, 19), (2, 0), (2, 19))


def candidate_intensities(cpus: float) -> list[tuple[int, int]]:
    """(threads, nice) pairs worth trying on a device with ``cpus`` CPUs."""
    return [(t, n) for t, n in DEFAULT_INTENSITIES if t <= max(1, int(np.ceil(cpus)))]


#: CPU pressure of a training loop at nice 19 relative to nice 0 (it yields to the app
#: but still takes the CPU between requests and stirs its caches). Estimated: no
#: footprint of our training loop is measured; on the dev VM the app's p99 next to
#: nice-19 training was 1.2-1.5 times its solo p99, next to nice 0 2.3-4.5 times.
NICE_PRESSURE = 0.25


def training_pressure(threads: int, nice: int, cpus: float) -> float:
    """Estimated CPU pressure of training at ``(threads, nice)`` on a ``cpus`` device.

    The fraction of the device's CPU time the trainer takes (``min(threads, cpus) /
    cpus``: a training loop is always runnable), down-weighted by
    :data:`NICE_PRESSURE` at nice 10 or more, in [0, 1]. The background app shares
    the device's CPUs with it, as a stressor confined to the app's CPUs does.
    """
    if cpus <= 0:
        raise ValueError(f"a device needs a positive CPU count, got {cpus}")
    share = min(float(threads), cpus) / cpus
    return min(1.0, share * (NICE_PRESSURE if nice >= 10 else 1.0))


def training_neighbour(threads: int, nice: int, cpus: float) -> str:
    """The stress mix standing for training at ``(threads, nice)`` on a ``cpus`` device
    (``stress:cpu=P``, P from :func:`training_pressure`), the neighbour an app's
    interference model is asked about."""
    return f"stress:cpu={training_pressure(threads, nice, cpus):.3f}"


def app_cpu_demand(rate_rps: float, service_ms: float) -> float:
    """CPUs an app keeps busy: ``rate_rps * service_ms / 1000`` (its utilisation).

    ``service_ms`` is the CPU time of one request on an unthrottled CPU; an app's solo
    p50 at a rate that leaves it idle most of the time is that time (digits_cnn at
    5 rps: 1.4 ms, 0.007 CPUs).
    """
    return max(0.0, float(rate_rps)) * max(0.0, float(service_ms)) / 1000.0


def _quota_share(cpus: float) -> float:
    """The quota's share of the CPUs a group can run on (``cpus / ceil(cpus)``)."""
    if cpus <= 0:
        raise ValueError(f"a device needs a positive CPU count, got {cpus}")
    return cpus / max(1, math.ceil(cpus - 1e-9))


def quota_runtime_ms(cpus: float, period_ms: float) -> float:
    """CPU time per period a device's group may use on each CPU it runs on: ``cpus /
    ceil(cpus) * period_ms`` (half a CPU, 5 ms period: 2.5 ms). A request that needs no
    more fits in one period's runtime."""
    return _quota_share(cpus) * period_ms


def quota_binds(cpus: float, threads: int, app_demand: float) -> bool:
    """Whether the device's CFS quota, not its CPUs, caps its group while training.

    A training loop is always runnable: its ``threads`` are that many CPUs of demand,
    and the app adds ``app_demand`` (:func:`app_cpu_demand`). The group runs on at most
    ``ceil(cpus)`` CPUs (a device of at most one CPU is pinned to one host CPU and gets
    one training thread). The quota binds when that capped demand exceeds ``cpus``: on
    half a CPU one training thread does; on a 1-CPU device the thread and the app fill
    the CPU and CFS weights (nice) share it, but the quota is never exceeded.
    """
    lanes = max(1, math.ceil(cpus - 1e-9))
    return min(float(threads) + max(0.0, app_demand), float(lanes)) > cpus + 1e-9


def quota_solo_ms(
    service_ms: float, cpus: float, period_ms: float, app_demand: float = 0.0
) -> float:
    """One request's latency with the app alone on a device of ``cpus`` CPUs (a CFS quota).

    CFS bandwidth control gives the group ``cpus * period_ms`` of CPU time per period and
    throttles it, until the next period, once that is used. One app thread runs on one
    CPU at a time, so a quota of a CPU or more never throttles it alone. Below one CPU:

    - a request needing no more than a period's runtime (``service_ms <= cpus *
      period_ms``) of an app that leaves the quota unused between requests
      (``app_demand < cpus``) finishes before the quota runs out: it is not stretched;
    - a longer request uses the whole runtime of each period it spans and waits out the
      rest: started at a period boundary it takes ``service_ms + (ceil(service_ms /
      runtime) - 1) * (1 - cpus) * period_ms`` (``service_ms / cpus`` for long requests);
    - an app whose demand alone exhausts the quota (``app_demand >= cpus``) has no stable
      latency: ``service_ms / cpus`` is returned, a lower bound.

    Parameters
    ----------
    service_ms : float
        One request's CPU time on an unthrottled CPU.
    cpus : float
        The device's quota in CPUs.
    period_ms : float
        The group's CFS period.
    app_demand : float
        The app's CPU demand (:func:`app_cpu_demand`).
    """
    q = min(1.0, float(cpus))
    if q <= 0:
        raise ValueError(f"a device needs a positive CPU count, got {cpus}")
    if q >= 1.0:
        return float(service_ms)
    if app_demand >= q:
        return float(service_ms) / q
    runtime = q * period_ms
    spans = max(0, math.ceil(service_ms / runtime - 1e-9) - 1)
    return float(service_ms) + spans * (1.0 - q) * period_ms


def throttled_latency_ms(
    solo_ms: float,
    cpus: float,
    period_ms: float,
    percentile: float = 99.0,
) -> float:
    """Latency percentile of an app whose device's quota is exhausted by training.

    The app and an always-runnable trainer share one CFS bandwidth group (the device's
    cgroup) whose quota the trainer uses up every period. Derivation, per CPU the group
    runs on, with ``f = cpus / ceil(cpus)`` the quota's share of it:

    1. The group runs ``f * period_ms`` of each period, then every thread in it is
       throttled until the quota is refilled at the next period boundary.
    2. The longest throttle is ``W = (1 - f) * period_ms``. The kernel's own counters
       confirm it on the dev host (``cpu.stat``: ``throttled_time / nr_throttled`` of a
       CPU hog in a 5 ms group of 0.5 and 0.33 CPU: 2.8 and 3.5 ms, throttled in 89 and
       96 % of the periods), not a longer throttle every few periods.
    3. In the long run the group runs a share ``f``: throttles of ``W`` alternate with
       runs of ``R = W * f / (1 - f)``, a cycle of ``C = R + W``.
    4. Within the group the app's short request runs before the trainer whatever the
       trainer's nice: the app sleeps between requests, and CFS lets a waking task with
       a short burst preempt a CPU hog. Nice changes the trainer's share of the CPU
       while the group runs, not the throttle, which stops every thread in the group.
    5. A request arriving at a uniform time waits out the rest of a throttle (uniform
       on ``[0, W]``, probability ``W / C``) or, arriving less than ``solo_ms`` before
       one, a whole ``W``: ``P(wait > w) = (W - w + min(solo_ms, R)) / C`` for ``w <
       W``. The percentile's wait is ``w = W + min(solo_ms, R) - (1 - p) * C``, clipped
       to ``[0, W]``; the latency is ``solo_ms + w``.

    Assumes one period's runtime covers a request (``solo_ms <= f * period_ms``; longer
    requests span throttles and share the CPU with the trainer by weight). What this
    leaves out: the scheduling delay behind the trainer within the group and behind
    other groups on the same CPU. Measured on the dev host the tails of digits_cnn next
    to training on 0.5 and 0.33 CPU were 13 and 27 ms, where this predicts 4 and 5 ms.

    Parameters
    ----------
    solo_ms : float
        The app's latency alone on the device at ``percentile``, not stretched by the
        quota (:func:`quota_solo_ms`).
    cpus : float
        The device's quota in CPUs.
    period_ms : float
        The group's CFS period.
    percentile : float
        In (0, 100).

    Returns
    -------
    float
        ``solo_ms`` plus the throttling wait at ``percentile``; ``solo_ms`` when the quota
        is whole CPUs (nothing throttles a group that cannot exceed it).
    """
    f = _quota_share(cpus)
    if f >= 1.0 - 1e-9:
        return float(solo_ms)
    wait = (1.0 - f) * period_ms
    run = wait * f / (1.0 - f)
    tail = 1.0 - float(percentile) / 100.0
    w = wait + min(float(solo_ms), run) - tail * (run + wait)
    return float(solo_ms) + min(wait, max(0.0, w))


def estimated_throughput(threads: int, cpus: float, sps_per_cpu: float) -> float:
    """Training throughput (samples/s) at ``threads`` on a ``cpus`` device, estimated
    from one CPU's throughput: ``sps_per_cpu * min(threads, cpus)`` (the nice level
    changes little: the app takes a small share of the CPU)."""
    return sps_per_cpu * min(float(threads), cpus)


def predicted_profile(
    name: str,
    cpus: float,
    bg_latency_ms: Mapping[tuple[int, int], float],
    sps_per_cpu: float,
    solo_latency_ms: float = 0.0,
) -> DeviceProfile:
    """A device profile predicted before any measurement on the device.

    Parameters
    ----------
    name, cpus
        The device.
    bg_latency_ms : mapping
        ``(threads, nice) -> `` the background app's predicted latency percentile (ms)
        while training at that intensity; the profile holds these intensities, in
        :func:`candidate_intensities` order (an intensity missing here is left out).
    sps_per_cpu : float
        One CPU's training throughput (:func:`estimated_throughput`).
    solo_latency_ms : float
        The app's predicted latency alone on the device.
    """
    its = tuple(
        Intensity(t, n, estimated_throughput(t, cpus, sps_per_cpu), float(bg_latency_ms[t, n]))
        for t, n in candidate_intensities(cpus)
        if (t, n) in bg_latency_ms
    )
    return DeviceProfile(name, its, solo_latency_ms=solo_latency_ms)


def prediction_errors(
    plan: RetrainPlan, measured_ms: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    """Per device of ``plan`` with a measured figure: predicted against measured latency.

    ``plan`` was made from predicted profiles: its intensities carry the predicted
    background latency. ``measured_ms`` is the same percentile measured while training
    at the same intensity. The error is ``|predicted - measured| / measured``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, it in plan.intensities.items():
        got = measured_ms.get(name)
        if got is None or not np.isfinite(got) or got <= 0 or it.bg_latency_ms <= 0:
            continue
        out[name] = {
            "intensity": it.label,
            "predicted_p99_ms": it.bg_latency_ms,
            "measured_p99_ms": float(got),
            "prediction_error": abs(it.bg_latency_ms - float(got)) / float(got),
        }
    return out


def max_prediction_error(errors: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The largest ``prediction_error`` of :func:`prediction_errors` (``None``: none)."""
    return max((float(e["prediction_error"]) for e in errors.values()), default=None)


def time_training(
    model: str, data: str, drift: str, seed: int, batch: int, steps: int = 3
) -> float:
    """One thread's training throughput (samples/s) of ``model`` in this process.

    A short timing (``steps`` steps of ``batch`` after one warm-up step) on the host,
    not on a device: what :func:`estimated_throughput` scales to a device's CPUs.
    """
    import torch

    step, b = _training_step(model, data, drift, seed, batch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * b / max(time.perf_counter() - t0, 1e-9)
    finally:
        torch.set_num_threads(threads)


def _training_step(
    model: str, data: str, drift: str, seed: int, batch: int
) -> tuple[Callable[[], None], int]:
    """One SGD step of ``batch`` random samples of the drifted split, as a closure."""
    import torch

    from edgewise.retrain.trainer import build_module, train_split
    from edgewise.workloads.zoo import logits_of

    x, y, n_classes = train_split(data, drift, seed)
    module = build_module(model, seed, n_classes)
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)

    def step() -> None:
        idx = torch.as_tensor(rng.integers(0, len(y), batch))
        opt.zero_grad()
        loss_fn(logits_of(module(x[idx])), y[idx]).backward()
        opt.step()

    return step, batch


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

    die_with_parent()
    cfg = json.loads(Path(config_path).read_text())
    train_step, b = _training_step(
        cfg["model"], cfg["data"], cfg["drift"], cfg["seed"], int(cfg["batch"])
    )
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
            train_step()
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
