"""Model versions section: which version served each service when, and why it changed.

:func:`load` reads the ``served_versions`` intervals (:mod:`edgewise.kb.served`);
:func:`render` draws, per service, a timeline of its versions (one bar per version,
serving solid, a rollout's canary hatched) and a table of every interval with its
reasons, without touching the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from edgewise.kb.served import CANARY, Interval, intervals_in
from edgewise.report.html import Section, empty, figure_html, heading, new_figure, para, table

#: At most this many services get a timeline and a table (the most recently active).
MAX_SERVICES = 8
#: At most this many intervals are listed per service (its newest).
MAX_ROWS = 40

COMMANDS = ("edgewise serve", "edgewise rollout")


@dataclass(frozen=True)
class ServiceTimeline:
    """One service's intervals, oldest first."""

    service: str
    intervals: list[Interval]

    @property
    def last_change(self) -> datetime:
        """When the service last started, changed version or stopped."""
        return max(max(i.since, i.until or i.since) for i in self.intervals)

    @property
    def serving(self) -> Interval | None:
        """The open serving interval, if the service still runs."""
        open_ = [i for i in self.intervals if i.until is None and i.role != CANARY]
        return open_[-1] if open_ else None


def load(session: Session) -> list[ServiceTimeline]:
    """Every service's recorded intervals, the most recently active service first."""
    by_service: dict[str, list[Interval]] = {}
    for interval in intervals_in(session):
        by_service.setdefault(interval.service, []).append(interval)
    timelines = [ServiceTimeline(name, rows) for name, rows in by_service.items()]
    return sorted(timelines, key=lambda t: t.last_change, reverse=True)


def _stamp(when: datetime | None) -> str:
    return "serving" if when is None else when.isoformat(timespec="seconds")


def _label(interval: Interval) -> str:
    served = interval.served
    return served.ref if served.version is None else f"{served.model}:v{served.version}"


def _timeline_figure(timeline: ServiceTimeline, now: datetime | None) -> str:
    """One row per version, bars where it served (canary hatched); an open bar runs to
    ``now`` (the report's time), or to the service's last recorded change."""
    end = max(timeline.last_change, now or timeline.last_change)
    origin = min(i.since for i in timeline.intervals)
    labels = list(dict.fromkeys(_label(i) for i in timeline.intervals))
    fig = new_figure(7.5, 0.9 + 0.45 * len(labels))
    ax = fig.subplots()
    for interval in timeline.intervals:
        y = labels.index(_label(interval))
        start = (interval.since - origin).total_seconds()
        stop = ((interval.until or end) - origin).total_seconds()
        canary = interval.role == CANARY
        ax.barh(
            y,
            max(stop - start, 0.0),
            left=start,
            height=0.35 if canary else 0.6,
            color="tab:orange" if canary else "tab:blue",
            hatch="//" if canary else None,
            alpha=0.8,
            edgecolor="0.2",
            linewidth=0.5,
        )
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"seconds since {origin.isoformat(timespec='seconds')}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{timeline.service}: versions served (canary hatched)")
    caption = (
        f"{timeline.service}: {len(timeline.intervals)} intervals of {len(labels)} versions; "
        + (
            f"{_label(timeline.serving)} serving now."
            if timeline.serving is not None
            else "stopped."
        )
    )
    return figure_html(fig, f"{timeline.service} versions over time", caption)


def render(
    timelines: list[ServiceTimeline],
    max_services: int = MAX_SERVICES,
    now: datetime | None = None,
) -> Section:
    """The section: per service a timeline figure and a table of its intervals.

    Parameters
    ----------
    timelines : list of ServiceTimeline
        From :func:`load`, the most recently active service first.
    max_services : int
        Services shown.
    now : datetime, optional
        The report's time: where a version still serving ends on its timeline.

    Returns
    -------
    Section
        The rendered section.
    """
    if not timelines:
        body = empty("records of which model version served when", *COMMANDS)
        return Section("versions", "Model versions served", body)
    parts: list[str] = []
    summary: list[tuple[str, str]] = []
    for timeline in timelines[:max_services]:
        parts.append(heading(timeline.service))
        parts.append(_timeline_figure(timeline, now))
        rows = timeline.intervals[-MAX_ROWS:]
        parts.append(
            table(
                ("Version", "Role", "From", "Until", "Started because", "Ended because"),
                (
                    (
                        _label(i),
                        i.role,
                        _stamp(i.since),
                        _stamp(i.until),
                        i.started_because,
                        i.ended_because,
                    )
                    for i in rows
                ),
            )
        )
        current = timeline.serving
        summary.append(
            (f"{timeline.service}: serving", "stopped" if current is None else _label(current))
        )
    figures = min(len(timelines), max_services)
    if len(timelines) > max_services:
        more = len(timelines) - max_services
        parts.append(para(f"{more} other services not shown.", "note"))
    return Section("versions", "Model versions served", "".join(parts), summary, figures)


__all__ = ["COMMANDS", "ServiceTimeline", "load", "render"]
