"""Which model version served when: the ``served_versions`` intervals of each service.

A running service records five kinds of change: ``serve started``, ``variant switched``,
``rollout promoted``, ``rollout rolled back`` and ``stopped``. :func:`plan_change` is the pure part: given the
service's open intervals and a :class:`ServedChange`, it says which intervals close
(with when and why) and which begin, with no database and no clock (the change carries
its time). :func:`record_change` is the adapter: it reads the open rows, applies the
plan and writes it in one transaction, so a failure leaves nothing half-written;
:func:`served_history` reads the intervals back for the report.

Rules: a service has at most one open ``serving`` interval. ``serve started`` closes
any interval a previous run left open (it was not stopped cleanly) and opens one.
``variant switched`` (the controller moved the service to another of its model
variants in place) closes the serving interval and opens the new variant's. A
rollout adds the canary's closed interval (its share of requests from ``canary_since``
to the verdict); a promotion also closes the serving interval and opens the new
version's. ``stopped`` closes whatever is open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from edgewise.kb.models import ServedVersion

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from edgewise.kb.store import KnowledgeBase

__all__ = [
    "CANARY",
    "SERVING",
    "Change",
    "Interval",
    "ServedChange",
    "ServedModel",
    "intervals_in",
    "plan_change",
    "record_change",
    "served_history",
]

SERVING = "serving"
"""Role of the version that answers every request (the canary share aside)."""
CANARY = "canary"
"""Role of a version a rollout sent its canary share of requests to."""

Change = Literal[
    "serve started", "variant switched", "rollout promoted", "rollout rolled back", "stopped"
]

_UNCLEAN = "not stopped cleanly: serve started again"
_ROLLOUT_STARTED = "rollout started"


@dataclass(frozen=True)
class ServedModel:
    """A model as a service serves it.

    Attributes
    ----------
    ref : str
        The reference as resolved (``NAME:vN``, a zoo name or a file path).
    model : str
        Registry name, zoo name or file path.
    version : int or None
        Registry version (``None`` outside the registry).
    """

    ref: str
    model: str
    version: int | None = None


@dataclass(frozen=True)
class Interval:
    """One interval of a version in a role at a service (a ``served_versions`` row).

    Attributes
    ----------
    service : str
        The service's name.
    served : ServedModel
        What answered.
    role : str
        :data:`SERVING` or :data:`CANARY`.
    since, until : datetime, datetime or None
        UTC bounds; ``until`` is ``None`` while it serves.
    started_because, ended_because : str, str or None
        Why it began and why it ended.
    id : int or None
        The row's id (``None`` before it is written).
    """

    service: str
    served: ServedModel
    role: str
    since: datetime
    until: datetime | None = None
    started_because: str = ""
    ended_because: str | None = None
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (times as ISO text)."""
        return {
            "service": self.service,
            "ref": self.served.ref,
            "model": self.served.model,
            "version": self.served.version,
            "role": self.role,
            "since": self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "started_because": self.started_because,
            "ended_because": self.ended_because,
        }


@dataclass(frozen=True)
class ServedChange:
    """Something that changed what a service serves.

    Attributes
    ----------
    service : str
        The service's name.
    change : Change
        What happened.
    at : datetime
        When (timezone-aware).
    served : ServedModel or None
        ``serve started``, ``variant switched``: what serves now; a rollout: the version
        rolled out.
    canary_since : datetime or None
        A rollout: when its canary began answering.
    reason : str
        A rollback: the gate's reason.
    """

    service: str
    change: Change
    at: datetime
    served: ServedModel | None = None
    canary_since: datetime | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.change != "stopped" and self.served is None:
            raise ValueError(f"{self.change!r} needs the model it concerns")
        if self.change.startswith("rollout") and self.canary_since is None:
            raise ValueError(f"{self.change!r} needs the canary's start")


def _closed(interval: Interval, at: datetime, why: str) -> Interval:
    return replace(interval, until=max(at, interval.since), ended_because=why)


