"""``edgewise bench retrain``: our plan against the baselines on one emulated pool.

Starts the pool (cgroups + background apps), profiles it, trains the deployed model on
the base split, then re-trains it on the drifted split with our plan, the equal split
and the interference-oblivious proportional split (and, with ``kill_at_step``, once more
with a device killed), and reports speed, deadline misses, accuracy and recovery.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from edgewise.config import DevicePool, load_devices
from edgewise.errors import InfeasibleError, SpecError
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    RetrainConstraints,
    feasible_throughput,
    plan_equal,
    plan_exact,
    plan_proportional,
)
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


def model_memory_mb(model: str) -> tuple[float, float]:
    """Training memory of ``model``: fixed (weights, grads, momentum, runtime) and per sample."""
    from edgewise.workloads.zoo import build_model

    zoo = build_model(model)
    fixed = zoo.param_count * 4 * 3 / 2**20 + 150.0  # + interpreter and torch runtime
    per_sample = 4 * math.prod(zoo.input_shape) * 40 / 2**20  # activations, generously
    return fixed, per_sample


def make_constraints(model: str, global_batch: int = DEFAULT_BATCH) -> RetrainConstraints:
    fixed, per_sample = model_memory_mb(model)
    return RetrainConstraints(
        global_batch=global_batch,
        deadline_margin=0.1,
        model_mb=fixed,
        per_sample_mb=per_sample,
        comm_fixed_s=0.004,
        comm_per_device_s=0.002,
    )


def check_pool(
    pool: DevicePool, profiles: dict[str, DeviceProfile], c: RetrainConstraints, source: str
) -> None:
    """Reject pools a user must fix: one line naming the device and the reason."""
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


def training_stressor(intensity_threads: int, nice: int, cpus: float) -> str:
    """The stressor name that stands for training at an intensity on a device.

    CPU pressure in fractions of the host: the device's share the trainer can use
    (``min(threads, cpus)``), down-weighted at nice 19 (it then yields to the app).
    An approximation: the profile pillar has no footprint of our training loop.
    """
    import os

    host = max(1, len(os.sched_getaffinity(0)))
    load = min(float(intensity_threads), cpus) / host * (0.25 if nice >= 10 else 1.0)
    return f"stress:cpu={min(1.0, load):.3f}"


def predict_background(kb: Any, devices: Any, model: str) -> dict[str, dict[str, Any]] | None:
    """Predicted background p99 per device and intensity from the profile pillar.

    ``None`` when the KB holds no interference model for an app (then the plan uses
    the direct measurement alone).
    """
    from edgewise.errors import EdgewiseError
    from edgewise.interference.predictor import Predictor
    from edgewise.retrain.profiler import candidate_intensities

    try:
        pred = Predictor(kb)
        out: dict[str, dict[str, Any]] = {}
        for d in devices:
            if d.background is None:
                continue
            app = f"{d.background.model}@{d.background.rate_rps:g}rps"
            out[d.name] = {}
            for threads, nice in candidate_intensities(d.cpus):
                lp = pred.predict(app, [training_stressor(threads, nice, d.cpus)])
                out[d.name][f"t{threads}n{nice}"] = {"p99": lp.p99, "source": lp.source}
        return out
    except (EdgewiseError, ImportError, KeyError, ValueError):
        return None


def compare_prediction(
    predicted: dict[str, dict[str, Any]] | None, profiles: dict[str, DeviceProfile]
) -> dict[str, Any]:
    """Predicted vs measured background p99 per device and intensity (or why not)."""
    if predicted is None:
        return {
            "source": "measured",
            "note": "no interference model in the KB for these apps: direct measurement only",
        }
    rows: dict[str, Any] = {}
    for name, by_label in predicted.items():
        for k in profiles[name].intensities if name in profiles else ():
            p = by_label.get(k.label)
            if p is not None:
                rows.setdefault(name, {})[k.label] = {
                    "predicted_p99_ms": p["p99"],
                    "measured_p99_ms": k.bg_latency_ms,
                }
    return {
        "source": "predictor, checked by measurement (the plan uses the measurement)",
        "rows": rows,
    }


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


def default_timeline_path() -> Path:
    """Where the killed run's per-device timeline goes unless the user says otherwise."""
    from edgewise.paths import home

    return home() / "results" / "retrain-timeline-failure.png"


