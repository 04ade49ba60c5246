"""``edgewise forecast``: forecast a trace with intervals; ``bench forecast`` harness.

The commands parse their options, call :mod:`edgewise.api.forecast` and render the
result; the plot is written with matplotlib's Agg backend. Errors a user can fix (a bad trace, a series too short
for its season) are one line and exit code 2 (see :mod:`edgewise.cli.main`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from edgewise.api.forecast import TRAIN_SEASONS
from edgewise.errors import SpecError

__all__ = ["TRAIN_SEASONS", "parse_seasons", "register", "register_bench", "winner_line"]


def parse_seasons(text: str | None) -> tuple[int, ...] | None:
    """``'24,168'`` -> ``(24, 168)``; ``None`` or empty -> ``None`` (infer from the trace)."""
    if text is None or not text.strip():
        return None
    try:
        seasons = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SpecError(
            f"--season {text!r}: expected comma-separated integers like 24,168"
        ) from None
    if not seasons or any(s < 1 for s in seasons) or max(seasons) < 2:
        raise SpecError(f"--season {text!r}: season lengths must be integers and one above 1")
    return seasons


def winner_line(info: dict[str, Any]) -> str:
    """Which candidate the backtest chose, and by how much it beat the best naive.

    Parameters
    ----------
    info : dict
        ``ForecastResult.info`` of the ``auto`` forecaster.
    """
    scores: dict[str, float] = info.get("cv_mae", {})
    chosen, naive = info["chosen"], info.get("best_naive")
    ranked = sorted(scores, key=lambda k: scores[k])
    runner = next((k for k in ranked if k != chosen), None)
    text = f"chosen: {chosen} (backtest MAE {scores.get(chosen, float('nan')):.4g}"
    if naive and naive != chosen:
        gain = info.get("gain_over_naive") or 0.0
        text += f", {gain:.1%} below the best seasonal naive {naive}"
    if runner is not None:
        text += f"; runner-up {runner} {scores[runner]:.4g}"
    text += f", over {info.get('n_windows')} windows)"
    if info.get("decision") and info["decision"] != "lowest backtest MAE":
        text += f"; {info['decision']}"
    for note in info.get("notes", []):
        text += f"; {note}"
    return text


def _plot(path: Path, history: pd.Series, future: pd.DatetimeIndex, res: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(history.index, history.to_numpy(), color="0.3", lw=1, label="observed")
    for lv in sorted(res.lower, reverse=True):
        ax.fill_between(
            future,
            res.lower[lv],
            res.upper[lv],
            alpha=0.25,
            color="tab:blue",
            label=f"{lv}% interval",
        )
    ax.plot(future, res.mean, color="tab:blue", lw=1.5, label=f"forecast: {res.method}")
    ax.set_xlabel(str(history.index.name or "time"))
    ax.set_ylabel(str(history.name or "value"))
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def forecast_command(
    trace: Annotated[str, typer.Argument(help="'bikeshare' or a CSV file (plain or gzip).")],
    time_col: Annotated[str | None, typer.Option(help="Time column of the CSV.")] = None,
    value_col: Annotated[str | None, typer.Option(help="Value column of the CSV.")] = None,
    horizon: Annotated[
        int | None, typer.Option(min=1, help="Steps to forecast (default: one shortest season).")
    ] = None,
    season: Annotated[
        str | None,
        typer.Option(help="Season lengths in steps, e.g. 24,168 (default: from the step)."),
    ] = None,
    method: Annotated[
        str, typer.Option(help="Forecaster: auto, mstl, seasonal_naive_weekly, ...")
    ] = "auto",
    level: Annotated[
        list[int] | None, typer.Option(help="Interval level in percent (repeatable).")
    ] = None,
    train: Annotated[
        int | None,
        typer.Option(min=2, help="Fit on the last N points (default: 8 longest seasons)."),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the error compensation.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Forecast a trace with prediction intervals; print a table and optionally plot it."""
    from edgewise.api.forecast import forecast

    fc = forecast(
        trace=trace,
        time_col=time_col,
        value_col=value_col,
        horizon=horizon,
        seasons=parse_seasons(season),
        method=method,
        levels=level,
        train=train,
        seed=seed,
    )
    res, future, seasons, levels, h = fc.result, fc.future, fc.seasons, fc.levels, fc.horizon
    if plot is not None:
        _plot(plot, fc.history.iloc[-min(fc.n_train, 3 * seasons[-1]) :], future, res)
    if as_json:
        typer.echo(json.dumps(fc.as_dict(), default=float))
        return
    console = Console()
    table = Table(title=f"{trace}: {h} steps from {future[0]} ({res.method})")
    table.add_column("time")
    table.add_column("forecast", justify="right")
    for lv in levels:
        table.add_column(f"lo {lv}%", justify="right")
        table.add_column(f"hi {lv}%", justify="right")
    for i, t in enumerate(future):
        row = [str(t), f"{res.mean[i]:.2f}"]
        for lv in levels:
            row += [f"{res.lower[lv][i]:.2f}", f"{res.upper[lv][i]:.2f}"]
        table.add_row(*row)
    console.print(table)
    if "chosen" in res.info:
        console.print(winner_line(res.info))
    comp = res.info.get("compensation")
    if comp is not None:
        console.print(
            f"error compensation: {'kept' if comp['kept'] else 'not kept'} ({comp['reason']})"
        )
    console.print(f"fit on the last {fc.n_train} points; seasons {','.join(map(str, seasons))}")
    if plot is not None:
        console.print(f"plot written to {plot}")


