"""``edgewise profile``, ``edgewise predict`` and ``edgewise stress`` (profile pillar).

Each command parses its options, calls :mod:`edgewise.api.profile` and renders the result.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["predict", "profile", "register", "stress"]


def stress(
    cpu: float = typer.Option(0.0, help="CPU intensity in [0, 1]"),
    membw: float = typer.Option(0.0, help="memory bandwidth intensity in [0, 1]"),
    llc: float = typer.Option(0.0, help="last-level cache intensity in [0, 1]"),
    disk: float = typer.Option(0.0, help="disk I/O intensity in [0, 1]"),
    net: float = typer.Option(0.0, help="loopback network intensity in [0, 1]"),
    mem: float = typer.Option(0.0, help="memory capacity intensity in [0, 1]"),
    seconds: float = typer.Option(10.0, min=0.5, help="measurement window (s)"),
    calibrate: bool = typer.Option(False, help="calibrate this host first and store it in the KB"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Run a multi-resource stress mix and report requested vs achieved intensity."""
    from edgewise.api import profile as use

    with Console(stderr=True).status("stress") as st:
        res = use.stress(
            intensity={
                "cpu": cpu,
                "membw": membw,
                "llc": llc,
                "disk": disk,
                "net": net,
                "mem": mem,
            },
            seconds=seconds,
            calibrate=calibrate,
            progress=lambda phase, done, total: st.update(phase),
        )
    if not res.rows:
        return
    if as_json:
        typer.echo(json.dumps(res.as_dict()))
        return
    typer.echo(f"{'resource':<9} {'requested':>9} {'achieved':>9} {'delta':>7}")
    for r in res.rows:
        typer.echo(
            f"{r['resource']:<9} {r['requested']:>9.2f} {r['achieved']:>9.2f} {r['delta_points']:>+6.1f}p"
        )
    if not res.calibrated:
        typer.echo(
            "(host not calibrated: run with --calibrate once to land requests within ±5 points)"
        )


def profile(
    app_name: str = typer.Argument(
        ..., metavar="APP", help="zoo model, model@RATErps or cmd:COMMAND"
    ),
    budget: int = typer.Option(30, min=1, help="stressed runs"),
    rate: float = typer.Option(20.0, min=0.1, help="request rate (per s) for a zoo model"),
    load: float | None = typer.Option(
        None, help="instead of --rate: this fraction of the model's solo capacity"
    ),
    batch_size: int = typer.Option(1, min=1),
    seconds: float = typer.Option(6.0, min=0.5, help="measurement window per run (s)"),
    warmup: float = typer.Option(1.5, min=0.0, help="stressor warm-up per run (s)"),
    method: str = typer.Option("active", help="active | lhs | sobol"),
    space: Path | None = typer.Option(None, help="stress-space YAML (default: built-in)"),
    seed: int = typer.Option(0),
    name: str | None = typer.Option(
        None,
        help="campaign name (default: from APP and the options given, e.g. APP@20rps-seed0 "
        "or APP@load0.2-seed0)",
    ),
    resume: bool = typer.Option(
        False, help="continue an interrupted campaign (at the rate it was started with)"
    ),
    warm_start: bool = typer.Option(
        False, help="pool the runs of other profiled workloads (transfer: fewer runs)"
    ),
    confine: str = typer.Option(
        "none",
        help="stressors on any CPU (none), on the target's CPU (taskset | cgroup), or "
        "split: the CPU stressor on the target's CPU, the others on the other CPUs",
    ),
    solo_every: int = typer.Option(10, min=1, help="a solo baseline every N runs"),
    device: str = typer.Option("cpu", help="serve a zoo model on cpu or cuda"),
) -> None:
    """Profile APP under a designed set of stress mixes and store its interference model."""
    from edgewise.api import profile as use

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[point]}"),
        console=Console(stderr=True),
    )
    tasks: list[TaskID] = []

    def report(point: str, done: int, total: int) -> None:
        # the bar appears with the first step, so a wrong input stays one line
        if not tasks:
            bar.start()
            tasks.append(bar.add_task(f"profiling {app_name}", total=budget, point=point))
        bar.update(tasks[0], completed=done, point=point)

    try:
        res = use.profile(
            app=app_name,
            budget=budget,
            rate_rps=rate,
            load=load,
            batch_size=batch_size,
            seconds=seconds,
            warmup_s=warmup,
            method=method,
            space=space,
            seed=seed,
            name=name,
            resume=resume,
            warm_start=warm_start,
            confine=confine,
            solo_every=solo_every,
            device=device,
            progress=report,
        )
    finally:
        bar.stop()
    if res.pooled_from:
        typer.echo(f"warm-started from: {', '.join(res.pooled_from)}")
    typer.echo(
        f"stored interference model for {res.workload}: "
        + ", ".join(
            f"{p} {res.chosen[p]} (CV median APE {res.cv_scores[p][res.chosen[p]]:.1f}%)"
            if len(res.cv_scores[p]) > 1
            else f"{p} {res.chosen[p]}"
            for p in ("p50", "p95", "p99")
        )
    )


def predict(
    app_name: str = typer.Argument(..., metavar="APP"),
    with_: list[str] = typer.Option([], "--with", help="co-located workload or stress:RES=V,..."),
    solo_p50_ms: float | None = typer.Option(
        None,
        "--solo-p50-ms",
        help="APP's p50 alone now (ms): scales the prediction to the host's current speed",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Predict APP's latency percentiles next to the given workloads, with 90% intervals."""
    from edgewise.api import profile as use

    res = use.predict(app=app_name, neighbours=with_, solo_p50_ms=solo_p50_ms)
    if as_json:
        typer.echo(json.dumps(res.as_dict()))
        return
    pred = res.latency
    typer.echo(
        f"resource vector ({pred.source}): "
        + ", ".join(f"{k}={v:.2f}" for k, v in pred.vector.items())
    )
    for p in ("p50", "p95", "p99"):
        lo, hi = pred.lower.get(p), pred.upper.get(p)
        interval = (
            f"[{lo:.2f}, {hi:.2f}] ({100 * pred.level:g}%)"
            if lo is not None and hi is not None
            else f"[not enough clean runs: {pred.clean_runs}]"
        )
        typer.echo(f"{p}: {getattr(pred, p):.2f} ms  {interval}")
    if pred.interval_note:
        typer.echo(f"({pred.interval_note})")


def register(app: typer.Typer) -> None:
    """Add the profile pillar's commands to ``app``."""
    app.command("stress")(stress)
    app.command("profile")(profile)
    app.command("predict")(predict)
