"""``edgewise bench serving``: every autoscaling policy over weeks of trace, simulated.

The use case is :func:`edgewise.api.simulate.simulate_serving` (its docstring says how
the trace is scaled and what is compared); this module is the benchmark's entry point
(:func:`run`, the JSON-able report; :func:`run_traces`, the same settings over several
traces with the worst one at the top level) and its command.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Unpack

import typer

from edgewise.api.simulate import SimulationSettings, load_workload, simulate_serving
from edgewise.errors import SpecError
from edgewise.serving.policies import POLICY_NAMES
from edgewise.sim.compare import worst_trace

__all__ = ["register_bench", "run", "run_traces", "serving_command"]


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


def run_traces(
    traces: Sequence[str],
    *,
    progress: Callable[[str, float], None] | None = None,
    **settings: Unpack[SimulationSettings],
) -> dict[str, Any]:
    """The benchmark over each of ``traces`` with the same settings; the worst on top.

    Parameters
    ----------
    traces : sequence of str
        Trace names or CSV paths, each simulated alike (``settings['trace']`` is
        ignored); every one is loaded and checked before the first is simulated.
    progress : callable, optional
        ``progress(setting, fraction_done)`` during each run; the setting names its trace.
    **settings
        As for :func:`run`.

    Returns
    -------
    dict
        The worst trace's report (:func:`edgewise.sim.compare.worst_trace`: highest cost
        over the oracle's) with its usual keys, plus ``worst_trace`` and ``traces``
        (every trace's report by name, in the given order).
    """
    names = list(dict.fromkeys(t.strip() for t in traces if t.strip()))
    if not names:
        raise SpecError("--traces: no trace named")
    settings.pop("trace", None)
    for name in names:  # a bad trace is reported before any is simulated
        load_workload(
            name,
            settings.get("days", 14.0),
            settings.get("peak_rps", 200.0),
            settings.get("time_col"),
            settings.get("value_col"),
        )
    reports: dict[str, dict[str, Any]] = {}
    for name in names:
        one: SimulationSettings = {**settings, "trace": name}
        reports[name] = run(progress=_labelled(progress, name), **one)
    worst = worst_trace(reports)
    return {**reports[worst], "worst_trace": worst, "traces": reports}


def _labelled(
    progress: Callable[[str, float], None] | None, trace: str
) -> Callable[[str, float], None] | None:
    """``progress`` with each setting's label prefixed by the trace's name."""
    if progress is None:
        return None
    report = progress

    def cb(label: str, done: float) -> None:
        report(f"{trace} {label}", done)

    return cb


def serving_command(
    trace: Annotated[
        str, typer.Option(help="a named trace (bikeshare, electricity...) or a CSV file")
    ] = "bikeshare",
    traces: Annotated[
        str | None,
        typer.Option(
            help="comma-separated traces simulated alike (instead of --trace); the JSON "
            "keeps each under 'traces' and the worst at the top level"
        ),
    ] = None,
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
    settings: SimulationSettings = {
        "time_col": time_col,
        "value_col": value_col,
        "days": days,
        "startup_s": startup_s,
        "slo_ms": slo_ms,
        "policies": names,
        "seed": seed,
        "peak_rps": peak_rps,
        "model": model,
        "max_replicas": max_replicas,
        "oracle_sweep": oracle_sweep,
    }
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=None)

        def cb(label: str, done: float) -> None:
            bar.update(task, description=f"simulating {label}", completed=done, total=1.0)

        if traces is None:
            settings["trace"] = trace
            out = run(progress=cb, **settings)
        else:
            out = run_traces(traces.split(","), progress=cb, **settings)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for name, report in out.get("traces", {trace: out}).items():
        _print_table(report, name, days, slo_ms)
    if "worst_trace" in out:
        typer.echo(f"worst_trace: {out['worst_trace']}")


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
        "attainment_vs_oracle_pt",
    ):
        if key in out:
            typer.echo(f"{key}: {out[key]}")


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``serving`` subcommand to the ``edgewise bench`` group."""
    bench_app.command("serving")(serving_command)
