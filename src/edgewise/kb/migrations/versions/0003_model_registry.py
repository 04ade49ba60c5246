"""The model registry: one ``model_versions`` row per registered version of a user's model.

Columns are spelled with plain SQLAlchemy types (the DDL ``edgewise.kb.models`` emits),
so this file never changes when the models do. No data moves: older knowledge bases
simply had no registry.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``model_versions`` (unique per name and version, indexed by content hash)."""
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("parent", sa.String(), nullable=True),
        sa.Column("data_fingerprint", sa.String(), nullable=True),
        sa.Column("accuracy_before", sa.Float(), nullable=True),
        sa.Column("accuracy_after", sa.Float(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_versions_name_version")),
    )
    op.create_index(op.f("ix_model_versions_sha256"), "model_versions", ["sha256"], unique=False)


def downgrade() -> None:
    """Drop the registry table (the stored artifact files stay on disk)."""
    op.drop_index(op.f("ix_model_versions_sha256"), table_name="model_versions")
    op.drop_table("model_versions")
