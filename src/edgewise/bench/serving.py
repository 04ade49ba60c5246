"""``edgewise bench serving``: every autoscaling policy over weeks of trace, simulated.

The use case is :func:`edgewise.api.simulate.simulate_serving` (its docstring says how
the trace is scaled and what is compared); this module is the benchmark's entry point
(:func:`run`, the JSON-able report) and its command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Unpack

import typer

from edgewise.api.simulate import SimulationSettings, simulate_serving
from edgewise.serving.policies import POLICY_NAMES

__all__ = ["register_bench", "run", "serving_command"]


def run(
    *,
    progress: Callable[[str, float], None] | None = None,
    **settings: Unpack[SimulationSettings],
) -> dict[str, Any]:
    """Simulate the policies over the last days of a trace; the benchmark's JSON.

    Parameters
    ----------
    progress : callable, optional
        ``progress(setting, fraction_done)`` during each run.
    **settings
        Those of :func:`edgewise.api.simulate.simulate_serving` (its defaults where left
        out).

    Returns
    -------
    dict
        :meth:`edgewise.api.simulate.ServingSimulation.as_dict`.
    """
    return simulate_serving(
        **settings,
        progress=None
        if progress is None
        else (lambda label, done, total: progress(label, done / total)),
    ).as_dict()


def serving_command(
    trace: Annotated[str, typer.Option(help="'bikeshare' or a CSV file")] = "bikeshare",
    time_col: Annotated[str | None, typer.Option(help="time column of a CSV")] = None,
    value_col: Annotated[str | None, typer.Option(help="value column of a CSV")] = None,
    days: Annotated[float, typer.Option(min=0.01, help="last N days of the trace")] = 14.0,
    startup_s: Annotated[int, typer.Option(min=0, help="replica start-up (s)")] = 60,
    slo_ms: Annotated[float, typer.Option(min=0.001, help="latency SLO (ms)")] = 100.0,
    policies: Annotated[str, typer.Option(help="comma-separated")] = ",".join(POLICY_NAMES),
    seed: Annotated[int, typer.Option()] = 0,
    peak_rps: Annotated[
        float, typer.Option(min=0.001, help="scale the trace to this peak")
    ] = 200.0,
    model: Annotated[str, typer.Option(help="model whose KB profile is used")] = "mobilenet_v2",
    max_replicas: Annotated[int, typer.Option(min=1, help="most replicas of each flavor")] = 1000,
    oracle_sweep: Annotated[
        bool,
        typer.Option(
            "--oracle-sweep",
            help="also run the clairvoyant at higher design percentiles (its cost "
            "against attainment, compared with HPA like ours)",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Simulate autoscaling policies over a trace and compare SLO attainment and cost."""
    from rich.console import Console
    from rich.progress import Progress

    names = [p.strip() for p in policies.split(",") if p.strip()]
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=None)

        def cb(label: str, done: int, total: int) -> None:
            bar.update(task, description=f"simulating {label}", completed=done, total=total)

        out = simulate_serving(
            trace=trace,
            time_col=time_col,
            value_col=value_col,
            days=days,
            startup_s=startup_s,
            slo_ms=slo_ms,
            policies=names,
            seed=seed,
            peak_rps=peak_rps,
            model=model,
            progress=cb,
            max_replicas=max_replicas,
            oracle_sweep=oracle_sweep,
        ).as_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    _print_table(out, trace, days, slo_ms)


def _print_table(out: dict[str, Any], trace: str, days: float, slo_ms: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"serving, {days:g} days of {trace}, SLO {slo_ms:g} ms")
    for col in ("policy", "setting", "attainment", "cost", "actions", "reversals"):
        table.add_column(col)
    for name, e in out["policies"].items():
        table.add_row(
            name,
            e["setting"],
            f"{e['slo_attainment']:.4%}",
            f"{e['cost']:.3f}",
            str(e["scale_actions"]),
            str(e["reversals_5min"]),
        )
    Console().print(table)
    for key in (
        "cost_ratio_vs_hpa",
        "cost_ratio_vs_oracle",
        "hpa_reached_our_attainment",
        "oracle_cost_ratio_vs_hpa",
        "oracle_best_cost_ratio_vs_hpa",
        "oracle_best_setting",
    ):
        if key in out:
            typer.echo(f"{key}: {out[key]}")


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``serving`` subcommand to the ``edgewise bench`` group."""
    bench_app.command("serving")(serving_command)
