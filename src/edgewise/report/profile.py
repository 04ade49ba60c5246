"""Profile pillar section: interference models and the campaigns' runs.

:func:`load` reads the knowledge base into plain data (the adapter); :func:`render`
turns that data into HTML and figures without touching the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from edgewise.kb import models as m
from edgewise.report._values import BadRow, floats, median_ape, num, records
from edgewise.report.html import (
    Section,
    empty,
    figure_html,
    heading,
    new_figure,
    para,
    pct,
    table,
)

#: At most this many interference models and campaigns get figures.
MAX_ITEMS = 6

COMMANDS = ("edgewise profile APP", "edgewise demo")


@dataclass(frozen=True)
class Surrogate:
    """The latest stored interference model of one app."""

    name: str
    version: int
    versions: int
    training_runs: int
    metrics: Mapping[str, Any]
    meta: Mapping[str, Any]


@dataclass(frozen=True)
class CampaignRuns:
    """The runs of one profiling campaign: achieved CPU intensity and latency."""

    name: str
    target: str
    status: str
    run_status: list[str] = field(default_factory=list)
    cpu: list[float | None] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)


@dataclass(frozen=True)
class ProfileData:
    """What the profile section shows."""

    surrogates: list[Surrogate]
    campaigns: list[CampaignRuns]
    more_campaigns: int = 0


def load(session: Session, max_items: int = MAX_ITEMS) -> ProfileData:
    """Read the latest surrogate per app and the runs of the newest campaigns."""
    rows = session.scalars(
        select(m.FittedModel)
        .where(m.FittedModel.kind == "surrogate")
        .order_by(m.FittedModel.name, m.FittedModel.version)
    ).all()
    latest: dict[str, m.FittedModel] = {}
    versions: dict[str, int] = {}
    for row in rows:
        latest[row.name] = row
        versions[row.name] = versions.get(row.name, 0) + 1
    surrogates = [
        Surrogate(
            name=row.name,
            version=row.version,
            versions=versions[row.name],
            training_runs=len(row.training_ids or []),
            metrics=row.metrics if isinstance(row.metrics, Mapping) else {},
            meta=row.meta if isinstance(row.meta, Mapping) else {},
        )
        for row in latest.values()
    ]
    camp_rows = session.scalars(select(m.Campaign).order_by(m.Campaign.id.desc())).all()
    targets = dict(session.execute(select(m.Workload.id, m.Workload.name)).tuples().all())
    campaigns = []
    for camp in camp_rows[:max_items]:
        runs = session.scalars(
            select(m.Run).where(m.Run.campaign_id == camp.id).order_by(m.Run.index)
        ).all()
        achieved = [r.achieved if isinstance(r.achieved, Mapping) else {} for r in runs]
        latency = [r.latency if isinstance(r.latency, Mapping) else {} for r in runs]
        campaigns.append(
            CampaignRuns(
                name=camp.name,
                target=targets.get(camp.target_workload_id, "?"),
                status=camp.status,
                run_status=[r.status for r in runs],
                cpu=[num(a.get("cpu")) for a in achieved],
                p50=[num(lat.get("p50")) for lat in latency],
                p99=[num(lat.get("p99")) for lat in latency],
            )
        )
    return ProfileData(
        surrogates=surrogates[:max_items],
        campaigns=campaigns,
        more_campaigns=max(0, len(camp_rows) - max_items),
    )


def _holdout_figure(name: str, holdout: list[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Predicted-vs-measured scatter (p50 with intervals, p99) and its key numbers."""
    col = {
        k: floats([h.get(k) for h in holdout])
        for k in (
            "measured_p50",
            "predicted_p50",
            "lower_p50",
            "upper_p50",
            "measured_p99",
            "predicted_p99",
        )
    }
    if not np.isfinite(col["measured_p50"]).any():
        raise BadRow("holdout has no measured_p50 values")
    ape50 = median_ape(col["measured_p50"], col["predicted_p50"])
    ape99 = median_ape(col["measured_p99"], col["predicted_p99"])
    lo, hi = col["lower_p50"], col["upper_p50"]
    has_iv = np.isfinite(lo) & np.isfinite(hi)
    inside = has_iv & (col["measured_p50"] >= lo) & (col["measured_p50"] <= hi)
    coverage = float(inside.sum() / has_iv.sum()) if has_iv.any() else None

    fig = new_figure(7.5, 3.6)
    ax50, ax99 = fig.subplots(1, 2)
    pred = col["predicted_p50"]
    yerr = np.vstack([np.where(has_iv, pred - lo, 0.0), np.where(has_iv, hi - pred, 0.0)])
    ax50.errorbar(
        col["measured_p50"],
        pred,
        yerr=np.clip(np.nan_to_num(yerr), 0.0, None),
        fmt="o",
        ms=4,
        capsize=2,
        color="tab:blue",
        ecolor="tab:gray",
        label="held-out run (interval)",
    )
    ax99.plot(col["measured_p99"], col["predicted_p99"], "s", ms=4, color="tab:orange")
    for ax, key, label in ((ax50, "p50", "p50"), (ax99, "p99", "p99")):
        both = np.concatenate([col[f"measured_{key}"], col[f"predicted_{key}"]])
        both = both[np.isfinite(both)]
        if both.size:
            lo_lim, hi_lim = float(both.min()) * 0.9, float(both.max()) * 1.1
            ax.plot([lo_lim, hi_lim], [lo_lim, hi_lim], "k--", lw=1, label="y = x")
        ax.set_xlabel(f"measured {label} (ms)")
        ax.set_ylabel(f"predicted {label} (ms)")
        ax.set_title(f"{name}: {label}")
        ax.grid(alpha=0.3)
    ax50.legend(fontsize=8, loc="upper left")
    caption = (
        f"{name}: {len(holdout)} held-out runs; median APE p50 {pct(ape50)}, "
        f"p99 {pct(ape99)}; p50 interval coverage {pct(coverage)}."
    )
    html = figure_html(fig, f"{name} predicted vs measured latency", caption)
    return html, {"ape50": ape50, "ape99": ape99, "coverage": coverage}


