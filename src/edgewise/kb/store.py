"""Opening the knowledge base and running transactions against it.

This is the adapter between edgewise and a SQL database (SQLite file by default, any
SQLAlchemy URL through ``$EDGEWISE_DB_URL``). Callers get ORM sessions that are either
committed as a whole or rolled back as a whole, so a crash or a Ctrl-C in the middle
of a write leaves nothing half-written.

On SQLite the connection runs in WAL mode with foreign keys on and a busy timeout;
write transactions start with ``BEGIN IMMEDIATE`` so a read-modify-write (the next
model version, say) cannot race another process, and reads see one snapshot.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from edgewise.errors import EnvironmentProblem, UnknownNameError
from edgewise.kb.models import MODELS, SchemaVersion
from edgewise.lifecycle import Closing
from edgewise.paths import home

#: Version of the schema defined in :mod:`edgewise.kb.models` (one per Alembic revision
#: in ``edgewise/kb/migrations/versions``); a database at an older one is upgraded on open.
SCHEMA_VERSION = 2

#: How long a SQLite writer waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0

_DB_FILE = "kb.sqlite"


def default_url() -> str:
    """``$EDGEWISE_DB_URL`` if set, else ``sqlite:///$EDGEWISE_HOME/kb.sqlite``."""
    url = os.environ.get("EDGEWISE_DB_URL", "").strip()
    if url:
        return url
    return f"sqlite:///{home() / _DB_FILE}"


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (safe to print or log)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Not parseable: still hide anything that looks like user:password@.
        return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", url)


def _one_line(err: BaseException, secret: str | None) -> str:
    """The driver's message for ``err`` as one short line, with ``secret`` removed."""
    orig = getattr(err, "orig", None)
    text = str(orig if orig is not None else err) or type(err).__name__
    # SQLAlchemy appends a "(Background on this error at: ...)" line; drop it.
    text = text.split("(Background on this error")[0]
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return text[:300]


def table_names() -> tuple[str, ...]:
    """Names of the knowledge-base tables, parents before children."""
    return tuple(model.__tablename__ for model in MODELS)


def resolve_table(name: str) -> Table:
    """The table called ``name`` (a table name or an ORM class name, any case).

    Raises
    ------
    UnknownNameError
        If no such table exists; the message lists the valid names.
    """
    wanted = name.strip().lower()
    for model in MODELS:
        if wanted in (model.__tablename__, model.__name__.lower()):
            table = model.__table__
            assert isinstance(table, Table)
            return table
    raise UnknownNameError(f"unknown table {name!r}; valid tables: {', '.join(table_names())}")


def _install_sqlite_pragmas(engine: Engine) -> None:
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (below) emit BEGIN itself instead of the sqlite3 module's
        # implicit, DML-only transactions; see "Serializable isolation" in the docs.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("edgewise_sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class KnowledgeBase(Closing):
    """A connection to the edgewise knowledge base.

    Use :meth:`open` rather than the constructor. Sessions come from
    :meth:`transaction` (read-write, atomic) and :meth:`snapshot` (read-only).
    Objects stay usable after their session ends (``expire_on_commit=False``), but
    lazy relationships must be loaded inside the session.
    """

    def __init__(self, engine: Engine, url: URL) -> None:
        self._engine = engine
        self._url = url
        is_sqlite = engine.dialect.name == "sqlite"
        write_bind = (
            engine.execution_options(edgewise_sqlite_begin="IMMEDIATE") if is_sqlite else engine
        )
        self._writer = sessionmaker(bind=write_bind, expire_on_commit=False)
        self._reader = sessionmaker(bind=engine, expire_on_commit=False)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, url: str | None = None) -> KnowledgeBase:
        """Open (and create if needed) the knowledge base at ``url``.

        Parameters
        ----------
        url
            Any SQLAlchemy URL (``sqlite:///file.db``, ``postgresql+psycopg://...``).
            ``None`` means ``$EDGEWISE_DB_URL`` or ``sqlite:///$EDGEWISE_HOME/kb.sqlite``.

        Raises
        ------
        EnvironmentProblem
            One line naming the URL (password masked) when it is invalid, its driver
            is missing, the database is unreachable, or its schema is from a newer
            version of edgewise. A database from an older version is migrated (a
            SQLite file is backed up first, see :mod:`edgewise.kb.migrate`).
        """
        raw = default_url() if url is None else url
        shown = mask_url(raw)
        try:
            parsed = make_url(raw)
        except (ArgumentError, ValueError) as err:
            raise EnvironmentProblem(
                f"invalid knowledge-base URL {shown}: {_one_line(err, None)}"
            ) from None
        secret = parsed.password if isinstance(parsed.password, str) else None
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError, ValueError) as err:
            raise EnvironmentProblem(
                f"cannot open knowledge base {shown}: {_one_line(err, secret)}"
            ) from None
        if engine.dialect.name == "sqlite":
            _install_sqlite_pragmas(engine)
        kb = cls(engine, parsed)
        try:
            kb._create_schema()
        except EnvironmentProblem:
            engine.dispose()
            raise
        except (SQLAlchemyError, OSError, ImportError) as err:
            engine.dispose()
            raise EnvironmentProblem(
                f"cannot open knowledge base {shown}: {_one_line(err, secret)}"
            ) from None
        return kb

    def _create_schema(self) -> None:
        from edgewise.kb.migrate import ensure_schema

        ensure_schema(self._engine, self.safe_url, SCHEMA_VERSION)

    # -------------------------------------------------------------- properties

    @property
    def url(self) -> str:
        """The full database URL (password included: pass it to worker processes)."""
        return self._url.render_as_string(hide_password=False)

    @property
    def safe_url(self) -> str:
        """The database URL with the password masked, for messages and logs."""
        return mask_url(self._url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for Core queries and pandas)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """Name of the SQL dialect, e.g. ``'sqlite'`` or ``'postgresql'``."""
        return self._engine.dialect.name

    def revision(self) -> str | None:
        """The database's Alembic revision (the newest one after :meth:`open`)."""
        from edgewise.kb.migrate import current_revision

        with self._engine.connect() as connection:
            return current_revision(connection)

    def schema_version(self) -> int:
        """The newest schema version recorded in the database."""
        with self.snapshot() as session:
            version = session.scalar(select(func.max(SchemaVersion.version)))
        return int(version or 0)

    # ------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on exit and rolled back on any exception.

        ``KeyboardInterrupt`` and ``SystemExit`` roll back too. Everything done in
        one ``with`` block is one database transaction.
        """
        session = self._writer()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session over one consistent view; never commits."""
        session = self._reader()
        try:
            yield session
        finally:
            # close() (not rollback()) ends the transaction without expiring the
            # objects read, so they stay usable after the block.
            session.close()

    def counts(self) -> dict[str, int]:
        """Row count of every table, in :func:`table_names` order."""
        with self.snapshot() as session:
            return {
                model.__tablename__: int(
                    session.scalar(select(func.count()).select_from(model)) or 0
                )
                for model in MODELS
            }

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.safe_url!r})"


def counts(kb: KnowledgeBase) -> dict[str, int]:
    """Row count of every table of ``kb`` (same as ``kb.counts()``)."""
    return kb.counts()
