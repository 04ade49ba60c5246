"""A campaign in the knowledge base: open or resume it, read and store its runs.

Effectful (KB transactions only). Each run is stored in its own transaction as it
finishes, so an interrupted campaign keeps every run made before the interruption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from edgewise.errors import EdgewiseError
from edgewise.interference.campaign.config import CampaignConfig
from edgewise.interference.campaign.fit import PoolSet
from edgewise.interference.campaign.measure import Measured
from edgewise.interference.campaign.records import RunRecord
from edgewise.interference.footprint import ensure_workload


@dataclass(frozen=True)
class StoredCampaign:
    """A campaign as the knowledge base holds it: its status and the workload it profiles."""

    name: str
    status: str
    workload: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_rps(self) -> float | None:
        """The request rate a zoo target was served at (``None`` for a command)."""
        rate = self.params.get("rate_rps")
        return float(rate) if rate is not None else None


def find_campaign(kb: Any, name: str) -> StoredCampaign | None:
    """Campaign ``name`` with its target workload, or ``None`` if there is none."""
    from edgewise.kb import models as m

    with kb.snapshot() as s:
        c = s.scalars(select(m.Campaign).where(m.Campaign.name == name)).first()
        if c is None:
            return None
        w = s.get(m.Workload, c.target_workload_id)
        return StoredCampaign(
            name=str(c.name),
            status=str(c.status),
            workload=str(w.name) if w is not None else "",
            kind=str(w.kind) if w is not None else "",
            params=dict(w.params or {}) if w is not None else {},
        )


def campaign_exists_error(name: str, status: str) -> EdgewiseError:
    """The one-line error for starting a campaign whose name is taken, without ``--resume``."""
    return EdgewiseError(
        f"campaign {name!r} already exists ({status}): pass --resume to continue it"
    )


def open_campaign(kb: Any, cfg: CampaignConfig, target: Any, resume: bool) -> int:
    """The id of campaign ``cfg.name``, created (or, with ``resume``, reopened) as running.

    Raises
    ------
    EdgewiseError
        The campaign exists and ``resume`` is false.
    """
    from edgewise.kb import models as m

    with kb.transaction() as s:
        c = s.scalars(select(m.Campaign).where(m.Campaign.name == cfg.name)).first()
        if c is not None and not resume:
            raise campaign_exists_error(cfg.name, str(c.status))
        if c is None:
            w = ensure_workload(s, target.name, target.kind, target.params)
            c = m.Campaign(
                name=cfg.name,
                target_workload_id=w.id,
                status="running",
                config=cfg.to_json(),
            )
            s.add(c)
            s.flush()
        else:
            c.status = "running"
        return int(c.id)


def _record(row: Any) -> RunRecord:
    return RunRecord(
        index=int(row.index),
        design=dict(row.design),
        achieved=dict(row.achieved),
        latency=dict(row.latency),
        status=str(row.status),
        flags=tuple(row.flags or ()),
        id=int(row.id),
    )


def runs_of(kb: Any, campaign_id: int) -> list[RunRecord]:
    """Every stored run of campaign ``campaign_id``, in index order."""
    from edgewise.kb import models as m

    with kb.snapshot() as s:
        rows = s.scalars(
            select(m.Run).where(m.Run.campaign_id == campaign_id).order_by(m.Run.index)
        ).all()
        return [_record(r) for r in rows]


def store_run(
    kb: Any,
    campaign_id: int,
    index: int,
    meas: Measured,
    status: str,
    flags: list[str],
    started: float,
) -> None:
    """Store one run and its foreign-load sample in their own transaction."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        run = m.Run(
            campaign_id=campaign_id,
            index=index,
            design=meas.design,
            achieved=meas.achieved,
            latency=meas.latency,
            status=status,
            flags=flags,
            started_at=datetime.fromtimestamp(started, UTC),
            finished_at=datetime.now(UTC),
        )
        s.add(run)
        s.flush()
        s.add(m.Sample(run_id=run.id, t=0.0, metrics={"foreign_cpu": meas.foreign, **meas.raw}))


def set_status(kb: Any, campaign_id: int, status: str) -> None:
    """Mark the campaign ``status`` (``done`` also stamps its finish time)."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        c = s.get(m.Campaign, campaign_id)
        if c is not None:
            c.status = status
            if status == "done":
                c.finished_at = datetime.now(UTC)


def campaign_records(kb: Any, name: str) -> list[RunRecord]:
    """Every stored run of campaign ``name`` as records (index order; none if unknown)."""
    from edgewise.kb import models as m

    with kb.snapshot() as s:
        c = s.scalars(select(m.Campaign).where(m.Campaign.name == name)).first()
        if c is None:
            return []
        rows = s.scalars(select(m.Run).where(m.Run.campaign_id == c.id).order_by(m.Run.index))
        return [_record(r) for r in rows]


def campaign_runs(kb: Any, name: str) -> list[dict[str, Any]]:
    """Every stored run of campaign ``name`` as plain dicts (index order)."""
    return [r.as_dict() for r in campaign_records(kb, name)]


def load_pool(kb: Any, exclude: str = "") -> list[PoolSet]:
    """Runs behind the newest surrogate of every other workload (the transfer pool)."""
    from edgewise.kb import models as m

    with kb.snapshot() as s:
        rows = s.scalars(
            select(m.FittedModel)
            .where(m.FittedModel.kind == "surrogate")
            .order_by(m.FittedModel.version.desc())
        ).all()
        latest: dict[str, str] = {}
        for row in rows:
            if row.name != exclude and row.name not in latest:
                campaign = (row.meta or {}).get("campaign")
                if campaign:
                    latest[row.name] = str(campaign)
    pool = []
    for workload, campaign in sorted(latest.items()):
        runs = [r for r in campaign_records(kb, campaign) if r.is_ok]
        if runs:
            pool.append(PoolSet(workload, tuple(runs)))
    return pool


def attach_holdout(kb: Any, workload: str, campaign: str, rows: list[dict[str, float]]) -> None:
    """Write ``holdout`` into the metrics of the surrogate fitted by ``campaign``."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        for fm in s.scalars(
            select(m.FittedModel).where(
                m.FittedModel.kind == "surrogate", m.FittedModel.name == workload
            )
        ):
            if (fm.meta or {}).get("campaign") == campaign:
                fm.metrics = {**dict(fm.metrics or {}), "holdout": rows}