def _learning_figure(name: str, curve: list[Mapping[str, Any]]) -> str:
    """Cross-validated median APE against the number of runs, one line per strategy."""
    by_strategy: dict[str, list[tuple[float, float]]] = {}
    for point in curve:
        runs, ape = num(point.get("runs")), num(point.get("cv_median_ape"))
        if runs is None or ape is None:
            continue
        by_strategy.setdefault(str(point.get("strategy", "?")), []).append((runs, ape))
    if not by_strategy:
        raise BadRow("learning_curve has no (runs, cv_median_ape) points")
    fig = new_figure(6.0, 3.4)
    ax = fig.subplots()
    finals = []
    for strategy, points in sorted(by_strategy.items()):
        points.sort()
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, [100 * y for y in ys], "o-", ms=3, label=strategy)
        finals.append(f"{strategy} {pct(ys[-1])} after {int(xs[-1])} runs")
    ax.set_xlabel("profiling runs")
    ax.set_ylabel("CV median APE (%)")
    ax.set_title(f"{name}: learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_html(fig, f"{name} learning curve", "Final error: " + "; ".join(finals) + ".")


def _campaign_figure(camp: CampaignRuns) -> str:
    """Latency p50/p99 of each run against the achieved CPU intensity."""
    status = np.array(camp.run_status)
    cpu, p50, p99 = floats(camp.cpu), floats(camp.p50), floats(camp.p99)
    fig = new_figure(6.0, 3.4)
    ax = fig.subplots()
    for st, face in (("ok", None), ("flagged", "none")):
        sel = status == st
        if not sel.any():
            continue
        for values, color, lab in ((p50, "tab:blue", "p50"), (p99, "tab:red", "p99")):
            ax.scatter(
                cpu[sel],
                values[sel],
                s=18,
                facecolors=face if face else color,
                edgecolors=color,
                label=f"{lab} ({st})",
            )
    ax.set_xlabel('achieved CPU intensity (achieved["cpu"])')
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{camp.name} (target {camp.target})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    counts = {s: int((status == s).sum()) for s in ("ok", "flagged", "failed")}
    caption = (
        f"Campaign {camp.name} ({camp.status}): {counts['ok']} ok, {counts['flagged']} flagged "
        f"(hollow), {counts['failed']} failed runs (not shown)."
    )
    return figure_html(fig, f"{camp.name} latency vs CPU intensity", caption)


def _scalar_metrics(metrics: Mapping[str, Any]) -> str:
    parts = [f"{k}={num(v):.3g}" for k, v in sorted(metrics.items()) if num(v) is not None]
    return ", ".join(parts) or "-"


def render(data: ProfileData) -> Section:
    """The profile section: model table, held-out scatter, learning curves, campaigns."""
    parts: list[str] = []
    summary: list[tuple[str, str]] = []
    figures = 0
    parts.append(heading("Interference models"))
    if not data.surrogates:
        parts.append(empty("interference models", *COMMANDS))
    else:
        parts.append(
            table(
                ("App", "Version", "Versions", "Training runs", "Stored metrics"),
                (
                    (s.name, s.version, s.versions, s.training_runs, _scalar_metrics(s.metrics))
                    for s in data.surrogates
                ),
            )
        )
        summary.append(("interference models", ", ".join(s.name for s in data.surrogates)))
        for sur in data.surrogates:
            shown = False
            try:
                holdout = records(sur.metrics.get("holdout"), "holdout")
                if holdout:
                    html, nums = _holdout_figure(sur.name, holdout)
                    parts.append(html)
                    figures += 1
                    shown = True
                    summary.append((f"{sur.name}: held-out median APE p50", pct(nums["ape50"])))
                    summary.append((f"{sur.name}: p50 interval coverage", pct(nums["coverage"])))
                curve = records(sur.metrics.get("learning_curve"), "learning_curve")
                if curve:
                    parts.append(_learning_figure(sur.name, curve))
                    figures += 1
                    shown = True
            except BadRow as err:
                parts.append(para(f"{sur.name} v{sur.version}: skipped, {err}.", "note"))
                continue
            if not shown:
                parts.append(
                    para(
                        f"{sur.name} v{sur.version} stores no held-out evaluation or "
                        "learning curve (metrics.holdout / metrics.learning_curve).",
                        "note",
                    )
                )
    parts.append(heading("Profiling campaigns"))
    if not data.campaigns:
        parts.append(empty("profiling runs", *COMMANDS))
    else:
        total_ok = 0
        for camp in data.campaigns:
            total_ok += camp.run_status.count("ok")
            usable = [
                i
                for i, st in enumerate(camp.run_status)
                if st in ("ok", "flagged") and camp.cpu[i] is not None
            ]
            if not usable:
                parts.append(
                    para(f"Campaign {camp.name}: no finished runs with a measured CPU intensity.")
                )
                continue
            parts.append(_campaign_figure(camp))
            figures += 1
        if data.more_campaigns:
            parts.append(para(f"{data.more_campaigns} older campaigns not shown.", "note"))
        newest = "newest " if data.more_campaigns else ""
        summary.append(
            ("profiling runs (ok)", f"{total_ok} in the {len(data.campaigns)} {newest}campaigns")
        )
    return Section("profile", "Profile", "".join(parts), summary, figures)


__all__ = ["COMMANDS", "CampaignRuns", "ProfileData", "Surrogate", "load", "render"]
