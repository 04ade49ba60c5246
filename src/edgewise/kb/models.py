"""ORM models of the knowledge base (SQLAlchemy 2.0 typed declarative).

The class and column names here are the contract the other modules code against.
Every table has an integer ``id`` primary key and a ``created_at`` timestamp (UTC,
timezone-aware, filled in on insert). JSON columns are :class:`sqlalchemy.JSON` and hold
plain dicts and lists; SQLAlchemy does not track in-place mutation of them, so assign a
new value (``row.state = {**row.state, "k": 1}``) to persist a change.

Only portable column types are used (integers, floats, strings, JSON, binary, UTC
timestamps), so the same schema runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JSONDict = dict[str, Any]

# Explicit constraint names keep DDL identical across dialects and make migrations sane.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime (default for timestamp columns)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (UTC).

    Naive datetimes are refused on the way in: a naive value is ambiguous (local time
    or UTC?) and storing it would silently shift it. SQLite has no time zone type, so
    there the value is stored as naive UTC text and the zone is re-attached on load.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused: pass a timezone-aware value"
            )
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class TimestampText(TypeDecorator[str]):
    """Text column that also accepts a timezone-aware datetime, stored as ISO-8601 UTC.

    Used for :attr:`Forecast.origin`, which is either a timestamp or a free label (for
    example a rolling-origin index). Values always come back as ``str``.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value: datetime | str | None, dialect: Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(
                    f"naive datetime {value.isoformat()} refused: pass a timezone-aware value"
                )
            return value.astimezone(UTC).isoformat()
        raise TypeError(f"expected a datetime or str, got {type(value).__name__}")

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return value


def _json_dict() -> JSONDict:
    return {}


def _json_list() -> list[Any]:
    return []


class Base(DeclarativeBase):
    """Declarative base: ``id`` primary key and ``created_at`` on every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True, sort_order=-2)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, nullable=False, sort_order=-1
    )

    def __repr__(self) -> str:
        cols = ", ".join(
            f"{c.key}={getattr(self, c.key, None)!r}"
            for c in self.__table__.columns
            if c.key in ("id", "name", "kind", "key", "status") and c.key in self.__dict__
        )
        return f"{type(self).__name__}({cols})"


class SchemaVersion(Base):
    """Versions of the edgewise schema this database has been opened with."""

    __tablename__ = "edgewise_schema"

    version: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)


# ---------------------------------------------------------- workloads and footprints


class Workload(Base):
    """A named workload: a zoo model at a rate, a command, a stressor or a training job."""

    __tablename__ = "workloads"

    name: Mapped[str] = mapped_column(String, unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String, nullable=False)  # zoo, command, stressor, training
    params: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)


class Footprint(Base):
    """Resource footprint of a workload (solo), a combination, or a stressor setting."""

    __tablename__ = "footprints"
    __table_args__ = (Index(None, "combination_key"),)

    workload_id: Mapped[int | None] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # Sorted '+'-joined workload names of a measured combination, else None.
    combination_key: Mapped[str | None] = mapped_column(String, nullable=True)
    # {cpu, membw, llc, disk, net, mem: float in [0, 1]+, plus raw values}
    resources: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    source: Mapped[str] = mapped_column(String, nullable=False)  # solo, combination, stressor


# ------------------------------------------------------- campaigns, runs, samples


class Campaign(Base):
    """A profiling campaign: a design of experiments against one target workload."""

    __tablename__ = "campaigns"

    name: Mapped[str] = mapped_column(String, unique=True, nullable=False)
    target_workload_id: Mapped[int] = mapped_column(
        ForeignKey("workloads.id"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String, nullable=False, default="running")
    config: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    runs: Mapped[list[Run]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", passive_deletes=True
    )


class Run(Base):
    """One experiment of a campaign: requested and achieved intensities, latency."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
    )
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    design: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    achieved: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    # {p50, p95, p99, mean, n}
    latency: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    status: Mapped[str] = mapped_column(String, nullable=False, default="ok")  # ok/flagged/failed
    flags: Mapped[Any] = mapped_column(JSON, default=_json_list, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    campaign: Mapped[Campaign] = relationship(back_populates="runs")
    samples: Mapped[list[Sample]] = relationship(
        back_populates="run", cascade="all, delete-orphan", passive_deletes=True
    )


class Sample(Base):
    """A telemetry sample taken during a run (``t`` in seconds from the run's start)."""

    __tablename__ = "samples"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    t: Mapped[float] = mapped_column(Float, nullable=False)
    metrics: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)

    run: Mapped[Run] = relationship(back_populates="samples")


