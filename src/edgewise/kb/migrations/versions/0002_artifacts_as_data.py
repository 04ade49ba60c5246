"""Artifacts as data; drop the never-written ``hosts`` and ``devices`` tables.

Every ``fitted_models`` row whose ``blob`` is a pickle (as edgewise 0.1 wrote them) is
replaced by a versioned data document (see :mod:`edgewise.kb.codecs`); its
``meta.sha256`` and ``meta.format`` are updated to match. This is the one place that
unpickles: once, with :func:`edgewise.kb.legacy.convert_pickle`'s restricted
unpickler, rows written by our own earlier release. Rows already stored as documents
are left alone. ``footprints.host_id`` pointed at ``hosts`` and was never set either.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

from edgewise.kb.legacy import convert_pickle, is_pickle

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_fitted = sa.table(
    "fitted_models",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("meta", sa.JSON),
    sa.column("blob", sa.LargeBinary),
)


def _convert_artifacts() -> None:
    """Rewrite each pickled ``fitted_models`` row as a data document (one row at a time)."""
    conn = op.get_bind()
    ids = list(conn.scalars(sa.select(_fitted.c.id).order_by(_fitted.c.id)))
    for row_id in ids:
        kind, meta, blob = conn.execute(
            sa.select(_fitted.c.kind, _fitted.c.meta, _fitted.c.blob).where(_fitted.c.id == row_id)
        ).one()
        blob = bytes(blob)
        if not is_pickle(blob):
            continue
        meta = dict(meta or {})
        doc, fmt = convert_pickle(str(kind), blob, str(meta.get("python_type", "unknown")))
        meta.update(sha256=hashlib.sha256(doc).hexdigest(), format=fmt)
        conn.execute(sa.update(_fitted).where(_fitted.c.id == row_id).values(blob=doc, meta=meta))


def upgrade() -> None:
    """Drop ``hosts``/``devices`` (and ``footprints.host_id``), convert pickles to data."""
    with op.batch_alter_table("footprints") as batch:
        batch.drop_constraint("fk_footprints_host_id_hosts", type_="foreignkey")
        batch.drop_column("host_id")
    op.drop_table("devices")
    op.drop_table("hosts")
    _convert_artifacts()
    op.execute(
        sa.text("INSERT INTO edgewise_schema (created_at, version) VALUES (CURRENT_TIMESTAMP, 2)")
    )


def downgrade() -> None:
    """Recreate the empty tables and the column; artifacts stay data (no pickling back)."""
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("cgroup_version", sa.Integer(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hosts"),
        sa.UniqueConstraint("name", name="uq_hosts_name"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name="fk_devices_host_id_hosts", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
    )
    op.create_index("ix_devices_host_id", "devices", ["host_id"], unique=False)
    op.create_index("ix_devices_name", "devices", ["name"], unique=False)
    with op.batch_alter_table("footprints") as batch:
        batch.add_column(sa.Column("host_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_footprints_host_id_hosts", "hosts", ["host_id"], ["id"], ondelete="SET NULL"
        )
    op.execute(sa.text("DELETE FROM edgewise_schema WHERE version = 2"))
