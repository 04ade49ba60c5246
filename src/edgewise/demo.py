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

from rich.console import Console
from rich.table import Table

APP = "digits_cnn"
APP_RATE = 50.0
NEIGHBOUR = "stress:cpu=0.5"  # a co-located job that keeps half a core busy
SLO_MS = 100.0
PERCENTILE = 99.0
#: Trace seconds per wall second of the live day (a day in a minute), and the share of
#: the host's planned capacity its peak asks for (room for the proxy and load generator).
LIVE_SPEEDUP = 1440.0
PEAK_FRACTION = 0.5
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
    from edgewise.api.colocation import predicted_slowdown as predict_slowdown
    from edgewise.interference.target import workload_name

    got = predict_slowdown(app=workload_name(APP, APP_RATE), neighbours=[NEIGHBOUR], kb=kb)
    return got.factor, got.source


def run_forecast(kb: Any, summary: DemoSummary) -> None:
    """Forecast the last day of bike-share from the eight weeks before it."""
    from edgewise.api.forecast import forecast

    fc = forecast(
        trace="bikeshare", seasons=(24, 168), holdout=24, train=24 * 7 * 8, store=True, kb=kb.url
    )
    ratio = fc.mae_ratio
    summary.add(
        "serve",
        "forecast MAE / weekly naive, last day",
        "n/a" if ratio is None else f"{ratio:.2f}",
    )
    summary.add("serve", "forecast fit + predict (ms)", f"{fc.fit_ms:.0f}")


def run_serve(kb: Any, console: Console, summary: DemoSummary, seed: int) -> None:
    """Replay a compressed day live, planned with the capacity next to the neighbour."""
    from edgewise.api.replay import replay
    from edgewise.serving.replay import plot_replay
    from edgewise.telemetry.contention import ContentionMeter

    run_forecast(kb, summary)
    with ContentionMeter() as host:
        outcome = replay(
            trace="bikeshare",
            hours=24.0,
            speedup=LIVE_SPEEDUP,
            policies=("edgewise", "hpa"),
            slo_ms=SLO_MS,
            percentile=PERCENTILE,
            model=APP,
            port=18500,
            seed=seed,
            neighbours=[NEIGHBOUR],
            peak_fraction=PEAK_FRACTION,
            kb=kb.url,
            progress=lambda phase, _done, _total: console.print(phase),
        )
    coloc = outcome.colocation
    if coloc is not None:
        _summarise_colocation(summary, coloc)
    assert host.result is not None
    busy = host.result.too_busy()
    if busy is not None:
        summary.add(
            "serve",
            "live day: host too busy to compare policies",
            f"{busy}; rerun on a quieter host",
        )
    for run in outcome.results:
        value = f"{100 * run.slo_attainment:.2f}% / {run.cost:.4f}"
        summary.add(
            "serve",
            f"{run.policy}: SLO attainment / cost",
            value if busy is None else f"({value}, not comparable)",
        )
    plot_replay(
        outcome.results, SLO_MS, Path(os.environ.get("EDGEWISE_HOME", ".")) / "demo-replay.png"
    )


def _summarise_colocation(summary: DemoSummary, coloc: Any) -> None:
    """What the profile pillar's prediction changes in the plan."""
    if not coloc.reachable:
        summary.add(
            "serve",
            "prediction: SLO unreachable next to the neighbour",
            "planned with x1.00 instead",
        )
    summary.add(
        "serve",
        "capacity per replica alone / next to neighbour (rps)",
        f"{coloc.alone.capacity_rps:.1f} / {coloc.colocated.capacity_rps:.1f}",
    )
    # What the prediction changes, at one demand fixed without it: the load that
    # REFERENCE_REPLICAS replicas carry at their capacity alone.
    ref_rps = REFERENCE_REPLICAS * coloc.alone.capacity_rps
    _, beside_n = coloc.replicas_for(ref_rps)
    p99 = coloc.blind_percentile_ms
    blind = "overloaded" if not math.isfinite(p99) else f"p99 {p99:.0f} ms"
    summary.add(
        "serve",
        f"replicas for {ref_rps:.0f} rps without / with the prediction",
        f"{REFERENCE_REPLICAS} / {beside_n} (without: {blind} next to the neighbour, "
        f"SLO {SLO_MS:g} ms)",
    )


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
    run_serve(kb, console, summary, seed)
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
    from edgewise.rayenv import log_path

    Console().print(f"time: {spent}; `edgewise report` renders it all from the knowledge base.")
    Console().print(
        f"Ray's and Serve's own lines: {log_path()} (`edgewise --verbose demo` shows them)"
    )