def bench_command(
    trace: Annotated[
        str | None, typer.Option(help="'bikeshare' or a CSV file (plain or gzip).")
    ] = None,
    all_traces: Annotated[
        bool,
        typer.Option(
            "--all-traces", help="Every named trace, each with its own seasons (no --trace)."
        ),
    ] = False,
    time_col: Annotated[str | None, typer.Option(help="Time column of the CSV.")] = None,
    value_col: Annotated[str | None, typer.Option(help="Value column of the CSV.")] = None,
    season: Annotated[str | None, typer.Option(help="Season lengths, e.g. 24,168.")] = None,
    horizon: Annotated[int, typer.Option(min=1, help="Steps forecast from each origin.")] = 24,
    origins: Annotated[int, typer.Option(min=1, help="Number of forecast origins.")] = 14,
    train: Annotated[
        int, typer.Option(min=2, help="Points each fit uses before its origin.")
    ] = 1344,
    step: Annotated[
        int | None, typer.Option(min=1, help="Steps between origins (default: shortest season).")
    ] = None,
    method: Annotated[str, typer.Option(help="Forecaster under test.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the forecaster.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Rolling-origin forecast benchmark: MAE ratios, 90% coverage, fit+predict time."""
    from rich.progress import Progress

    from edgewise.api.forecast import benchmark_all_traces, benchmark_forecast

    if all_traces == (trace is not None):
        raise SpecError("bench forecast: give either --trace or --all-traces")
    err_console = Console(stderr=True)
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("forecast origins", total=origins)
        if all_traces:
            result = benchmark_all_traces(
                origins=origins,
                method=method,
                seed=seed,
                progress=lambda name, done, _t: bar.update(task, completed=done, description=name),
            ).as_dict()
        else:
            result = benchmark_forecast(
                trace=str(trace),
                time_col=time_col,
                value_col=value_col,
                seasons=parse_seasons(season),
                horizon=horizon,
                origins=origins,
                train=train,
                seed=seed,
                method=method,
                step=step,
                progress=lambda _phase, done, total: bar.update(task, completed=done),
            ).as_dict()
    if as_json:
        typer.echo(json.dumps(result))
        return
    if all_traces:
        _print_trace_set(result)
        return
    table = Table(title=f"forecast benchmark: {trace}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            text = f"{value:.4g}"
        elif isinstance(value, list) and key in ("chosen", "compensation_kept"):
            counts = pd.Series([str(v) for v in value]).value_counts()
            text = ", ".join(f"{k} x{c}" for k, c in counts.items())
        else:
            text = str(value)
        table.add_row(key, text)
    Console().print(table)


def _print_trace_set(result: dict[str, Any]) -> None:
    """One row per trace, then the median and worst figures."""
    table = Table(title=f"forecast benchmark on every named trace ({result['origins']} origins)")
    for col in ("trace", "best naive", "MAE ratio", "coverage 90%", "fit+predict ms", "chosen"):
        table.add_column(col, justify="left" if col in ("trace", "chosen") else "right")
    for t in result["traces"]:
        ratio = "-" if t["mae_ratio"] is None else f"{t['mae_ratio']:.3f}"
        chosen = ", ".join(f"{k} x{c}" for k, c in list(t["chosen"].items())[:3])
        cov, ms = f"{t['coverage_90']:.3f}", f"{t['fit_predict_ms']:.0f}"
        table.add_row(t["trace"], t["best_naive"], ratio, cov, ms, chosen)
    console = Console()
    console.print(table)
    summary = {k: v for k, v in result.items() if k not in ("traces", "origins")}
    console.print(
        ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
        )
    )


def register(app: typer.Typer) -> None:
    """Add ``edgewise forecast`` to ``app``."""
    app.command("forecast")(forecast_command)


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``forecast`` benchmark (``edgewise bench forecast``) to ``bench_app``."""
    bench_app.command("forecast")(bench_command)