# ---------------------------------------------------------------- fitted models


class FittedModel(Base):
    """A fitted model (surrogate, forecaster, calibration...) stored as data with its metadata.

    ``blob`` is a versioned JSON document (see :mod:`edgewise.kb.codecs`), never a
    pickle; it is deferred, so listing models does not load it. ``meta.format`` names
    its format.
    """

    __tablename__ = "fitted_models"
    __table_args__ = (UniqueConstraint("kind", "name", "version"),)

    kind: Mapped[str] = mapped_column(String, nullable=False)
    name: Mapped[str] = mapped_column(String, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    features: Mapped[list[Any]] = mapped_column(JSON, default=_json_list, nullable=False)
    training_ids: Mapped[list[Any]] = mapped_column(JSON, default=_json_list, nullable=False)
    metrics: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    meta: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    blob: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)


# ------------------------------------------------------------- serving pillar


class CapacityProfile(Base):
    """Measured service time of a (model, flavor, batch) and the capacity it gives."""

    __tablename__ = "capacity_profiles"
    __table_args__ = (Index(None, "model", "flavor"),)

    model: Mapped[str] = mapped_column(String, nullable=False)
    flavor: Mapped[str] = mapped_column(String, nullable=False)
    batch_size: Mapped[int] = mapped_column(Integer, nullable=False)
    host: Mapped[str] = mapped_column(String, nullable=False)
    cpus: Mapped[float] = mapped_column(Float, nullable=False)
    # {p50, p95, p99, mean, samples: [...]}
    service_ms: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    slo_ms: Mapped[float] = mapped_column(Float, nullable=False)
    percentile: Mapped[float] = mapped_column(Float, nullable=False)
    capacity_rps: Mapped[float] = mapped_column(Float, nullable=False)
    validation: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)


class Forecast(Base):
    """A forecast of a series from an origin: mean and prediction intervals per level."""

    __tablename__ = "forecasts"
    __table_args__ = (Index(None, "series", "method"),)

    series: Mapped[str] = mapped_column(String, nullable=False)
    method: Mapped[str] = mapped_column(String, nullable=False)
    # A timezone-aware datetime (stored as ISO-8601 UTC text) or a free label.
    origin: Mapped[datetime | str] = mapped_column(TimestampText(), nullable=False)
    horizon: Mapped[int] = mapped_column(Integer, nullable=False)
    # {mean: [...], lower: {level: [...]}, upper: {level: [...]}}
    values: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)


class Plan(Base):
    """A decision of a planner (serving or retrain) with its inputs and cost."""

    __tablename__ = "plans"

    kind: Mapped[str] = mapped_column(String, nullable=False)  # serving, retrain
    inputs: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    decision: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)


class ScalingEvent(Base):
    """An action of an autoscaling policy at time ``t`` (seconds) of a run."""

    __tablename__ = "scaling_events"

    run_key: Mapped[str] = mapped_column(String, nullable=False, index=True)
    t: Mapped[float] = mapped_column(Float, nullable=False)
    policy: Mapped[str] = mapped_column(String, nullable=False)
    action: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)


class PolicyState(Base):
    """The explicit state of a pure policy, stored between decisions (one row per key)."""

    __tablename__ = "policy_states"

    key: Mapped[str] = mapped_column(String, unique=True, nullable=False)
    policy: Mapped[str] = mapped_column(String, nullable=False)
    state: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


# ------------------------------------------------------------- retrain pillar