def plan_change(
    open_intervals: Sequence[Interval], change: ServedChange
) -> tuple[list[Interval], list[Interval]]:
    """The intervals that close and the ones that begin for ``change``.

    Parameters
    ----------
    open_intervals : sequence of Interval
        The service's intervals with no ``until`` (as stored).
    change : ServedChange
        What happened, and when.

    Returns
    -------
    closed : list of Interval
        Open intervals with ``until`` and ``ended_because`` set.
    new : list of Interval
        Intervals to add (a canary's is already closed; a serving one is open).
    """
    mine = [i for i in open_intervals if i.service == change.service and i.until is None]
    at = change.at
    if change.change == "stopped":
        return [_closed(i, at, "stopped") for i in mine], []
    assert change.served is not None  # checked by ServedChange
    if change.change == "serve started":
        serving = Interval(change.service, change.served, SERVING, at, None, "serve started")
        return [_closed(i, at, _UNCLEAN) for i in mine], [serving]
    if change.change == "variant switched":
        why = "variant switched"
        serving = Interval(change.service, change.served, SERVING, at, None, why)
        return [_closed(i, at, why) for i in mine], [serving]
    assert change.canary_since is not None
    since = min(change.canary_since, at)
    if change.change == "rollout rolled back":
        why = "rollout rolled back" + (f": {change.reason}" if change.reason else "")
        canary = Interval(change.service, change.served, CANARY, since, at, _ROLLOUT_STARTED, why)
        return [], [canary]
    why = "rollout promoted"
    canary = Interval(change.service, change.served, CANARY, since, at, _ROLLOUT_STARTED, why)
    serving = Interval(change.service, change.served, SERVING, at, None, why)
    return [_closed(i, at, why) for i in mine], [canary, serving]


def _interval(row: ServedVersion) -> Interval:
    return Interval(
        service=row.service,
        served=ServedModel(row.ref, row.model, row.version),
        role=row.role,
        since=row.since,
        until=row.until,
        started_because=row.started_because,
        ended_because=row.ended_because,
        id=row.id,
    )


def record_change(kb: KnowledgeBase, change: ServedChange) -> list[Interval]:
    """Write ``change`` to the knowledge base, all of it or nothing.

    Parameters
    ----------
    kb : KnowledgeBase
        Where the intervals live.
    change : ServedChange
        What happened.

    Returns
    -------
    list of Interval
        The intervals closed and added, as written.
    """
    with kb.transaction() as session:
        rows = session.scalars(
            select(ServedVersion)
            .where(ServedVersion.service == change.service, ServedVersion.until.is_(None))
            # PostgreSQL: a stop and a promotion at once do not both close one row
            .with_for_update()
        ).all()
        closed, new = plan_change([_interval(r) for r in rows], change)
        by_id = {r.id: r for r in rows}
        for interval in closed:
            row = by_id[int(interval.id or 0)]
            row.until = interval.until
            row.ended_because = interval.ended_because
        added = [
            ServedVersion(
                service=i.service,
                model=i.served.model,
                version=i.served.version,
                ref=i.served.ref,
                role=i.role,
                since=i.since,
                until=i.until,
                started_because=i.started_because,
                ended_because=i.ended_because,
            )
            for i in new
        ]
        session.add_all(added)
        session.flush()
        return closed + [_interval(r) for r in added]


def intervals_in(session: Session, service: str | None = None) -> list[Interval]:
    """The recorded intervals (of ``service``, or of all) in an open session, by service
    then start (the report reads them inside its one snapshot).

    Parameters
    ----------
    session : Session
        A knowledge-base session.
    service : str, optional
        Only this service's intervals.

    Returns
    -------
    list of Interval
        Oldest first within each service.
    """
    query = select(ServedVersion).order_by(
        ServedVersion.service, ServedVersion.since, ServedVersion.id
    )
    if service is not None:
        query = query.where(ServedVersion.service == service)
    return [_interval(r) for r in session.scalars(query).all()]


def served_history(kb: KnowledgeBase, service: str | None = None) -> list[Interval]:
    """Every recorded interval (of ``service``, or of all), by service then start.

    Parameters
    ----------
    kb : KnowledgeBase
        The knowledge base.
    service : str, optional
        Only this service's intervals.

    Returns
    -------
    list of Interval
        Oldest first within each service.
    """
    with kb.snapshot() as session:
        return intervals_in(session, service)
