"""Retrain section: per-device training timeline with the failure, background deadlines.

:func:`load` reads ``TrainingJob`` rows into plain data; :func:`render` draws them.
Timeline times may be absolute (epoch seconds) or relative: the figure starts at the
earliest step's ``t_start``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from edgewise.kb import models as m
from edgewise.report._values import BadRow, mapping, num, records
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

MAX_ITEMS = 4

COMMANDS = ("edgewise retrain", "edgewise demo")


@dataclass(frozen=True)
class JobData:
    """One training job (its ``metrics`` JSON kept as stored)."""

    id: int
    name: str
    model: str
    status: str
    metrics: Mapping[str, Any]


def load(session: Session, max_items: int = MAX_ITEMS) -> tuple[list[JobData], int]:
    """The newest training jobs, newest first, and how many older ones were left out."""
    rows = session.scalars(select(m.TrainingJob).order_by(m.TrainingJob.id.desc())).all()
    jobs = [
        JobData(
            r.id, r.name, r.model, r.status, r.metrics if isinstance(r.metrics, Mapping) else {}
        )
        for r in rows[:max_items]
    ]
    return jobs, max(0, len(rows) - max_items)


@dataclass(frozen=True)
class Recovery:
    """Failure timings relative to the kill (seconds); ``None`` where not stored."""

    device: str
    detect_s: float | None
    resume_s: float | None


def recovery(metrics: Mapping[str, Any]) -> Recovery | None:
    """Detection and resumption delays of the job's failure, if it had one."""
    failure = metrics.get("failure")
    if not isinstance(failure, Mapping):
        return None
    kill, detect, resume = (num(failure.get(k)) for k in ("t_kill", "t_detect", "t_resume"))
    return Recovery(
        device=str(failure.get("device", "?")),
        detect_s=None if kill is None or detect is None else detect - kill,
        resume_s=None if kill is None or resume is None else resume - kill,
    )


def _timeline_figure(job: JobData) -> str:
    """Gantt-like chart: one row per device, a bar per step, the failure marked."""
    steps = records(job.metrics.get("timeline"), "metrics.timeline")
    spans: dict[str, list[tuple[float, float]]] = {}
    for s in steps:
        t0, t1 = num(s.get("t_start")), num(s.get("t_end"))
        if t0 is None or t1 is None or t1 < t0:
            continue
        spans.setdefault(str(s.get("device", "?")), []).append((t0, t1))
    if not spans:
        raise BadRow("metrics.timeline has no (device, t_start, t_end) steps")
    failure = job.metrics.get("failure")
    failure = failure if isinstance(failure, Mapping) else {}
    devices = sorted(set(spans) | ({str(failure["device"])} if "device" in failure else set()))
    origin = min(t0 for ss in spans.values() for t0, _ in ss)
    fig = new_figure(8.0, 1.2 + 0.55 * len(devices))
    ax = fig.subplots()
    palette = ("tab:blue", "tab:cyan")
    for row, dev in enumerate(devices):
        bars = sorted(spans.get(dev, []))
        ax.broken_barh(
            [(a - origin, max(b - a, 1e-9)) for a, b in bars],
            (row - 0.35, 0.7),
            facecolors=[palette[i % 2] for i in range(len(bars))],
            edgecolor="white",
            linewidth=0.3,
        )
    kill, detect, resume = (num(failure.get(k)) for k in ("t_kill", "t_detect", "t_resume"))
    if kill is not None:
        row = devices.index(str(failure.get("device"))) if "device" in failure else 0
        ax.plot(kill - origin, row, "X", color="red", ms=11, label="device killed")
        ax.axvline(kill - origin, color="red", lw=1)
        if resume is not None:
            ax.axvspan(kill - origin, resume - origin, color="red", alpha=0.1, label="recovery")
    if detect is not None:
        ax.axvline(detect - origin, color="tab:orange", ls="--", lw=1, label="failure detected")
    if resume is not None:
        ax.axvline(resume - origin, color="tab:green", ls="--", lw=1, label="training resumed")
    ax.set_yticks(range(len(devices)), devices)
    ax.set_ylim(-0.7, len(devices) - 0.3)
    ax.set_xlabel("time since the first step (s)")
    ax.set_title(f"{job.name} ({job.model}): training steps per device")
    ax.grid(axis="x", alpha=0.3)
    if kill is not None or detect is not None or resume is not None:
        ax.legend(fontsize=8, loc="upper right")
    rec = recovery(job.metrics)
    n_steps = sum(len(v) for v in spans.values())
    caption = f"{job.name}: {n_steps} steps on {len(devices)} devices"
    if rec is not None:
        caption += (
            f"; {rec.device} killed, detected after {fmt(rec.detect_s)} s, "
            f"training resumed after {fmt(rec.resume_s)} s"
        )
    return figure_html(fig, f"{job.name} training timeline", caption + ".")


