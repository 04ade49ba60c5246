"""The demo's profile and serve steps on the built-in ``digits_cnn``.

:func:`run_profile`: a short interference campaign with its error on held-out stress
mixes, and :func:`predicted_slowdown` next to a neighbour; :func:`run_serve`: forecast the
bike-share trace, derate the capacity probed through the live HTTP path by the predicted
slowdown (the plan a co-location would need), and replay a compressed day live on Ray
Serve with our autoscaler and the HPA baseline. Orchestration only: every step calls the
same use cases as the CLI commands and adds its figures to the summary.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from edgewise.demo.summary import DemoSummary

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
            port=0,
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
