"""``edgewise demo``: the three pillars end to end on embedded defaults, in minutes.

1. profile: a short interference campaign for ``digits_cnn`` (the app that runs beside the
   retraining job and behind the service), with its error on held-out stress mixes;
2. serve: forecast the bike-share trace, derate the capacity probed through the live HTTP
   path by the predicted slowdown next to a neighbour (the plan a co-location would need),
   and replay a compressed day live on Ray Serve with our autoscaler and the HPA baseline;
3. retrain: update the model on three emulated devices with background apps, kill one
   device mid-run, recover;
4. a one-screen summary, and everything in the knowledge base for ``edgewise report``.

Orchestration only: every step calls the same functions as the CLI commands.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

APP = "digits_cnn"
APP_RATE = 50.0
NEIGHBOUR = "stress:cpu=0.5"  # a co-located job that keeps half a core busy
SLO_MS = 100.0
PERCENTILE = 99.0
#: The demand at which the summary compares plans with and without the prediction:
#: what this many replicas carry at their capacity alone.
REFERENCE_REPLICAS = 4


@dataclass
class DemoSummary:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, pillar: str, what: str, value: str) -> None:
        self.rows.append((pillar, what, value))


def _step(console: Console, title: str) -> None:
    console.rule(f"[bold]{title}")


def run_profile(kb: Any, console: Console, summary: DemoSummary, seed: int) -> None:
    """A short interference campaign for :data:`APP` with its held-out error."""
    from edgewise.api.profile import benchmark_interference

    with console.status("profiling") as status:
        out = benchmark_interference(
            apps=[APP],
            budget=8,
            holdout=3,
            seed=seed,
            rate_rps=APP_RATE,
            seconds=3.0,
            warmup_s=0.5,
            repeats=2,
            solo_every=4,
            lhs_baseline=False,
            foreign_threshold=5.0,
            surrogates=("gp", "linear"),
            kb=kb,
            progress=lambda phase, done, total: status.update(f"profiling: {phase}"),
        )
    summary.add("profile", f"{APP}: runs in the campaign", str(out.runs_per_app))
    summary.add("profile", "held-out median APE of p50 (%)", f"{out.median_ape:.1f}")
    summary.add("profile", "run-to-run noise CV of p50 (%)", f"{out.noise_cv_p50:.1f}")


def predicted_slowdown(kb: Any) -> tuple[float, str]:
    """p50 next to the neighbour over p50 alone, from the profile pillar's model."""
    from edgewise.api.profile import predict
    from edgewise.interference.target import workload_name

    name = workload_name(APP, APP_RATE)
    alone = predict(app=name, kb=kb).latency
    beside = predict(app=name, neighbours=[NEIGHBOUR], kb=kb).latency
    return max(1.0, beside.p50 / alone.p50), beside.source


def run_serve(kb: Any, console: Console, summary: DemoSummary, seed: int, slowdown: float) -> None:
    from edgewise.forecast import make_forecaster
    from edgewise.kb import models as m
    from edgewise.serving.capacity import capacity_rps, latency_percentile
    from edgewise.serving.live import DEFAULT_FLAVOR, replicas_that_fit
    from edgewise.serving.policies import FlavorOption
    from edgewise.serving.policies.base import service_quantiles
    from edgewise.serving.replay import plot_replay, replay_policy, select_segment
    from edgewise.serving.runtime import RaySession, probe_capacity
    from edgewise.workloads.traces import load_trace

    series = load_trace("bikeshare")
    hourly = series.to_numpy(dtype=float)
    train, actual = hourly[-24 * 7 * 8 - 24 : -24], hourly[-24:]
    t0 = time.perf_counter()
    fc = make_forecaster("auto", (24, 168)).forecast(train, 24, level=(90,))
    fit_ms = (time.perf_counter() - t0) * 1000
    naive = train[-168:-144]
    mae, mae_naive = np.abs(fc.mean - actual).mean(), np.abs(naive - actual).mean()
    values = fc.to_json() | {"actual": actual.tolist(), "history": train[-24 * 7 :].tolist()}
    with kb.transaction() as s:
        s.add(
            m.Forecast(
                series="bikeshare",
                method="auto",
                origin=str(series.index[-24]),
                horizon=24,
                values=values,
            )
        )
    summary.add("serve", "forecast MAE / weekly naive, last day", f"{mae / mae_naive:.2f}")
    summary.add("serve", "forecast fit + predict (ms)", f"{fit_ms:.0f}")

    flavor = DEFAULT_FLAVOR
    n_max = replicas_that_fit(flavor)
    with RaySession():
        cap = probe_capacity(
            APP,
            flavor,
            slo_ms=SLO_MS,
            percentile=PERCENTILE,
            max_replicas=n_max,
            port=18500,
            n=150,
            seed=seed,
        )
        option = cap.option
        derated_rps = capacity_rps(cap.service_ms * slowdown, SLO_MS, PERCENTILE, seed=seed)
        if derated_rps <= 0:
            summary.add(
                "serve",
                "prediction: SLO unreachable next to the neighbour",
                f"planned with x1.00 instead of x{slowdown:.2f}",
            )
            slowdown, derated_rps = 1.0, option.capacity_rps
        derated = FlavorOption(
            name=option.name,
            cpus=option.cpus,
            capacity_rps=derated_rps,
            price_per_hour=option.price_per_hour,
            max_replicas=option.max_replicas,
            max_cpus=option.max_cpus,
            service_ms_mean=option.service_ms_mean * slowdown,
            service_ms_quantiles=service_quantiles(cap.service_ms * slowdown),
        )
        # Leave room for the HTTP proxy and the load generator on a small host.
        peak = 0.5 * derated_rps * n_max
        segment = select_segment(series, None, 24.0, 1440.0, peak)
        summary.add(
            "serve",
            "capacity per replica alone / next to neighbour (rps)",
            f"{option.capacity_rps:.1f} / {derated_rps:.1f}",
        )
        # What the prediction changes, at one demand fixed without it: the load that
        # REFERENCE_REPLICAS replicas carry at their capacity alone.
        ref_rps = REFERENCE_REPLICAS * option.capacity_rps
        # (rounded first: with no slowdown the ratio is 4 up to float noise, not 4.0000001)
        beside_n = math.ceil(round(ref_rps / max(derated_rps, 1e-9), 6))
        # without the prediction each replica gets its capacity alone, next to the neighbour
        p99_blind = latency_percentile(
            cap.service_ms * slowdown, option.capacity_rps, PERCENTILE, seed=seed
        )
        blind = "overloaded" if not math.isfinite(p99_blind) else f"p99 {p99_blind:.0f} ms"
        summary.add(
            "serve",
            f"replicas for {ref_rps:.0f} rps without / with the prediction",
            f"{REFERENCE_REPLICAS} / {beside_n} (without: {blind} next to the neighbour, "
            f"SLO {SLO_MS:g} ms)",
        )
        results = []
        for policy in ("edgewise", "hpa"):
            console.print(f"replaying one day of bike-share at x1440 with {policy} ...")
            res = replay_policy(
                segment,
                policy,
                APP,
                flavor,
                derated,
                slo_ms=SLO_MS,
                percentile=PERCENTILE,
                seed=seed,
                kb=kb,
                port=18500,
                inputs={"trace": "bikeshare", "hours": 24.0},
            )
            results.append(res)
            summary.add(
                "serve",
                f"{policy}: SLO attainment / cost",
                f"{100 * res.slo_attainment:.2f}% / {res.cost:.4f}",
            )
    plot_replay(results, SLO_MS, Path(os.environ.get("EDGEWISE_HOME", ".")) / "demo-replay.png")


