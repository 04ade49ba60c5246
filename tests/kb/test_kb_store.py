"""Knowledge base on a SQLite file: schema, transactions, WAL, errors, model storage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kb_roundtrip import (
    check_foreign_keys,
    check_models_roundtrip,
    check_naive_datetime_refused,
    check_rollback,
    check_unique_constraints,
    crud_every_model,
)
from sqlalchemy import inspect, select, text

from edgewise.errors import EdgewiseError, EnvironmentProblem, UnknownNameError
from edgewise.kb import (
    SCHEMA_VERSION,
    KnowledgeBase,
    counts,
    default_url,
    mask_url,
    resolve_table,
    save_model,
    table_names,
)
from edgewise.kb import models as m


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    kb = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    yield kb
    kb.close()


def test_default_url_is_sqlite_under_edgewise_home(_isolated_home: Path) -> None:
    assert default_url() == f"sqlite:///{_isolated_home / 'kb.sqlite'}"
    with KnowledgeBase.open() as kb:
        assert kb.url == default_url()
        assert kb.dialect == "sqlite"
    assert (_isolated_home / "kb.sqlite").exists()


def test_env_url_overrides_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("EDGEWISE_DB_URL", url)
    with KnowledgeBase.open() as kb:
        assert kb.url == url
    assert (tmp_path / "other.db").exists()


def test_open_creates_every_table_and_records_schema_version(kb: KnowledgeBase) -> None:
    names = set(inspect(kb.engine).get_table_names())
    assert set(table_names()) <= names
    assert "edgewise_schema" in names
    assert kb.schema_version() == SCHEMA_VERSION
    assert counts(kb) == dict.fromkeys(table_names(), 0)
    # Reopening an existing database keeps one version row and the data.
    with kb.transaction() as s:
        s.add(m.Workload(name="w", kind="zoo", params={}))
    again = KnowledgeBase.open(kb.url)
    assert again.counts()["workloads"] == 1
    with again.snapshot() as s:
        assert list(s.scalars(select(m.SchemaVersion.version))) == [SCHEMA_VERSION]
    again.close()


def test_newer_schema_version_is_refused(kb: KnowledgeBase) -> None:
    with kb.transaction() as s:
        s.add(m.SchemaVersion(version=SCHEMA_VERSION + 1))
    with pytest.raises(EnvironmentProblem, match=f"schema version {SCHEMA_VERSION + 1}"):
        KnowledgeBase.open(kb.url)


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_busy_timeout(kb: KnowledgeBase) -> None:
    with kb.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert int(conn.execute(text("PRAGMA busy_timeout")).scalar_one()) >= 10_000
    assert Path(kb.engine.url.database or "").with_suffix(".sqlite-wal").exists()


def test_crud_on_every_model(kb: KnowledgeBase) -> None:
    crud_every_model(kb)


def test_unique_constraints(kb: KnowledgeBase) -> None:
    check_unique_constraints(kb)


def test_foreign_keys_enforced(kb: KnowledgeBase) -> None:
    check_foreign_keys(kb)


def test_exception_mid_write_leaves_nothing(kb: KnowledgeBase) -> None:
    check_rollback(kb)


def test_keyboard_interrupt_mid_write_rolls_back(kb: KnowledgeBase) -> None:
    with pytest.raises(KeyboardInterrupt), kb.transaction() as s:
        for i in range(10):
            s.add(m.ScalingEvent(run_key="r", t=float(i), policy="p", action={"n": i}))
        s.flush()
        raise KeyboardInterrupt
    assert kb.counts()["scaling_events"] == 0
    # The database is usable afterwards (no lock left behind).
    with kb.transaction() as s:
        s.add(m.ScalingEvent(run_key="r", t=0.0, policy="p", action={}))
    assert kb.counts()["scaling_events"] == 1


def test_save_and_load_models(kb: KnowledgeBase) -> None:
    check_models_roundtrip(kb)


def test_timestamps_are_utc_and_naive_ones_refused(kb: KnowledgeBase) -> None:
    check_naive_datetime_refused(kb)


def test_fitted_model_blob_is_deferred(kb: KnowledgeBase) -> None:
    save_model(kb, "surrogate", "s", list(range(1000)))
    with kb.snapshot() as s:
        row = s.scalars(select(m.FittedModel)).one()
        assert "blob" not in row.__dict__  # listing does not load the pickle
        assert len(row.blob) > 1000


def test_concurrent_writers_get_distinct_model_versions(kb: KnowledgeBase) -> None:
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            for j in range(5):
                save_model(kb, "calibration", "shared", (i, j))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with kb.snapshot() as s:
        versions = sorted(s.scalars(select(m.FittedModel.version)))
    assert versions == list(range(1, 21))


def test_resolve_table_accepts_class_names_and_lists_valid_ones() -> None:
    assert resolve_table("FittedModel").name == "fitted_models"
    assert resolve_table("RUNS").name == "runs"
    with pytest.raises(UnknownNameError) as info:
        resolve_table("nope")
    message = str(info.value)
    assert "'nope'" in message and "fitted_models" in message and "\n" not in message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("not a url", "invalid knowledge-base URL"),
        ("nosuchdialect://x/y", "cannot open knowledge base nosuchdialect://x/y"),
        ("sqlite:////nonexistent-dir/sub/kb.sqlite", "unable to open database file"),
        ("postgresql+psycopg://bob:s3cret@127.0.0.1:9/kb", "bob:***@127.0.0.1:9/kb"),
    ],
)
def test_unusable_urls_give_one_line_with_password_masked(url: str, fragment: str) -> None:
    with pytest.raises(EdgewiseError) as info:
        KnowledgeBase.open(url)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "s3cret" not in message


def test_mask_url() -> None:
    assert mask_url("postgresql+psycopg://u:pw@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "pw" not in mask_url("weird://u:pw@h:notaport/db")
