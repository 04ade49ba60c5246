"""Alembic environment: migrate the connection :mod:`edgewise.kb.migrate` hands over.

Runs online only, inside the caller's transaction (the caller holds the write lock and
commits), with batch mode so that column drops work on SQLite too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from edgewise.kb.models import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "the edgewise migrations run through edgewise.kb.migrate with an open connection"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
