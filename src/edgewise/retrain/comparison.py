"""Our plan against the baselines on one emulated pool: the retrain benchmark's runs.

Starts the pool (cgroups + background apps), profiles it, then re-trains the deployed
model on the drifted split with our plan (re-balancing shares online), the equal split,
the interference-oblivious proportional split, the equal split that keeps every
deadline when it differs from the plain one, and, with a kill step, once more with a
device killed through :class:`~edgewise.retrain.faults.KillDeviceAtStep`. Every run is
recorded as a ``TrainingJob`` in the knowledge base. The figures are computed from the
runs' records by :meth:`RetrainBenchmark.as_dict`.

The profile pillar's prediction of the background latency comes in as data
(``predicted``): this pillar does not import the interference pillar.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgewise.config import DevicePool
from edgewise.errors import InfeasibleError, SpecError
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    RetrainConstraints,
    RetrainPlan,
    feasible_throughput,
    plan_equal,
    plan_exact,
    plan_proportional,
)
from edgewise.retrain.controller import JobSpec, Launcher, Planner, RunResult
from edgewise.retrain.jobs import (
    background_summaries,
    base_weights,
    check_pool,
    device_states,
    drift_accuracy,
    final_shares,
    make_constraints,
    measured_rates,
    steps_for,
)

CHECKPOINT_EVERY = 5
Say = Callable[[str], None]


def default_timeline_path() -> Path:
    """Where the killed run's per-device timeline goes unless the user says otherwise."""
    from edgewise.paths import home

    return home() / "results" / "retrain-timeline-failure.png"


@dataclass(frozen=True)
class PlannerRun:
    """One training run of the benchmark: its result and what it did to the apps."""

    name: str
    result: RunResult
    accuracy: float
    step_time_over_plan: float
    miss_rate: float
    p99_ms: dict[str, float]


@dataclass(frozen=True)
class KilledRun:
    """The run with a device killed mid-way, and its timeline plot."""

    device: str
    at_step: int
    run: PlannerRun
    timeline_plot: Path