class TrainingJob(Base):
    """A (distributed) re-training job."""

    __tablename__ = "training_jobs"

    name: Mapped[str] = mapped_column(String, nullable=False, index=True)
    model: Mapped[str] = mapped_column(String, nullable=False)
    # running, done, failed, interrupted
    status: Mapped[str] = mapped_column(String, nullable=False, default="running")
    config: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    metrics: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    checkpoints: Mapped[list[Checkpoint]] = relationship(
        back_populates="job", cascade="all, delete-orphan", passive_deletes=True
    )


class Checkpoint(Base):
    """A checkpoint file written by a training job at a given step."""

    __tablename__ = "checkpoints"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="CASCADE"), nullable=False, index=True
    )
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    path: Mapped[str] = mapped_column(String, nullable=False)
    meta: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)

    job: Mapped[TrainingJob] = relationship(back_populates="checkpoints")


# ------------------------------------------------------------- model registry


class RegisteredModel(Base):
    """A version of a user's model in the registry (:mod:`edgewise.registry`).

    ``path`` is the stored artifact, relative to the state directory, named by its
    content's ``sha256``; ``card`` is the model card as data. Lineage: ``parent`` is the
    ``NAME:vN`` it was re-trained from, ``data_fingerprint`` the data it was trained on,
    ``accuracy_before``/``accuracy_after`` the held-out accuracy of the parent and of
    this version.
    """

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    name: Mapped[str] = mapped_column(String, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    format: Mapped[str] = mapped_column(String, nullable=False)
    sha256: Mapped[str] = mapped_column(String, nullable=False, index=True)
    path: Mapped[str] = mapped_column(String, nullable=False)
    card: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)
    parent: Mapped[str | None] = mapped_column(String, nullable=True)
    data_fingerprint: Mapped[str | None] = mapped_column(String, nullable=True)
    accuracy_before: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_after: Mapped[float | None] = mapped_column(Float, nullable=True)
    meta: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)


class ServedVersion(Base):
    """An interval during which a model version answered a running service's requests.

    One row per version and role: ``serving`` answers every request (one open row per
    running service), ``canary`` answered a rollout's canary share. ``since`` and
    ``until`` are UTC (``until`` is ``None`` while it serves); ``started_because`` and
    ``ended_because`` say why (``serve started``, ``rollout promoted``, ``rollout rolled
    back: <reason>``, ``stopped``). ``model`` and ``version`` are the registry name and
    version number, or the zoo name or file path with no version; ``ref`` is the
    reference as the service resolved it. Written by :mod:`edgewise.kb.served`.
    """

    __tablename__ = "served_versions"

    service: Mapped[str] = mapped_column(String, nullable=False, index=True)
    model: Mapped[str] = mapped_column(String, nullable=False)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ref: Mapped[str] = mapped_column(String, nullable=False)
    role: Mapped[str] = mapped_column(String, nullable=False)
    since: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_because: Mapped[str] = mapped_column(String, nullable=False)
    ended_because: Mapped[str | None] = mapped_column(String, nullable=True)
    meta: Mapped[JSONDict] = mapped_column(JSON, default=_json_dict, nullable=False)


# The user-facing tables in a stable order (parents before children); the schema
# bookkeeping table is left out.
MODELS: tuple[type[Base], ...] = (
    Workload,
    Footprint,
    Campaign,
    Run,
    Sample,
    FittedModel,
    CapacityProfile,
    Forecast,
    Plan,
    ScalingEvent,
    PolicyState,
    TrainingJob,
    Checkpoint,
    RegisteredModel,
    ServedVersion,
)

__all__ = [
    "MODELS",
    "Base",
    "Campaign",
    "CapacityProfile",
    "Checkpoint",
    "FittedModel",
    "Footprint",
    "Forecast",
    "Plan",
    "PolicyState",
    "RegisteredModel",
    "Run",
    "Sample",
    "ScalingEvent",
    "SchemaVersion",
    "ServedVersion",
    "TrainingJob",
    "Workload",
    "utcnow",
]
