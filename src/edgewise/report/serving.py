"""Serving section: replays and simulations per autoscaling policy, attainment vs cost.

:func:`load` reads ``Plan`` rows of kind ``replay`` / ``serving-sim`` and the
``ScalingEvent`` counts; :func:`render` draws them without touching the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edgewise.kb import models as m
from edgewise.report._values import BadRow, floats, mapping, num
from edgewise.report.html import (
    Section,
    empty,
    figure_html,
    fmt,
    heading,
    new_figure,
    para,
    pct,
    table,
)

#: Plan kinds this section reads.
KINDS = ("replay", "serving-sim")

#: At most this many per-policy figures; the scatter shows up to :data:`MAX_POINTS` runs.
MAX_ITEMS = 8
MAX_POINTS = 200

#: Longer series are bucketed down to this many points per figure.
MAX_PLOT_POINTS = 2000

COMMANDS = ("edgewise replay", "edgewise demo")


@dataclass(frozen=True)
class ServingRun:
    """One replayed or simulated serving run (a ``Plan`` row)."""

    id: int
    kind: str
    inputs: Mapping[str, Any]
    summary: Mapping[str, Any]
    series: Mapping[str, Any]
    cost: float | None

    @property
    def policy(self) -> str:
        return str(self.inputs.get("policy", "?"))

    @property
    def attainment(self) -> float | None:
        return num(self.summary.get("slo_attainment"))

    @property
    def total_cost(self) -> float | None:
        return self.cost if self.cost is not None else num(self.summary.get("cost"))


@dataclass(frozen=True)
class ServingData:
    """What the serving section shows."""

    runs: list[ServingRun]
    events: list[tuple[str, str, int]]


def load(session: Session, max_points: int = MAX_POINTS) -> ServingData:
    """The newest serving runs (newest first) and scaling-event counts per run key."""
    rows = session.scalars(
        select(m.Plan).where(m.Plan.kind.in_(KINDS)).order_by(m.Plan.id.desc()).limit(max_points)
    ).all()
    runs = []
    for row in rows:
        inputs = row.inputs if isinstance(row.inputs, Mapping) else {}
        decision = row.decision if isinstance(row.decision, Mapping) else {}
        summary = decision.get("summary")
        series = decision.get("series")
        runs.append(
            ServingRun(
                id=row.id,
                kind=row.kind,
                inputs=inputs,
                summary=summary if isinstance(summary, Mapping) else {},
                series=series if isinstance(series, Mapping) else {},
                cost=row.cost,
            )
        )
    counts = session.execute(
        select(m.ScalingEvent.run_key, m.ScalingEvent.policy, func.count())
        .group_by(m.ScalingEvent.run_key, m.ScalingEvent.policy)
        .order_by(m.ScalingEvent.run_key, m.ScalingEvent.policy)
    ).all()
    events = [(str(k), str(p), int(n)) for k, p, n in counts]
    return ServingData(runs=runs, events=events)


def bucket(values: np.ndarray, stride: int, how: Any) -> np.ndarray:
    """``how`` (``np.nanmax``...) over consecutive buckets of ``stride`` points; NaN if all NaN."""
    if values.size == 0:
        return values
    pad = -values.size % stride
    grid = np.concatenate([values, np.full(pad, np.nan)]).reshape(-1, stride)
    out = np.full(grid.shape[0], np.nan)
    has = np.isfinite(grid).any(axis=1)
    out[has] = how(grid[has], axis=1)
    return out


def _policy_figure(run: ServingRun) -> str:
    """Replicas and CPUs against load over time, and p99 against the SLO."""
    series = mapping(run.series, "decision.series")
    t = floats(series.get("t"))
    if t.size == 0:
        raise BadRow("decision.series.t is empty")

    def col(name: str) -> np.ndarray:
        values = floats(series.get(name))
        if values.size not in (0, t.size):
            raise BadRow(f"decision.series.{name} has {values.size} points, t has {t.size}")
        return values

    rps, replicas, cpus, p99 = col("true_rps"), col("replicas"), col("cpus"), col("p99_ms")
    # Long runs (days at one point per second) are drawn from at most MAX_PLOT_POINTS
    # buckets: load as the bucket mean, replicas/CPUs and p99 as the bucket maximum.
    stride = -(-t.size // MAX_PLOT_POINTS)
    if stride > 1:
        t = bucket(t, stride, np.nanmin)
        rps = bucket(rps, stride, np.nanmean)
        replicas, cpus, p99 = (bucket(v, stride, np.nanmax) for v in (replicas, cpus, p99))
    slo = num(run.inputs.get("slo_ms"))
    fig = new_figure(7.5, 4.6)
    ax, ax_lat = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    handles = []
    if replicas.size:
        handles += ax.step(t, replicas, where="post", color="tab:green", lw=1.2, label="replicas")
    if cpus.size:
        handles += ax.step(t, cpus, where="post", color="tab:orange", lw=1.2, label="CPUs")
    ax.set_ylabel("replicas / CPUs")
    ax.set_ylim(bottom=0)
    if rps.size:
        twin = ax.twinx()
        handles += twin.plot(t, rps, color="0.4", lw=0.8, alpha=0.8, label="load (rps)")
        twin.set_ylabel("load (requests/s)")
        twin.set_ylim(bottom=0)
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title(f"{run.policy} ({run.kind}, {run.inputs.get('trace', '?')})")
    if p99.size:
        ax_lat.plot(t, p99, color="tab:purple", lw=0.9, label="p99")
    if slo is not None:
        ax_lat.axhline(slo, color="tab:red", ls="--", lw=1, label=f"SLO {fmt(slo)} ms")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("t (s)")
    ax_lat.grid(alpha=0.3)
    if p99.size or slo is not None:
        ax_lat.legend(fontsize=8, loc="upper left")
    caption = (
        f"{run.policy} ({run.kind}): SLO attainment {pct(run.attainment, 2)}, cost "
        f"{fmt(run.total_cost)}, {fmt(run.summary.get('scale_actions'))} scale actions."
    )
    return figure_html(fig, f"{run.policy} replicas and CPUs vs load", caption)


def _tradeoff_figure(runs: list[ServingRun]) -> str | None:
    """SLO attainment against cost, one labelled point per run."""
    points = [
        (r.total_cost, r.attainment, r)
        for r in runs
        if r.total_cost is not None and r.attainment is not None
    ]
    if not points:
        return None
    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    markers = {"replay": "o", "serving-sim": "^"}
    for kind, marker in markers.items():
        sel = [(c, a) for c, a, r in points if r.kind == kind]
        if sel:
            xs, ys = zip(*sel, strict=True)
            ax.scatter(xs, [100 * y for y in ys], marker=marker, s=40, label=kind)
    for cost, att, run in points:
        ax.annotate(
            run.policy, (cost, 100 * att), textcoords="offset points", xytext=(5, 4), fontsize=8
        )
    ax.set_xlabel("cost")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title("attainment vs cost per policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_html(
        fig,
        "SLO attainment vs cost per policy",
        f"{len(points)} runs; up and to the left is better.",
    )


def render(data: ServingData, max_items: int = MAX_ITEMS) -> Section:
    """The serving section: run table, attainment vs cost, one figure per policy."""
    parts: list[str] = []
    summary: list[tuple[str, str]] = []
    figures = 0
    if not data.runs:
        parts.append(empty("serving replays or simulations", *COMMANDS))
    else:
        parts.append(
            table(
                (
                    "Policy",
                    "Kind",
                    "Trace",
                    "Hours",
                    "Speed-up",
                    "SLO ms",
                    "Attainment",
                    "Cost",
                    "Scale actions",
                ),
                (
                    (
                        r.policy,
                        r.kind,
                        r.inputs.get("trace"),
                        num(r.inputs.get("hours")),
                        num(r.inputs.get("speedup")),
                        num(r.inputs.get("slo_ms")),
                        pct(r.attainment, 2),
                        r.total_cost,
                        r.summary.get("scale_actions"),
                    )
                    for r in data.runs
                ),
            )
        )
        trade = _tradeoff_figure(data.runs)
        if trade:
            parts.append(trade)
            figures += 1
        # One figure per (kind, policy): the newest run of each.
        newest: dict[tuple[str, str], ServingRun] = {}
        for run in data.runs:
            newest.setdefault((run.kind, run.policy), run)
        parts.append(heading("Replicas and CPUs against load, per policy"))
        for run in list(newest.values())[:max_items]:
            try:
                parts.append(_policy_figure(run))
                figures += 1
            except BadRow as err:
                parts.append(para(f"Run {run.id} ({run.policy}): skipped, {err}.", "note"))
            summary.append(
                (
                    f"{run.policy} ({run.kind}): attainment / cost",
                    f"{pct(run.attainment, 2)} / {fmt(run.total_cost)}",
                )
            )
        if len(newest) > max_items:
            parts.append(para(f"{len(newest) - max_items} other policies not shown.", "note"))
    parts.append(heading("Scaling events"))
    if data.events:
        parts.append(table(("Run key", "Policy", "Events"), data.events))
    else:
        parts.append(empty("scaling events", "edgewise serve", "edgewise replay"))
    return Section("serving", "Serving", "".join(parts), summary, figures)


__all__ = ["COMMANDS", "KINDS", "ServingData", "ServingRun", "bucket", "load", "render"]