def run_retrain(console: Console, summary: DemoSummary, seed: int) -> None:
    """Re-train on three emulated devices and kill one of them mid-run."""
    from edgewise.api.retrain import retrain

    devices = Path(__file__).resolve().parents[2] / "examples" / "devices-hetero.yaml"
    if not devices.exists():
        from edgewise.paths import data_file

        devices = data_file("devices-hetero.yaml")
    with console.status("re-training") as status:
        result = retrain(
            devices=devices,
            steps=24,
            global_batch=512,
            kill_at_step=10,
            kill_device="pi-c",
            seed=seed,
            progress=lambda phase, done, total: status.update(f"re-training: {phase}"),
        )
    job = result.job
    if job is None:  # only a drift check that found no drift returns no job
        summary.add("retrain", "drift check", "no update needed")
        return
    summary.add(
        "retrain",
        "accuracy on drifted split before / after",
        f"{job.accuracy_before:.3f} / {job.accuracy_after:.3f}",
    )
    if job.recovery_s is not None:
        summary.add(
            "retrain", "device pi-c killed at step 10: recovery (s)", f"{job.recovery_s:.1f}"
        )
    bg = job.background
    kept = sum(1 for v in bg.values() if v.p99_ms <= v.deadline_ms)
    summary.add("retrain", "background apps within deadline (p99)", f"{kept} / {len(bg)}")


def run_demo(seed: int = 0, console: Console | None = None) -> DemoSummary:
    from edgewise.kb import KnowledgeBase

    console = console or Console(stderr=True)
    kb = KnowledgeBase.open()
    summary = DemoSummary()
    t = time.perf_counter()
    _step(console, "1/3 profile: how slow does digits_cnn get next to other work?")
    run_profile(kb, console, summary, seed)
    slowdown, source = predicted_slowdown(kb)
    console.print(
        f"predicted p50 slowdown of {APP} next to {NEIGHBOUR}: x{slowdown:.2f} ({source})"
    )
    summary.add(
        "profile", f"predicted p50 slowdown next to {NEIGHBOUR} ({source})", f"x{slowdown:.2f}"
    )
    summary.timings["profile"] = time.perf_counter() - t
    t = time.perf_counter()
    _step(console, "2/3 serve: forecast, plan, replay a day live on Ray Serve")
    run_serve(kb, console, summary, seed, slowdown)
    summary.timings["serve"] = time.perf_counter() - t
    t = time.perf_counter()
    _step(console, "3/3 retrain: three emulated devices, one dies mid-run")
    run_retrain(console, summary, seed)
    summary.timings["retrain"] = time.perf_counter() - t
    return summary


def print_summary(summary: DemoSummary) -> None:
    table = Table(title="edgewise demo")
    table.add_column("pillar")
    table.add_column("what")
    table.add_column("value", justify="right")
    for row in summary.rows:
        table.add_row(*row)
    Console().print(table)
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in summary.timings.items())
    Console().print(f"time: {spent}; `edgewise report` renders it all from the knowledge base.")
