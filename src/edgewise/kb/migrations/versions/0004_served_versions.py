"""Which model version served when: one ``served_versions`` row per interval of a service.

Columns are spelled with plain SQLAlchemy types (the DDL ``edgewise.kb.models`` emits),
so this file never changes when the models do. No data moves: older knowledge bases
simply recorded no intervals.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``served_versions`` (indexed by service)."""
    op.create_table(
        "served_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("ref", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_because", sa.String(), nullable=False),
        sa.Column("ended_because", sa.String(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_served_versions")),
    )
    op.create_index(
        op.f("ix_served_versions_service"), "served_versions", ["service"], unique=False
    )


def downgrade() -> None:
    """Drop the served-versions table."""
    op.drop_index(op.f("ix_served_versions_service"), table_name="served_versions")
    op.drop_table("served_versions")
