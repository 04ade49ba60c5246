"""Capacity profiles in the knowledge base: store one, find the newest for a flavor.

The knowledge-base adapter of profiling. Rows are
:class:`edgewise.kb.models.CapacityProfile` with the layout of
:meth:`~.records.ServiceSummary.as_dict` and :meth:`~.records.Validation.as_dict` in their
JSON columns; :func:`read_profile` returns a typed :class:`~.records.StoredProfile`,
:func:`find_profile` the row itself.
"""

from __future__ import annotations

import math
import socket
from typing import TYPE_CHECKING, TypedDict, Unpack

from edgewise.errors import EdgewiseError
from edgewise.serving.profiles.records import FlavorProfile, StoredProfile

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from edgewise.kb import KnowledgeBase
    from edgewise.kb.models import CapacityProfile


class MissingProfileError(EdgewiseError):
    """No capacity profile in the knowledge base for a (model, flavor) the planner needs."""


def host_name() -> str:
    """The name profiles measured here are stored under."""
    return socket.gethostname()


def save_profile(kb: KnowledgeBase, profile: FlavorProfile, host: str | None = None) -> int:
    """Store ``profile`` as a CapacityProfile row; returns its id."""
    from edgewise.kb import models as m

    row = m.CapacityProfile(
        model=profile.model,
        flavor=profile.flavor,
        batch_size=profile.batch_size,
        host=host or host_name(),
        cpus=profile.cpus,
        service_ms=profile.summary().as_dict(),
        slo_ms=profile.slo_ms,
        percentile=profile.percentile,
        capacity_rps=profile.capacity_rps,
        validation=profile.validation_dict(),
    )
    with kb.transaction() as s:
        s.add(row)
        s.flush()
        return int(row.id)


def find_profile(
    session: Session,
    model: str,
    flavor: str,
    cpus: float,
    batch_size: int = 1,
    host: str | None = None,
) -> CapacityProfile | None:
    """Newest profile of (model, flavor, batch) measured at ``cpus``; this host's first."""
    from sqlalchemy import select

    from edgewise.kb import models as m

    rows = session.scalars(
        select(m.CapacityProfile)
        .where(
            m.CapacityProfile.model == model,
            m.CapacityProfile.flavor == flavor,
            m.CapacityProfile.batch_size == batch_size,
        )
        .order_by(m.CapacityProfile.id.desc()),
    ).all()
    rows = [
        r for r in rows if math.isclose(r.cpus, cpus, rel_tol=1e-9) and r.service_ms.get("samples")
    ]
    here = host or host_name()
    for r in rows:
        if r.host == here:
            return r
    return rows[0] if rows else None


class ProfileWhere(TypedDict, total=False):
    """The optional keys of :func:`find_profile` (batch size, host), by name."""

    batch_size: int
    host: str | None


def read_profile(
    session: Session,
    model: str,
    flavor: str,
    cpus: float,
    **where: Unpack[ProfileWhere],
) -> StoredProfile | None:
    """:func:`find_profile` as a typed record (``None`` when there is none)."""
    row = find_profile(session, model, flavor, cpus, **where)
    return StoredProfile.from_row(row) if row is not None else None


def profile_capacity(
    row: CapacityProfile,
    slo_ms: float,
    percentile: float,
    seed: int = 0,
) -> float:
    """Capacity of a stored profile under an SLO (stored value when the SLO is the same)."""
    return StoredProfile.from_row(row).capacity_at(slo_ms, percentile, seed)
