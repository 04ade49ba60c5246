"""What a re-training job needs around the trainer: its inputs and its figures.

Pure pieces: the planner's view of a device pool (:func:`device_states`), the job's
constraints (:func:`make_constraints`), the pool checks a user acts on
(:func:`check_pool`), and the figures read from a run's step records
(:func:`measured_rates`, :func:`final_shares`) and background logs
(:class:`BackgroundSummary`). Effects: the deployed model's weights, trained once on the
base split and cached under ``$EDGEWISE_HOME`` (:func:`base_weights`), and its accuracy
on the drifted test split (:func:`drift_accuracy`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.config import DevicePool, DeviceSpec
from edgewise.errors import SpecError
from edgewise.planning.retrain import DeviceProfile, DeviceState, RetrainConstraints
from edgewise.retrain.background import read_log, summarise

DEFAULT_BATCH = 1024
"""Global batch: big enough that compute, not gloo, dominates a step on 32x32 digits."""
DEFAULT_EPOCHS = 60


def device_states(pool: DevicePool) -> list[DeviceState]:
    """Planner view of a device pool."""
    return [
        DeviceState(
            d.name,
            d.cpus,
            float(d.memory_mb),
            d.background.deadline_ms if d.background else None,
        )
        for d in pool.devices
    ]


def memory_mb(param_count: int, sample_shape: Sequence[int]) -> tuple[float, float]:
    """Training memory of a model: fixed (weights, grads, momentum, runtime) and per sample."""
    fixed = param_count * 4 * 3 / 2**20 + 150.0  # + interpreter and torch runtime
    per_sample = 4 * math.prod(sample_shape) * 40 / 2**20  # activations, generously
    return fixed, per_sample


def model_memory_mb(model: str) -> tuple[float, float]:
    """Training memory of zoo model ``model`` (:func:`memory_mb`)."""
    from edgewise.workloads.zoo import build_model

    zoo = build_model(model)
    return memory_mb(zoo.param_count, zoo.input_shape)


def make_constraints(
    model: str,
    global_batch: int = DEFAULT_BATCH,
    *,
    memory: tuple[float, float] | None = None,
) -> RetrainConstraints:
    """The planner's constraints for training ``model`` with ``global_batch`` samples a step.

    ``memory`` (fixed MB, MB per sample) is the model's own (:func:`memory_mb`) when it
    is not a zoo model.
    """
    fixed, per_sample = memory if memory is not None else model_memory_mb(model)
    return RetrainConstraints(
        global_batch=global_batch,
        deadline_margin=0.1,
        model_mb=fixed,
        per_sample_mb=per_sample,
        comm_fixed_s=0.004,
        comm_per_device_s=0.002,
    )


def steps_for(epochs: int, n_train: int, global_batch: int) -> int:
    """Steps of ``epochs`` passes over ``n_train`` samples: ``ceil(epochs * n / batch)``."""
    return max(1, math.ceil(epochs * n_train / global_batch))


def check_pool(
    pool: DevicePool, profiles: Mapping[str, DeviceProfile], c: RetrainConstraints, source: str
) -> None:
    """Reject pools a user must fix: one line naming the device and the reason.

    Raises
    ------
    SpecError
        No device has the memory to train the model, or a background app's deadline is
        below its own solo latency.
    """
    if not any(d.memory_mb >= c.model_mb + c.per_sample_mb for d in pool.devices):
        big = max(pool.devices, key=lambda d: d.memory_mb)
        raise SpecError(
            f"{source}: device {big.name}: model needs {c.model_mb:.0f} MB to train, "
            f"the largest device has {big.memory_mb} MB"
        )
    for d in pool.devices:
        p = profiles.get(d.name)
        if d.background and p and p.solo_latency_ms > d.background.deadline_ms:
            raise SpecError(
                f"{source}: device {d.name}: deadline {d.background.deadline_ms:g} ms is below "
                f"its app's solo p{d.background.percentile:g} latency {p.solo_latency_ms:.1f} ms"
            )


def base_weights(model: str, data: str, drift: str, seed: int) -> Path:
    """The deployed model (trained on the base split), cached under EDGEWISE_HOME."""
    import torch

    from edgewise.paths import home
    from edgewise.retrain.trainer import train_base

    path = home() / "retrain-cache" / f"base-{model}-{data}-{drift}-{seed}.pt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        state = train_base(model, data, drift, seed)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
    return path


def drift_accuracy(model: str, data: str, drift: str, seed: int, weights: Path) -> float:
    """Accuracy of ``weights`` on the drifted test split."""
    import torch

    from edgewise.retrain.trainer import _num_classes, accuracy, build_module, load_task

    task = load_task(data, drift, seed)
    module = build_module(model, seed, _num_classes(task))
    module.load_state_dict(torch.load(weights, map_location="cpu"))
    return accuracy(module, *task.drift_test)


def measured_rates(steps: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per device, median compute throughput in training (share / forward+backward time)."""
    by: dict[str, list[float]] = {}
    for s in steps:
        if "t_fb" in s and s.get("share", 0) > 0 and s["t_fb"] > s["t0"]:
            by.setdefault(str(s["device"]), []).append(s["share"] / (s["t_fb"] - s["t0"]))
    return {d: float(np.median(v[1:] if len(v) > 2 else v)) for d, v in by.items()}