@dataclass(frozen=True)
class RetrainBenchmark:
    """Every run of the benchmark with the setup they share (see :meth:`as_dict`)."""

    devices: str
    seed: int
    model: str
    data: str
    epochs: float
    steps: int
    global_batch: int
    accuracy_before: float
    profiles: dict[str, DeviceProfile]
    profile_batch: int
    background_prediction: dict[str, Any]
    plan: RetrainPlan
    runs: dict[str, PlannerRun]
    """By planner: ``ours``, ``equal``, ``proportional`` and maybe ``equal-feasible``."""
    predicted_speedup_vs_feasible_equal: float | None
    feasible_equal: str | None
    """The run that is the equal split keeping every deadline (``None``: none can)."""
    bound_throughput_sps: float
    deadlines_ms: dict[str, float]
    killed: KilledRun | None
    grad_max_abs_err: float
    workdir: Path

    def as_dict(self) -> dict[str, Any]:
        """The ``edgewise bench retrain --json`` figures."""
        from edgewise.retrain.profiler import profiles_to_json

        out: dict[str, Any] = {
            "devices": self.devices,
            "seed": self.seed,
            "model": self.model,
            "data": self.data,
            "epochs": self.epochs,
            "steps": self.steps,
            "global_batch": self.global_batch,
            "accuracy_before": self.accuracy_before,
            "profiles": profiles_to_json(self.profiles),
            "profile_batch": self.profile_batch,
            "background_prediction": self.background_prediction,
            "plan": self.plan.to_dict(),
            "predicted_speedup_vs_feasible_equal": self.predicted_speedup_vs_feasible_equal,
        }
        out.update(self._feasible_equal_figures())
        out.update(self._comparison_figures())
        if self.killed is not None:
            k = self.killed
            res = k.run.result
            out.update(
                killed_device=k.device,
                recovery_s=res.recovery_s,
                steps_lost=res.steps_lost,
                checkpoint_every=CHECKPOINT_EVERY,
                accuracy_after_recovered=k.run.accuracy,
                replan=res.plans[-1].to_dict() if len(res.plans) > 1 else None,
                timeline_plot=str(k.timeline_plot),
            )
        out["grad_max_abs_err"] = self.grad_max_abs_err
        out["workdir"] = str(self.workdir)
        return out

    def _feasible_equal_figures(self) -> dict[str, Any]:
        if self.feasible_equal is None:
            return {"speedup_vs_feasible_equal": None}
        feq, ours = self.runs[self.feasible_equal], self.runs["ours"]
        return {
            "time_equal_feasible_s": feq.result.train_time_s,
            "speedup_vs_feasible_equal": feq.result.train_time_s / ours.result.train_time_s,
            "equal_feasible_deadline_miss_rate": feq.miss_rate,
        }

    def _comparison_figures(self) -> dict[str, Any]:
        ours, eq, prop = (self.runs[n] for n in ("ours", "equal", "proportional"))
        rates_ours = measured_rates(ours.result.steps)
        work_samples = self.steps * self.global_batch
        bound = self.bound_throughput_sps
        every = [*self.runs.values(), *([self.killed.run] if self.killed else [])]
        return {
            "time_s": ours.result.train_time_s,
            "time_equal_s": eq.result.train_time_s,
            "time_proportional_s": prop.result.train_time_s,
            "speedup_vs_equal": eq.result.train_time_s / ours.result.train_time_s,
            "ratio_to_bound": ours.result.train_time_s / (work_samples / bound) if bound else None,
            # the same ratio against the throughputs our devices showed during our run
            # (median share / compute time per device): no profile error in it, only
            # communication, per-step noise and imbalance
            "ratio_to_bound_in_run": (
                ours.result.train_time_s / (work_samples / sum(rates_ours.values()))
                if rates_ours
                else None
            ),
            "deadline_miss_rate": ours.miss_rate,
            "baseline_deadline_miss_rate": prop.miss_rate,
            "equal_deadline_miss_rate": eq.miss_rate,
            "background_p99_ms": {r.name: r.p99_ms for r in every if r.p99_ms},
            "deadlines_ms": self.deadlines_ms,
            "accuracy_after": ours.accuracy,
            "accuracy_after_equal": eq.accuracy,
            "step_time_over_plan": ours.step_time_over_plan,
            "train_throughput_sps": {"ours": rates_ours, "equal": measured_rates(eq.result.steps)},
            "shares_final": {"ours": final_shares(ours.result.steps)},
            "bound_throughput_sps": bound,
            "nice": {
                r.name: {n: k.nice for n, k in r.result.plans[0].intensities.items()}
                for r in (ours, eq, prop)
            },
            "plans": {
                "equal": eq.result.plans[0].to_dict()["shares"],
                "proportional": prop.result.plans[0].to_dict()["shares"],
            },
        }


