"""The same schema and round-trip checks against a real PostgreSQL server.

The test starts its own server (initdb + pg_ctl as an unprivileged user, loopback
only, a free port, fsync off) when the binaries are installed, and stops it in a
``finally``. Without them it is skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kb_roundtrip import run_all_checks
from pg_server import find_pg_bin, postgres_server
from sqlalchemy import inspect
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.kb import SCHEMA_VERSION, KnowledgeBase, export_tables, table_names
from edgewise.kb import models as m

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PG_BIN = find_pg_bin()


@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found")
def test_schema_and_round_trip_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    assert PG_BIN is not None
    with postgres_server(PG_BIN) as base_url:
        admin = base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE edgewise_kb")
        url = f"{base_url}/edgewise_kb"
        kb = KnowledgeBase.open(url)
        try:
            assert kb.dialect == "postgresql"
            assert set(table_names()) <= set(inspect(kb.engine).get_table_names())
            assert kb.schema_version() == SCHEMA_VERSION
            # Timestamps are real "timestamp with time zone" columns on PostgreSQL.
            created = {c["name"]: c for c in inspect(kb.engine).get_columns("runs")}
            assert getattr(created["created_at"]["type"], "timezone", False) is True
            run_all_checks(kb)
            check_served_history(kb)
            # Reopening finds the schema and keeps one version row.
            with KnowledgeBase.open(url) as again:
                assert again.counts() == kb.counts()
            results = export_tables(kb, "all", "parquet", tmp_path / "pg-export")
            assert {r.table: r.rows for r in results} == kb.counts()
        finally:
            kb.close()
        check_migration_from_release(base_url, admin)
        # The CLI reads the same database through $EDGEWISE_DB_URL.
        monkeypatch.setenv("EDGEWISE_DB_URL", url)
        result = CliRunner().invoke(make_app(["kb"]), ["kb", "list"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "edgewise_kb" in result.output and "fitted_models" in result.output


def check_served_history(kb: KnowledgeBase) -> None:
    """Which version served when, on PostgreSQL: open and closed intervals, time zones kept."""
    from datetime import UTC, datetime, timedelta

    from edgewise.kb.served import ServedChange, ServedModel, record_change, served_history

    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    v1, v2 = ServedModel("m:v1", "m", 1), ServedModel("m:v2", "m", 2)
    record_change(kb, ServedChange("pg-svc", "serve started", t0, v1))
    later = t0 + timedelta(seconds=30)
    record_change(kb, ServedChange("pg-svc", "rollout promoted", later, v2, t0))
    got = [(i.served.ref, i.role, i.since, i.until) for i in served_history(kb, "pg-svc")]
    assert got == [
        ("m:v1", "serving", t0, later),
        ("m:v2", "canary", t0, later),
        ("m:v2", "serving", later, None),
    ]


def check_migration_from_release(base_url: str, admin: str) -> None:
    """Revisions run step by step on PostgreSQL: a 0.1 pickle row becomes data."""
    import pickle

    import psycopg
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, text

    from edgewise.kb import load_model
    from edgewise.kb.migrate import alembic_config

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE edgewise_old")
    url = f"{base_url}/edgewise_old"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(
            text(
                "INSERT INTO fitted_models (created_at, kind, name, version, features, "
                "training_ids, metrics, meta, blob) VALUES (now(), 'calibration', 'h', 1, "
                "'[]', '[]', '{}', '{}', :blob)"
            ),
            {"blob": pickle.dumps({"host": "h", "caps": {"ncpus": 2}, "curves": {}}, protocol=5)},
        )
    engine.dispose()
    with KnowledgeBase.open(url) as kb:
        assert kb.schema_version() == SCHEMA_VERSION
        from edgewise.interference.calibration import Calibration

        cal, row = load_model(kb, "calibration", "h")
        assert isinstance(cal, Calibration) and cal.caps.ncpus == 2
        assert row.meta["format"] == "edgewise.calibration"
        with kb.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
        assert list(diffs) == []