def final_shares(steps: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Shares of the last step of a run (after any online re-balancing)."""
    last = max((int(s["step"]) for s in steps), default=0)
    return {str(s["device"]): int(s["share"]) for s in steps if int(s["step"]) == last}


@dataclass(frozen=True)
class BackgroundSummary:
    """A background app's latency and deadline misses while a job trained beside it."""

    p50_ms: float
    p99_ms: float
    deadline_ms: float
    miss_rate: float
    n: int
    misses: int

    def as_dict(self, with_count: bool = False) -> dict[str, float]:
        """The stored and printed form (``n`` too with ``with_count``)."""
        out = {
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "deadline_ms": self.deadline_ms,
            "miss_rate": self.miss_rate,
        }
        if with_count:
            out["n"] = self.n
        return out


def background_summaries(
    devices: Sequence[DeviceSpec],
    log_of: Callable[[str], Path],
    t0: float,
    t1: float,
    logged_only: bool = False,
) -> dict[str, BackgroundSummary]:
    """Every background app's requests that arrived in ``[t0, t1)``, per device.

    ``log_of(device)`` is the app's log (a pool's ``bg_log``); with ``logged_only``
    devices whose log does not exist are left out (otherwise they read as no requests).
    """
    out: dict[str, BackgroundSummary] = {}
    for d in devices:
        if d.background is None or (logged_only and not log_of(d.name).exists()):
            continue
        s = summarise(read_log(log_of(d.name)), d.background.deadline_ms, t0, t1)
        out[d.name] = BackgroundSummary(
            p50_ms=s["p50"],
            p99_ms=s["p99"],
            deadline_ms=d.background.deadline_ms,
            miss_rate=s["miss_rate"],
            n=int(s["n"]),
            misses=int(s["misses"]),
        )
    return out


# ---------------------------------------------------------------- running a job


def pool_profiles(
    pool: Any,
    devices: Sequence[DeviceSpec],
    kb: Any,
    key: str,
    task: tuple[str, str, str, int],
    batch: int,
    reprofile: bool,
    say: Callable[[str], None],
) -> tuple[dict[str, DeviceProfile], str]:
    """The devices' profiles from the knowledge base, or measured (and stored) now.

    ``task`` is what the ranks train: ``(model, data, drift, seed)``. Returns the
    profiles and where they came from (``cache`` or ``measured``).
    """
    from edgewise.retrain import records
    from edgewise.retrain.profiler import profile_pool

    cached = None if reprofile else records.load_profiles(kb, key)
    say("starting devices" + ("" if cached else " and profiling"))
    pool.wait_background_ready()
    if cached is not None:
        return cached, "cache"
    model, data, drift, seed = task
    profiles = profile_pool(pool, devices, model, data, drift, seed, batch=batch)
    records.save_profiles(kb, key, profiles)
    return profiles, "measured"


def initial_weights(base: Path, work: Path, address: str | None) -> Path:
    """The weights the ranks start from: on a cluster, a copy in the shared job directory."""
    import shutil

    if not address:
        return base
    # workers on other hosts see the job directory, not this host's cache
    init = work / "job" / "base-weights.pt"
    init.parent.mkdir(parents=True, exist_ok=True)
    if init.resolve() != base.resolve():
        shutil.copyfile(base, init)
    return init


def train_recorded(
    launcher: Any,
    states: Any,
    profiles: dict[str, DeviceProfile],
    c: RetrainConstraints,
    job: Any,
    kb: Any,
    job_id: int,
    resume: bool,
    monitor: Any,
    on_step: Callable[[int, int], None],
) -> Any:
    """Train elastically (a ``RunResult``); an interrupt or a failure is the job's status.

    Raises
    ------
    SpecError
        On an interrupt: the checkpoints are kept, rerun with resume.
    TrainingFailed
        Training could not finish.
    """
    from edgewise.planning.retrain import plan_exact
    from edgewise.retrain import records
    from edgewise.retrain.controller import TrainingFailed, run_training

    on_step(0, job.total_steps)
    try:
        return run_training(
            launcher,
            states,
            profiles,
            c,
            job,
            plan_exact,
            resume=resume,
            on_step=on_step,
            on_checkpoint=lambda s, p: records.record_checkpoint(kb, job_id, s, p),
            monitor=monitor,
        )
    except KeyboardInterrupt:
        records.finish_job(kb, job_id, "interrupted", {})
        raise SpecError(
            f"interrupted; checkpoints kept in {job.workdir / 'checkpoints'}: rerun with --resume"
        ) from None
    except TrainingFailed:
        records.finish_job(kb, job_id, "failed", {})
        raise


def clear_checkpoints(ck_dir: Path, resume: bool) -> None:
    """A fresh job starts without the last job's checkpoints."""
    if not resume and ck_dir.exists():
        for p in ck_dir.iterdir():
            p.unlink()


def builtin_steps(data: str, drift: str, seed: int, epochs: int, global_batch: int) -> int:
    """The steps of ``epochs`` passes over a built-in data set's drifted training split."""
    from edgewise.retrain.trainer import load_task

    return steps_for(epochs, len(load_task(data, drift, seed).drift_train[1]), global_batch)


def drift_decision(
    model: str,
    base: Path,
    task: tuple[str, str, int],
    metric: str,
    threshold: float | None,
) -> Any:
    """Measure the deployed model's drift on ``task`` = ``(data, drift, seed)``; decide.

    Returns the :class:`edgewise.retrain.drift.DriftDecision`.
    """
    from edgewise.retrain import drift as drift_mod

    data, drift, seed = task
    stat = drift_mod.measure(model, base, data, drift, seed, metric)  # type: ignore[arg-type]
    return drift_mod.decide(metric, stat, threshold)  # type: ignore[arg-type]