def _background_rows(job: JobData) -> list[tuple[str, float, float, float | None]]:
    """``(device, p99_ms, deadline_ms, miss_rate)`` of each device with both numbers."""
    background = job.metrics.get("background")
    if background is None:
        return []
    rows = []
    for dev, vals in sorted(mapping(background, "metrics.background").items()):
        if not isinstance(vals, Mapping):
            continue
        p99, deadline = num(vals.get("p99_ms")), num(vals.get("deadline_ms"))
        if p99 is not None and deadline is not None:
            rows.append((str(dev), p99, deadline, num(vals.get("miss_rate"))))
    return rows


def _background_figure(job: JobData, rows: list[tuple[str, float, float, float | None]]) -> str:
    """Background app p99 latency against its deadline, one pair of bars per device."""
    names = [r[0] for r in rows]
    p99 = np.array([r[1] for r in rows])
    deadline = np.array([r[2] for r in rows])
    x = np.arange(len(rows))
    fig = new_figure(6.5, 3.4)
    ax = fig.subplots()
    colors = ["tab:green" if a <= d else "tab:red" for a, d in zip(p99, deadline, strict=True)]
    ax.bar(x - 0.2, p99, width=0.4, color=colors, label="background p99")
    ax.bar(x + 0.2, deadline, width=0.4, color="0.75", label="deadline")
    ax.set_xticks(x, names)
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{job.name}: background latency during training")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    kept = int((p99 <= deadline).sum())
    return figure_html(
        fig,
        f"{job.name} background p99 vs deadline",
        f"p99 within the deadline on {kept} of {len(rows)} devices (green: kept, red: missed).",
    )


def render(jobs: list[JobData], more: int = 0) -> Section:
    """The retrain section: job table, timeline and background figures per job."""
    if not jobs:
        return Section("retrain", "Retrain", empty("training jobs", *COMMANDS))
    parts = [
        table(
            (
                "Job",
                "Model",
                "Status",
                "Accuracy before",
                "Accuracy after",
                "Train s",
                "Resumed after s",
            ),
            (
                (
                    j.name,
                    j.model,
                    j.status,
                    num(j.metrics.get("accuracy_before")),
                    num(j.metrics.get("accuracy_after")),
                    num(j.metrics.get("train_s")),
                    (rec.resume_s if (rec := recovery(j.metrics)) else None),
                )
                for j in jobs
            ),
        )
    ]
    summary: list[tuple[str, str]] = []
    figures = 0
    for job in jobs:
        parts.append(heading(f"{job.name} ({job.model}, {job.status})"))
        before, after = (
            num(job.metrics.get("accuracy_before")),
            num(job.metrics.get("accuracy_after")),
        )
        summary.append((f"{job.name}: accuracy before -> after", f"{pct(before)} -> {pct(after)}"))
        rec = recovery(job.metrics)
        if rec is not None:
            summary.append(
                (f"{job.name}: resumed after failure of {rec.device}", f"{fmt(rec.resume_s)} s")
            )
        try:
            if job.metrics.get("timeline"):
                parts.append(_timeline_figure(job))
                figures += 1
            else:
                parts.append(para(f"{job.name}: no step timeline stored.", "note"))
            rows = _background_rows(job)
            if rows:
                parts.append(_background_figure(job, rows))
                figures += 1
                kept = sum(1 for _, p, d, _ in rows if p <= d)
                summary.append(
                    (f"{job.name}: background deadlines kept", f"{kept} of {len(rows)} devices")
                )
                parts.append(
                    table(
                        ("Device", "p99 ms", "Deadline ms", "Miss rate"),
                        ((d, p, dl, pct(mr, 2)) for d, p, dl, mr in rows),
                    )
                )
            else:
                parts.append(para(f"{job.name}: no background latency stored.", "note"))
        except BadRow as err:
            parts.append(para(f"{job.name}: skipped, {err}.", "note"))
    if more:
        parts.append(para(f"{more} older training jobs not shown.", "note"))
    return Section("retrain", "Retrain", "".join(parts), summary, figures)


__all__ = ["COMMANDS", "JobData", "Recovery", "load", "recovery", "render"]