@dataclass
class _Bench:
    """What every run of one benchmark shares: the pool, its profiles, the job's inputs."""

    spec: DevicePool
    source: str
    pool: Any
    kb: Any
    model: str
    data: str
    drift: str
    seed: int
    steps: int
    constraints: RetrainConstraints
    states: list[DeviceState]
    profiles: dict[str, DeviceProfile]
    base: Path
    accuracy_before: float
    work: Path
    pool_key: str
    say: Say

    def train(
        self,
        name: str,
        planner: Planner,
        balance: bool = False,
        launcher: Launcher | None = None,
    ) -> PlannerRun:
        """One recorded training run with ``planner`` (on ``launcher``, default the pool)."""
        from edgewise.retrain import records
        from edgewise.retrain.controller import run_training

        self.say(f"training: {name}")
        # ours re-balances shares online from measured compute times; the baselines
        # keep their static shares (that is what they are)
        c = self.constraints
        spec = JobSpec(
            self.model,
            self.data,
            self.drift,
            self.seed,
            self.steps,
            self.work / name,
            init_weights=str(self.base),
            checkpoint_every=CHECKPOINT_EVERY,
            rebalance=balance,
        )
        config = {
            "devices": self.source,
            "data": self.data,
            "drift": self.drift,
            "seed": self.seed,
            "steps": self.steps,
            "global_batch": c.global_batch,
            "planner": name,
            "workdir": str(spec.workdir),
        }
        job_id = records.start_job(self.kb, f"bench-{name}", self.model, config)
        try:
            res = run_training(
                launcher or self.pool,
                self.states,
                self.profiles,
                c,
                spec,
                planner,
                on_checkpoint=lambda st, path: records.record_checkpoint(self.kb, job_id, st, path),
            )
        except BaseException:
            records.finish_job(self.kb, job_id, "failed", {})
            raise
        return self._score(name, job_id, res)

    def _score(self, name: str, job_id: int, res: RunResult) -> PlannerRun:
        """Accuracy and background figures of a run; record them as the job's metrics."""
        from edgewise.retrain import records

        bg = background_summaries(
            self.spec.devices, self.pool.bg_log, res.t_first_step, res.t_end, logged_only=True
        )
        n = sum(b.n for b in bg.values())
        misses = sum(b.misses for b in bg.values())
        acc = drift_accuracy(self.model, self.data, self.drift, self.seed, res.final_weights)
        ratio, drifted = records.measured_drift(res.steps, res.plans[0])
        records.finish_job(
            self.kb,
            job_id,
            "done",
            records.job_metrics(
                res.steps,
                res.failures,
                accuracy_before=self.accuracy_before,
                accuracy_after=acc,
                background={d: b.as_dict(with_count=True) for d, b in bg.items()},
                plan=res.plans[0],
                replans=res.replans,
                extra={"step_time_over_plan": ratio},
            ),
        )
        if name == "ours" and drifted:
            records.save_profiles(
                self.kb,
                self.pool_key,
                self.profiles,
                stale=True,
                metrics={"step_time_over_plan": ratio},
            )
        res.accuracy = acc
        res.step_time_over_plan = ratio
        p99 = {d: b.p99_ms for d, b in bg.items()}
        return PlannerRun(name, res, acc, ratio, misses / n if n else 0.0, p99)


