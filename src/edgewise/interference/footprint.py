"""Footprints: resource vectors of workloads, stressor mixes and measured combinations.

Pure part: :func:`combine` estimates a co-location's vector from solo footprints
(additive resources saturate at 1; LLC pressure combines as 1 - Π(1 - x));
:func:`parse_stressor` reads ``stress:cpu=0.5,membw=0.2`` names; :func:`nearest`
matches a vector to the closest known entry. KB part: store and look up footprints,
and :func:`colocation_vector` which prefers a measured combination and says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select

from edgewise.config import RESOURCES
from edgewise.errors import SpecError, UnknownNameError
from edgewise.interference.stressors import validate_intensity

SATURATING: frozenset[str] = frozenset({"cpu", "membw", "disk", "net", "mem"})


class StressorSpecError(UnknownNameError, SpecError):
    """A ``stress:...`` name that does not say a stress mix (both kinds of error: it is
    an unknown workload name and a malformed specification, as callers caught either)."""


def vector(resources: Mapping[str, Any]) -> dict[str, float]:
    """The normalised resource entries of a footprint (missing ones are 0)."""
    return {r: float(resources.get(r, 0.0) or 0.0) for r in RESOURCES}


def combine(footprints: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Estimated vector of workloads running together (no measurement)."""
    out = dict.fromkeys(RESOURCES, 0.0)
    keep_llc = 1.0
    for fp in footprints:
        v = vector(fp)
        for r in SATURATING:
            out[r] += v[r]
        keep_llc *= 1.0 - min(1.0, v["llc"])
    for r in SATURATING:
        out[r] = min(1.0, out[r])
    out["llc"] = 1.0 - keep_llc
    return out


def combination_key(names: Sequence[str]) -> str:
    """Sorted '+'-joined names: the KB key of a measured combination."""
    return "+".join(sorted(names))


def parse_stressor(name: str) -> dict[str, float] | None:
    """``stress:cpu=0.5,membw=0.2`` -> intensities; None if ``name`` is not a stressor.

    Raises
    ------
    StressorSpecError
        A stressor naming no resource (``stress:``, ``stress:=0.5``), a resource with no
        value or a value that is not a number (``stress:cpu=``, ``stress:cpu=x``), an
        unknown resource or an intensity outside [0, 1]; the message names ``name``.
    """
    if not name.startswith("stress:"):
        return None
    body = name[len("stress:") :]
    expected = f"expected stress:RES=VALUE,... with RES one of {', '.join(RESOURCES)}"
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, val = (t.strip() for t in part.partition("="))
        if not sep or not key:
            raise StressorSpecError(
                f"bad stressor {name!r}: {part!r} names no resource; {expected}"
            )
        if not val:
            raise StressorSpecError(f"bad stressor {name!r}: no value for {key}; {expected}")
        if key in out:
            raise StressorSpecError(f"bad stressor {name!r}: {key} is given twice")
        try:
            out[key] = float(val)
        except ValueError:
            raise StressorSpecError(f"bad stressor {name!r}: {val!r} is not a number") from None
    if not out:
        raise StressorSpecError(f"bad stressor {name!r}: it names no resource; {expected}")
    try:
        return validate_intensity(out)
    except SpecError as err:
        raise StressorSpecError(f"bad stressor {name!r}: {err}") from None


def nearest(
    target: Mapping[str, float], entries: Mapping[str, Mapping[str, float]]
) -> tuple[str, float]:
    """Name and Euclidean distance of the entry closest to ``target``."""
    if not entries:
        raise UnknownNameError("no footprints to match against")
    t = np.array(list(vector(target).values()))
    best, dist = "", float("inf")
    for name, fp in entries.items():
        d = float(np.linalg.norm(np.array(list(vector(fp).values())) - t))
        if d < dist:
            best, dist = name, d
    return best, dist


# --------------------------------------------------------------------------- KB
def ensure_workload(session: Any, name: str, kind: str, params: Mapping[str, Any]) -> Any:
    """The Workload row called ``name``, created if needed."""
    from edgewise.kb import models as m

    row = session.scalars(select(m.Workload).where(m.Workload.name == name)).first()
    if row is None:
        row = m.Workload(name=name, kind=kind, params=dict(params))
        session.add(row)
        session.flush()
    return row


def store_footprint(
    kb: Any,
    workload: str,
    resources: Mapping[str, Any],
    *,
    kind: str = "zoo",
    params: Mapping[str, Any] | None = None,
    source: str = "solo",
    combination: Sequence[str] | None = None,
) -> int:
    """Store a solo footprint (or a measured combination's); returns its id."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        w = ensure_workload(s, workload, kind, params or {})
        fp = m.Footprint(
            workload_id=w.id,
            combination_key=combination_key(combination) if combination else None,
            resources=dict(resources),
            source="combination" if combination else source,
        )
        s.add(fp)
        s.flush()
        return int(fp.id)


def lookup_footprint(kb: Any, name: str) -> dict[str, Any]:
    """Latest solo footprint of workload ``name`` (stressor names are parsed directly)."""
    st = parse_stressor(name)
    if st is not None:
        return vector(st)
    from edgewise.kb import models as m

    with kb.snapshot() as s:
        row = s.scalars(
            select(m.Footprint)
            .join(m.Workload, m.Footprint.workload_id == m.Workload.id)
            .where(m.Workload.name == name, m.Footprint.combination_key.is_(None))
            .order_by(m.Footprint.id.desc())
        ).first()
        if row is None:
            known = list(s.scalars(select(m.Workload.name).order_by(m.Workload.name)))
            raise UnknownNameError(
                f"no footprint for workload {name!r} in the KB"
                + (f"; known: {', '.join(known)}" if known else "; run `edgewise profile` first")
            )
        return dict(row.resources)


def lookup_combination(kb: Any, names: Sequence[str]) -> dict[str, Any] | None:
    """A measured combination's footprint, or None."""
    from edgewise.kb import models as m

    key = combination_key(names)
    with kb.snapshot() as s:
        row = s.scalars(
            select(m.Footprint)
            .where(m.Footprint.combination_key == key)
            .order_by(m.Footprint.id.desc())
        ).first()
        return dict(row.resources) if row is not None else None


def colocation_vector(kb: Any, names: Sequence[str]) -> tuple[dict[str, float], str]:
    """Resource vector of ``names`` running together and its source.

    Returns ``(vector, 'measured')`` if that combination is in the KB, otherwise
    ``(combine(footprints), 'estimated')``; no neighbours gives zeros and ``'solo'``.
    """
    if not names:
        return dict.fromkeys(RESOURCES, 0.0), "solo"
    if len(names) > 1:
        measured = lookup_combination(kb, names)
        if measured is not None:
            return vector(measured), "measured"
    fps = [lookup_footprint(kb, n) for n in names]
    if len(names) == 1:
        return vector(fps[0]), "measured"
    return combine(fps), "estimated"
