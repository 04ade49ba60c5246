"""Bringing a knowledge base to the current schema with Alembic, on open.

:func:`ensure_schema` runs under the database's write lock (SQLite ``BEGIN
IMMEDIATE``, a PostgreSQL advisory transaction lock), in one transaction, so two
processes opening the same file at once migrate it once and a failed migration leaves
the database as it was:

- an empty database gets the current tables from :mod:`edgewise.kb.models` and is
  stamped at the newest revision;
- a database of edgewise 0.1 (an ``edgewise_schema`` table, no ``alembic_version``) is
  stamped at the baseline revision ``0001`` and upgraded;
- a database at an older revision is upgraded; a SQLite file is first copied to
  ``<file>.bak-<revision>`` next to it (the backup API, so the WAL is included);
- a revision this edgewise does not know (written by a newer one) is refused.

The revisions live in ``edgewise/kb/migrations/versions``; no ``alembic.ini`` is used.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, func, inspect, select, text

from edgewise.errors import EnvironmentProblem
from edgewise.kb.models import Base, SchemaVersion

#: The revision stamped on a database written by edgewise 0.1.
BASELINE_REVISION = "0001"

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works: it only has to be the same for every edgewise process.
_PG_LOCK_KEY = 0x6564676577697365 & 0x7FFFFFFFFFFFFFFF


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the packaged migrations (no ``alembic.ini``)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision of the packaged migrations (read once per process)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its revisions
        raise RuntimeError(f"no Alembic revisions under {_MIGRATIONS}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The database's Alembic revision (``None`` if it was never stamped)."""
    return MigrationContext.configure(connection).get_current_revision()


def backup_path(database: Path, revision: str) -> Path:
    """Where the copy of ``database`` taken before upgrading from ``revision`` goes."""
    return database.with_name(f"{database.name}.bak-{revision}")


def backup_sqlite(database: Path, revision: str) -> Path:
    """Copy the SQLite file (and its WAL) to :func:`backup_path`; return that path."""
    target = backup_path(database, revision)
    tmp = target.with_name(target.name + ".tmp")
    source = sqlite3.connect(str(database))
    try:
        dest = sqlite3.connect(str(tmp))
        try:
            source.backup(dest)
        finally:
            dest.close()
    finally:
        source.close()
    tmp.replace(target)
    return target


def _lock(connection: Connection) -> None:
    """Take the database's write lock for the rest of the transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


def _sqlite_file(engine: Engine) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


def _known(revision: str) -> bool:
    """Whether ``revision`` is one of the packaged migrations."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except (RevisionError, CommandError):
        return False


def _newest_schema_version(connection: Connection) -> int:
    return int(connection.scalar(select(func.max(SchemaVersion.version))) or 0)


def _upgrade(connection: Connection, engine: Engine, revision: str, safe_url: str) -> None:
    """Back up (SQLite file) and run the migrations from ``revision`` to the head."""
    database = _sqlite_file(engine)
    if database is not None and database.exists():
        try:
            backup_sqlite(database, revision)
        except (OSError, sqlite3.Error) as err:
            raise EnvironmentProblem(
                f"cannot back up {database} before migrating it: {err}"
            ) from None
    command.upgrade(alembic_config(connection), "head")


def ensure_schema(engine: Engine, safe_url: str, schema_version: int) -> str:
    """Create, stamp or upgrade the database behind ``engine``; return its revision.

    Parameters
    ----------
    engine
        The knowledge base's engine (SQLite connections begin ``IMMEDIATE`` when the
        ``edgewise_sqlite_begin`` execution option says so).
    safe_url
        The URL with its password masked, for messages.
    schema_version
        The ``edgewise_schema`` version this edgewise writes.

    Raises
    ------
    EnvironmentProblem
        If the database is at a revision or schema version newer than this edgewise's,
        or a SQLite file cannot be backed up before its upgrade.
    """
    head = head_revision()
    # a database already at the head needs nothing written: check without the write
    # lock, so opening never waits on (or blocks) another process's transaction
    with engine.connect() as connection:
        if current_revision(connection) == head:
            _check_schema_version(connection, safe_url, schema_version)
            return head
    locked = engine.execution_options(edgewise_sqlite_begin="IMMEDIATE")
    with locked.connect() as connection, connection.begin():
        _lock(connection)
        revision = current_revision(connection)
        if revision is None:
            if inspect(connection).has_table(SchemaVersion.__tablename__):
                command.stamp(alembic_config(connection), BASELINE_REVISION)
                revision = BASELINE_REVISION
            else:
                Base.metadata.create_all(connection)
                connection.execute(
                    SchemaVersion.__table__.insert().values(version=schema_version)  # type: ignore[attr-defined]
                )
                command.stamp(alembic_config(connection), head)
                revision = head
        if revision != head and not _known(revision):
            raise EnvironmentProblem(
                f"knowledge base {safe_url} is at schema revision {revision}, unknown to this "
                "edgewise (written by a newer one?); use another database URL"
            )
        if revision != head:
            _upgrade(connection, engine, revision, safe_url)
            revision = head
        _check_schema_version(connection, safe_url, schema_version)
    return revision


def _check_schema_version(connection: Connection, safe_url: str, schema_version: int) -> None:
    newest = _newest_schema_version(connection)
    if newest > schema_version:
        raise EnvironmentProblem(
            f"knowledge base {safe_url} has schema version {newest}, "
            f"this edgewise uses {schema_version}; use another database URL"
        )


__all__ = [
    "BASELINE_REVISION",
    "alembic_config",
    "backup_path",
    "backup_sqlite",
    "current_revision",
    "ensure_schema",
    "head_revision",
]
