"""Forecast section: the newest forecast of each (series, method), against the actuals.

:func:`load` reads ``Forecast`` rows into plain data; :func:`render` draws them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from edgewise.kb import models as m
from edgewise.report._values import BadRow, floats, level_series, levels, mapping
from edgewise.report.html import Section, empty, figure_html, fmt, new_figure, para, pct, table

MAX_ITEMS = 6

COMMANDS = ("edgewise demo",)


@dataclass(frozen=True)
class ForecastData:
    """One stored forecast (the ``values`` JSON kept as stored)."""

    id: int
    series: str
    method: str
    origin: str
    horizon: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class ForecastScore:
    """How a forecast did against the actuals over its horizon."""

    mae: float | None
    mape: float | None
    coverage: float | None
    level: str | None


def load(session: Session, max_items: int = MAX_ITEMS) -> tuple[list[ForecastData], int]:
    """The newest forecast per (series, method), newest first, and how many were left out."""
    rows = session.scalars(select(m.Forecast).order_by(m.Forecast.id.desc())).all()
    seen: set[tuple[str, str]] = set()
    out: list[ForecastData] = []
    for row in rows:
        key = (row.series, row.method)
        if key in seen:
            continue
        seen.add(key)
        values = row.values if isinstance(row.values, Mapping) else {}
        out.append(
            ForecastData(row.id, row.series, row.method, str(row.origin), row.horizon, values)
        )
    return out[:max_items], max(0, len(out) - max_items)


def score(values: Mapping[str, Any]) -> ForecastScore:
    """MAE, MAPE (over actual > 0) and the widest interval's coverage of the actuals."""
    mean = floats(values.get("mean"))
    actual = floats(values.get("actual"))
    n = min(mean.size, actual.size)
    if n == 0:
        return ForecastScore(None, None, None, None)
    mean, actual = mean[:n], actual[:n]
    ok = np.isfinite(mean) & np.isfinite(actual)
    mae = float(np.mean(np.abs(mean[ok] - actual[ok]))) if ok.any() else None
    pos = ok & (actual > 0)
    mape = float(np.mean(np.abs(mean[pos] - actual[pos]) / actual[pos])) if pos.any() else None
    coverage, level = None, None
    for lev in levels(values.get("lower")):
        lo, hi = level_series(values.get("lower"), lev), level_series(values.get("upper"), lev)
        if lo is None or hi is None or min(lo.size, hi.size) < n:
            continue
        fin = ok & np.isfinite(lo[:n]) & np.isfinite(hi[:n])
        if fin.any():
            inside = (actual >= lo[:n]) & (actual <= hi[:n]) & fin
            coverage, level = float(inside.sum() / fin.sum()), lev
            break
    return ForecastScore(mae, mape, coverage, level)


def _figure(fc: ForecastData) -> tuple[str, ForecastScore]:
    values = mapping(fc.values, "values")
    mean = floats(values.get("mean"))
    if not np.isfinite(mean).any():
        raise BadRow("values.mean is empty")
    history = floats(values.get("history"))
    actual = floats(values.get("actual"))
    steps = np.arange(mean.size)
    fig = new_figure(7.5, 3.4)
    ax = fig.subplots()
    if history.size:
        ax.plot(np.arange(-history.size, 0), history, color="0.35", lw=1, label="history")
    bands = levels(values.get("lower"))
    for i, lev in enumerate(bands):
        lo, hi = level_series(values.get("lower"), lev), level_series(values.get("upper"), lev)
        if lo is None or hi is None:
            continue
        k = min(lo.size, hi.size, mean.size)
        ax.fill_between(
            steps[:k],
            lo[:k],
            hi[:k],
            color="tab:blue",
            alpha=0.15 + 0.15 * i,
            lw=0,
            label=f"{lev} % interval",
        )
    ax.plot(steps, mean, color="tab:blue", lw=1.5, label=f"forecast ({fc.method})")
    if actual.size:
        ax.plot(np.arange(actual.size), actual, color="tab:red", lw=1, label="actual")
    ax.axvline(0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("steps from the forecast origin")
    ax.set_ylabel(fc.series)
    ax.set_title(f"{fc.series}: {fc.method} from {fc.origin}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    sc = score(values)
    if sc.mae is None:
        caption = f"{fc.series} / {fc.method}: horizon {fc.horizon}; no actuals stored yet."
    else:
        caption = (
            f"{fc.series} / {fc.method}: horizon {fc.horizon}; MAE {fmt(sc.mae)}, "
            f"MAPE {pct(sc.mape)}, {sc.level or '-'} % interval coverage {pct(sc.coverage)}."
        )
    return figure_html(fig, f"forecast of {fc.series} by {fc.method}", caption), sc


def render(forecasts: list[ForecastData], more: int = 0) -> Section:
    """The forecast section: one figure per (series, method) and a score table."""
    if not forecasts:
        return Section("forecast", "Forecast", empty("forecasts", *COMMANDS))
    parts: list[str] = []
    rows: list[tuple[Any, ...]] = []
    summary: list[tuple[str, str]] = []
    figures = 0
    for fc in forecasts:
        try:
            html, sc = _figure(fc)
        except BadRow as err:
            parts.append(
                para(f"Forecast {fc.id} ({fc.series}/{fc.method}): skipped, {err}.", "note")
            )
            continue
        parts.append(html)
        figures += 1
        rows.append(
            (
                fc.series,
                fc.method,
                fc.origin,
                fc.horizon,
                fmt(sc.mae),
                pct(sc.mape),
                pct(sc.coverage),
            )
        )
        if sc.mae is not None:
            summary.append((f"{fc.series} / {fc.method}: MAPE", pct(sc.mape)))
            summary.append((f"{fc.series} / {fc.method}: {sc.level} % coverage", pct(sc.coverage)))
    if not summary:
        summary.append(("forecasts (no actuals yet)", str(len(forecasts))))
    head = table(
        ("Series", "Method", "Origin", "Horizon", "MAE", "MAPE", "Interval coverage"), rows
    )
    if more:
        parts.append(para(f"{more} other (series, method) forecasts not shown.", "note"))
    return Section("forecast", "Forecast", head + "".join(parts), summary, figures)


__all__ = ["COMMANDS", "ForecastData", "ForecastScore", "load", "render", "score"]