def measured_rates(steps: list[dict[str, Any]]) -> dict[str, float]:
    """Per device, median compute throughput in training (share / forward+backward time)."""
    import numpy as np

    by: dict[str, list[float]] = {}
    for s in steps:
        if "t_fb" in s and s.get("share", 0) > 0 and s["t_fb"] > s["t0"]:
            by.setdefault(str(s["device"]), []).append(s["share"] / (s["t_fb"] - s["t0"]))
    return {d: float(np.median(v[1:] if len(v) > 2 else v)) for d, v in by.items()}


def final_shares(steps: list[dict[str, Any]]) -> dict[str, int]:
    """Shares of the last step of a run (after any online re-balancing)."""
    last = max((int(s["step"]) for s in steps), default=0)
    return {str(s["device"]): int(s["share"]) for s in steps if int(s["step"]) == last}


def run(
    devices_path: str | Path,
    seed: int = 0,
    model: str = "digits_cnn",
    data: str = "digits",
    epochs: int = DEFAULT_EPOCHS,
    kill_at_step: int | None = None,
    kill_device: str | None = None,
    drift: str = "rotation",
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    global_batch: int = DEFAULT_BATCH,
    steps: int | None = None,
    kb: Any = None,
    timeline_path: str | Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring).

    ``steps`` overrides ``epochs`` (steps = ceil(epochs · |drift train| / batch)).
    Our plan re-balances shares online (see :func:`edgewise.retrain.trainer.rebalance`);
    the baselines keep their static shares. With ``kill_at_step`` the killed run's
    per-device timeline is written to ``timeline_path`` (default
    :func:`default_timeline_path`). Every training run is recorded as a ``TrainingJob``
    in ``kb`` (default: the knowledge base of ``$EDGEWISE_HOME``), its checkpoints as
    ``Checkpoint`` rows.
    """
    from edgewise.retrain.controller import JobSpec, run_training
    from edgewise.retrain.devices import EmulatedPool
    from edgewise.retrain.profiler import profile_pool, profiles_to_json
    from edgewise.retrain.report import timeline_plot
    from edgewise.retrain.trainer import grad_check, load_task

    say = progress or (lambda _msg: None)
    pool_spec = load_devices(devices_path)
    from edgewise.kb import KnowledgeBase
    from edgewise.retrain import records

    c = make_constraints(model, global_batch)
    check_pool(pool_spec, {}, c, str(devices_path))
    work = Path(workdir or tempfile.mkdtemp(prefix="edgewise-bench-retrain-"))
    task = load_task(data, drift, seed)
    n_train = len(task.drift_train[1])
    steps_total = steps or max(1, math.ceil(epochs * n_train / c.global_batch))
    kb = kb if kb is not None else KnowledgeBase.open()
    profile_batch = max(32, c.global_batch // len(pool_spec.devices))
    say("training the deployed model on the base split")
    base = base_weights(model, data, drift, seed)
    acc_before = drift_accuracy(model, data, drift, seed, base)
    states = device_states(pool_spec)
    out: dict[str, Any] = {
        "devices": str(devices_path),
        "seed": seed,
        "model": model,
        "data": data,
        "epochs": steps_total * c.global_batch / n_train,
        "steps": steps_total,
        "global_batch": c.global_batch,
        "accuracy_before": acc_before,
    }
    with EmulatedPool(pool_spec.devices, work / "pool", seed=seed) as pool:
        pool.wait_background_ready()
        predicted = predict_background(kb, pool_spec.devices, model)
        say("profiling devices")
        profiles = profile_pool(
            pool, pool_spec.devices, model, data, drift, seed, batch=profile_batch, phase_s=3.0
        )
        check_pool(pool_spec, profiles, c, str(devices_path))
        key = records.pool_key(pool_spec.devices, model, data, profile_batch)
        records.save_profiles(kb, key, profiles)
        out["profiles"] = profiles_to_json(profiles)
        out["profile_batch"] = profile_batch
        out["background_prediction"] = compare_prediction(predicted, profiles)
        ours = plan_exact(states, profiles, c)
        out["plan"] = ours.to_dict()

        def job(name: str, balance: bool = False) -> JobSpec:
            return JobSpec(
                model,
                data,
                drift,
                seed,
                steps_total,
                work / name,
                init_weights=str(base),
                checkpoint_every=5,
                rebalance=balance,
            )

        def train(name: str, planner: Any, balance: bool = False, **kw: Any) -> Any:
            say(f"training: {name}")
            # ours re-balances shares online from measured compute times; the baselines
            # keep their static shares (that is what they are)
            spec = job(name, balance)
            job_id = records.start_job(
                kb,
                f"bench-{name}",
                model,
                {
                    "devices": str(devices_path),
                    "data": data,
                    "drift": drift,
                    "seed": seed,
                    "steps": steps_total,
                    "global_batch": c.global_batch,
                    "planner": name,
                    "workdir": str(spec.workdir),
                },
            )
            try:
                res = run_training(
                    pool,
                    states,
                    profiles,
                    c,
                    spec,
                    planner,
                    on_checkpoint=lambda st, path: records.record_checkpoint(kb, job_id, st, path),
                    **kw,
                )
            except BaseException:
                records.finish_job(kb, job_id, "failed", {})
                raise
            t0, t1 = res.t_first_step, res.t_end
            n, misses = 0, 0
            bg: dict[str, dict[str, float]] = {}
            for d in pool_spec.devices:
                if d.background is None or not pool.bg_log(d.name).exists():
                    continue
                s = summarise(read_log(pool.bg_log(d.name)), d.background.deadline_ms, t0, t1)
                n += int(s["n"])
                misses += int(s["misses"])
                p99s.setdefault(name, {})[d.name] = s["p99"]
                bg[d.name] = {
                    "p50_ms": s["p50"],
                    "p99_ms": s["p99"],
                    "deadline_ms": d.background.deadline_ms,
                    "miss_rate": s["miss_rate"],
                    "n": s["n"],
                }
            acc = drift_accuracy(model, data, drift, seed, res.final_weights)
            ratio, drifted = records.measured_drift(res.steps, res.plans[0])
            records.finish_job(
                kb,
                job_id,
                "done",
                records.job_metrics(
                    res.steps,
                    res.failures,
                    accuracy_before=acc_before,
                    accuracy_after=acc,
                    background=bg,
                    plan=res.plans[0],
                    replans=res.replans,
                    extra={"step_time_over_plan": ratio},
                ),
            )
            if name == "ours" and drifted:
                records.save_profiles(
                    kb, key, profiles, stale=True, metrics={"step_time_over_plan": ratio}
                )
            res.accuracy = acc
            res.step_time_over_plan = ratio
            return res, (misses / n if n else 0.0)

        p99s: dict[str, dict[str, float]] = {}
        r_ours, miss_ours = train("ours", plan_exact, balance=True)
        r_eq, miss_eq = train("equal", plan_equal)
        r_prop, miss_prop = train("proportional", plan_proportional)
        eq_plan = plan_equal(states, profiles, c)
        try:
            feasible_eq = plan_equal(states, profiles, c, respect_deadlines=True)
            out["predicted_speedup_vs_feasible_equal"] = feasible_eq.step_time_s / ours.step_time_s
        except InfeasibleError:
            feasible_eq = None
            out["predicted_speedup_vs_feasible_equal"] = None

        def knobs(p: Any) -> dict[str, tuple[int, int, int]]:
            return {
                n: (b, p.intensities[n].threads, p.intensities[n].nice) for n, b in p.shares.items()
            }

        if feasible_eq is not None and knobs(feasible_eq) != knobs(eq_plan):
            r_feq, miss_feq = train(
                "equal-feasible",
                lambda d, p, cc: plan_equal(d, p, cc, respect_deadlines=True),
            )
            out.update(
                time_equal_feasible_s=r_feq.train_time_s,
                speedup_vs_feasible_equal=r_feq.train_time_s / r_ours.train_time_s,
                equal_feasible_deadline_miss_rate=miss_feq,
            )
        elif feasible_eq is not None:
            # the equal split keeps every deadline by itself: it is the feasible one
            out.update(
                time_equal_feasible_s=r_eq.train_time_s,
                speedup_vs_feasible_equal=r_eq.train_time_s / r_ours.train_time_s,
                equal_feasible_deadline_miss_rate=miss_eq,
            )
        else:
            out["speedup_vs_feasible_equal"] = None
        bound_sps = sum(feasible_throughput(states, profiles, c).values())
        rates_ours = measured_rates(r_ours.steps)
        work_samples = steps_total * c.global_batch
        out.update(
            time_s=r_ours.train_time_s,
            time_equal_s=r_eq.train_time_s,
            time_proportional_s=r_prop.train_time_s,
            speedup_vs_equal=r_eq.train_time_s / r_ours.train_time_s,
            ratio_to_bound=r_ours.train_time_s / (work_samples / bound_sps) if bound_sps else None,
            # the same ratio against the throughputs our devices showed during our run
            # (median share / compute time per device): no profile error in it, only
            # communication, per-step noise and imbalance
            ratio_to_bound_in_run=(
                r_ours.train_time_s / (work_samples / sum(rates_ours.values()))
                if rates_ours
                else None
            ),
            deadline_miss_rate=miss_ours,
            baseline_deadline_miss_rate=miss_prop,
            equal_deadline_miss_rate=miss_eq,
            background_p99_ms=p99s,
            deadlines_ms={
                d.name: d.background.deadline_ms for d in pool_spec.devices if d.background
            },
            accuracy_after=r_ours.accuracy,
            accuracy_after_equal=r_eq.accuracy,
            step_time_over_plan=r_ours.step_time_over_plan,
            train_throughput_sps={
                "ours": rates_ours,
                "equal": measured_rates(r_eq.steps),
            },
            shares_final={"ours": final_shares(r_ours.steps)},
            bound_throughput_sps=bound_sps,
            nice={
                name: {n: k.nice for n, k in r.plans[0].intensities.items()}
                for name, r in (("ours", r_ours), ("equal", r_eq), ("proportional", r_prop))
            },
            plans={
                "equal": r_eq.plans[0].to_dict()["shares"],
                "proportional": r_prop.plans[0].to_dict()["shares"],
            },
        )
        if kill_at_step is not None:
            victim = kill_device
            if victim in (None, "auto"):
                victim = ours.devices[-1] if len(ours.devices) > 1 else None
            if victim is None:
                raise InfeasibleError("--kill-device auto needs a plan with two devices or more")
            if victim not in ours.shares:
                raise SpecError(
                    f"--kill-device {victim}: not a device of the plan ({', '.join(ours.devices)})"
                )
            r_kill, _ = train(
                "killed", plan_exact, balance=True, kill_at_step=kill_at_step, kill_device=victim
            )
            plot_path = Path(timeline_path) if timeline_path else default_timeline_path()
            plot_path.parent.mkdir(parents=True, exist_ok=True)
            plot = timeline_plot(
                r_kill.steps,
                r_kill.failures,
                plot_path,
                f"re-training with {victim} killed at step {kill_at_step}",
            )
            out.update(
                killed_device=victim,
                recovery_s=r_kill.recovery_s,
                steps_lost=r_kill.steps_lost,
                checkpoint_every=5,
                accuracy_after_recovered=r_kill.accuracy,
                replan=r_kill.plans[-1].to_dict() if len(r_kill.plans) > 1 else None,
                timeline_plot=str(plot),
            )
    say("checking weighted gradients against single-process training")
    out["grad_max_abs_err"] = grad_check(list(ours.shares.values()), seed=seed)
    out["workdir"] = str(work)
    return out


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``retrain`` subcommand to the ``edgewise bench`` group."""

    @bench_app.command("retrain")
    def retrain_cmd(
        devices: Path = typer.Option(..., "--devices", help="devices YAML"),
        seed: int = typer.Option(0, "--seed"),
        model: str = typer.Option("digits_cnn", "--model"),
        data: str = typer.Option("digits", "--data"),
        epochs: int = typer.Option(DEFAULT_EPOCHS, "--epochs", min=1),
        steps: int | None = typer.Option(None, "--steps", min=1, help="overrides --epochs"),
        global_batch: int = typer.Option(DEFAULT_BATCH, "--global-batch", min=1),
        kill_at_step: int | None = typer.Option(None, "--kill-at-step", min=1),
        kill_device: str | None = typer.Option(None, "--kill-device", help="NAME or auto"),
        as_json: bool = typer.Option(False, "--json", help="print the figures as JSON"),
        timeline: Path | None = typer.Option(
            None,
            "--timeline",
            help="PNG of the killed run's per-device timeline "
            "(default: $EDGEWISE_HOME/results/retrain-timeline-failure.png)",
        ),
    ) -> None:
        """Our retrain plan vs equal / proportional / fastest baselines on an emulated pool."""
        from rich.console import Console

        err = Console(stderr=True)
        with err.status("benchmark starting") as status:
            res = run(
                devices,
                seed,
                model,
                data,
                epochs,
                kill_at_step,
                kill_device,
                progress=lambda m: status.update(m),
                global_batch=global_batch,
                steps=steps,
                timeline_path=timeline,
            )
        if as_json:
            typer.echo(json.dumps(res, indent=2, default=str))
        else:
            for k in (
                "speedup_vs_equal",
                "ratio_to_bound",
                "ratio_to_bound_in_run",
                "deadline_miss_rate",
                "baseline_deadline_miss_rate",
                "accuracy_before",
                "accuracy_after",
                "grad_max_abs_err",
                "speedup_vs_feasible_equal",
                "recovery_s",
                "steps_lost",
                "timeline_plot",
            ):
                if k in res:
                    typer.echo(f"{k}: {res[k]}")