def compare_plans(
    spec: DevicePool,
    source: str,
    *,
    model: str,
    data: str,
    drift: str,
    seed: int,
    epochs: int,
    steps: int | None,
    global_batch: int,
    kill_at_step: int | None,
    kill_device: str | None,
    workdir: Path | None,
    kb: Any,
    timeline_path: str | Path | None,
    predict: Callable[[DevicePool], dict[str, dict[str, Any]] | None],
    say: Say,
) -> RetrainBenchmark:
    """Run the benchmark on the pool ``spec`` (read from ``source``); see the module doc.
    ``predict(spec)`` is the profile pillar's background prediction per device and
    intensity (``None`` when it has none), put beside the measured profiles by
    :func:`compare_prediction`.
    """
    from edgewise.retrain.devices import EmulatedPool
    from edgewise.retrain.trainer import grad_check, load_task

    c = make_constraints(model, global_batch)
    check_pool(spec, {}, c, source)
    work = Path(workdir or tempfile.mkdtemp(prefix="edgewise-bench-retrain-"))
    n_train = len(load_task(data, drift, seed).drift_train[1])
    steps_total = steps or steps_for(epochs, n_train, c.global_batch)
    profile_batch = max(32, c.global_batch // len(spec.devices))
    say("training the deployed model on the base split")
    base = base_weights(model, data, drift, seed)
    acc_before = drift_accuracy(model, data, drift, seed, base)
    with EmulatedPool(spec.devices, work / "pool", seed=seed) as pool:
        pool.wait_background_ready()
        predicted = predict(spec)
        say("profiling devices")
        profiles, key = _measure_profiles(
            pool, spec, source, kb, c, model, data, drift, seed, profile_batch
        )
        bench = _Bench(
            spec,
            source,
            pool,
            kb,
            model,
            data,
            drift,
            seed,
            steps_total,
            c,
            device_states(spec),
            profiles,
            base,
            acc_before,
            work,
            key,
            say,
        )
        ours = plan_exact(bench.states, profiles, c)
        runs = {
            name: bench.train(name, planner, balance=name == "ours")
            for name, planner in (
                ("ours", plan_exact),
                ("equal", plan_equal),
                ("proportional", plan_proportional),
            )
        }
        feasible, predicted_speedup = _feasible_equal(bench, ours, runs)
        killed = (
            _killed_run(bench, ours, kill_at_step, kill_device, timeline_path)
            if kill_at_step is not None
            else None
        )
    say("checking weighted gradients against single-process training")
    return RetrainBenchmark(
        devices=source,
        seed=seed,
        model=model,
        data=data,
        epochs=steps_total * c.global_batch / n_train,
        steps=steps_total,
        global_batch=c.global_batch,
        accuracy_before=acc_before,
        profiles=profiles,
        profile_batch=profile_batch,
        background_prediction=compare_prediction(predicted, profiles),
        plan=ours,
        runs=runs,
        predicted_speedup_vs_feasible_equal=predicted_speedup,
        feasible_equal=feasible,
        bound_throughput_sps=sum(feasible_throughput(bench.states, profiles, c).values()),
        deadlines_ms={d.name: d.background.deadline_ms for d in spec.devices if d.background},
        killed=killed,
        grad_max_abs_err=grad_check(list(ours.shares.values()), seed=seed),
        workdir=work,
    )


def _measure_profiles(
    pool: Any,
    spec: DevicePool,
    source: str,
    kb: Any,
    c: RetrainConstraints,
    model: str,
    data: str,
    drift: str,
    seed: int,
    batch: int,
) -> tuple[dict[str, DeviceProfile], str]:
    """Profile every device of the pool, check it, store the profiles under the pool's key."""
    from edgewise.retrain import records
    from edgewise.retrain.profiler import profile_pool

    profiles = profile_pool(pool, spec.devices, model, data, drift, seed, batch=batch, phase_s=3.0)
    check_pool(spec, profiles, c, source)
    key = records.pool_key(spec.devices, model, data, batch)
    records.save_profiles(kb, key, profiles)
    return profiles, key


def _knobs(p: RetrainPlan) -> dict[str, tuple[int, int, int]]:
    return {n: (b, p.intensities[n].threads, p.intensities[n].nice) for n, b in p.shares.items()}


def _feasible_equal(
    bench: _Bench, ours: RetrainPlan, runs: dict[str, PlannerRun]
) -> tuple[str | None, float | None]:
    """The run that is the deadline-keeping equal split (trained here when it differs)."""
    s, p, c = bench.states, bench.profiles, bench.constraints
    try:
        feasible_eq = plan_equal(s, p, c, respect_deadlines=True)
    except InfeasibleError:
        return None, None
    predicted = feasible_eq.step_time_s / ours.step_time_s
    if _knobs(feasible_eq) == _knobs(plan_equal(s, p, c)):
        # the equal split keeps every deadline by itself: it is the feasible one
        return "equal", predicted

    def feasible_equal(
        d: Sequence[DeviceState], pr: Mapping[str, DeviceProfile], cc: RetrainConstraints
    ) -> RetrainPlan:
        return plan_equal(d, pr, cc, respect_deadlines=True)

    runs["equal-feasible"] = bench.train("equal-feasible", feasible_equal)
    return "equal-feasible", predicted


def _killed_run(
    bench: _Bench,
    ours: RetrainPlan,
    at_step: int,
    device: str | None,
    timeline_path: str | Path | None,
) -> KilledRun:
    """Our plan once more with ``device`` (``auto``: our plan's last) killed at a step."""
    from edgewise.retrain.faults import KillDeviceAtStep
    from edgewise.retrain.report import timeline_plot

    victim = device
    if victim in (None, "auto"):
        victim = ours.devices[-1] if len(ours.devices) > 1 else None
    if victim is None:
        raise InfeasibleError("--kill-device auto needs a plan with two devices or more")
    if victim not in ours.shares:
        raise SpecError(
            f"--kill-device {victim}: not a device of the plan ({', '.join(ours.devices)})"
        )
    run = bench.train(
        "killed", plan_exact, balance=True, launcher=KillDeviceAtStep(bench.pool, at_step, victim)
    )
    plot_path = Path(timeline_path) if timeline_path else default_timeline_path()
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot = timeline_plot(
        run.result.steps,
        run.result.failures,
        plot_path,
        f"re-training with {victim} killed at step {at_step}",
    )
    return KilledRun(victim, at_step, run, plot)


def compare_prediction(
    predicted: dict[str, dict[str, Any]] | None, profiles: Mapping[str, DeviceProfile]
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
