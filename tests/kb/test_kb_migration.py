"""A knowledge base written by edgewise 0.1 opens, migrated, with the same models.

``tests/fixtures/kb-release-0.1.sqlite`` was written by ``make_release_kb.py`` with the
0.1 release's code (pickled artifacts, no Alembic); ``kb_release_expected.json`` holds
what its pickled models predicted then.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select
from typer.testing import CliRunner

from edgewise.cli.main import app
from edgewise.errors import EdgewiseError, EnvironmentProblem
from edgewise.kb import SCHEMA_VERSION, KnowledgeBase, load_model
from edgewise.kb import models as m
from edgewise.kb.legacy import convert_pickle, is_pickle
from edgewise.kb.migrate import alembic_config, head_revision

FIXTURE = Path(__file__).parents[1] / "fixtures" / "kb-release-0.1.sqlite"
EXPECTED: dict[str, Any] = json.loads(
    (Path(__file__).with_name("kb_release_expected.json")).read_text()
)
PROBES = ({"cpu": 0.0, "membw": 0.0}, {"cpu": 0.5, "membw": 0.2}, {"cpu": 0.9, "membw": 0.7})


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    target = tmp_path / "kb.sqlite"
    shutil.copyfile(FIXTURE, target)
    return target


def _blobs(path: Path) -> list[bytes]:
    with sqlite3.connect(path) as conn:
        return [bytes(b) for (b,) in conn.execute("SELECT blob FROM fitted_models ORDER BY id")]


def _schema_diffs(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
    finally:
        engine.dispose()
    return list(diffs)


def test_the_fixture_is_an_old_release_file() -> None:
    blobs = _blobs(FIXTURE)
    assert len(blobs) == 5 and all(is_pickle(b) for b in blobs)
    with sqlite3.connect(FIXTURE) as conn:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"hosts", "devices"} <= tables and "alembic_version" not in tables


def test_old_file_is_migrated_to_head_with_a_backup(old_file: Path) -> None:
    with KnowledgeBase.open(f"sqlite:///{old_file}") as kb:
        assert kb.revision() == head_revision()
        assert kb.schema_version() == SCHEMA_VERSION
        counts = kb.counts()
        assert counts["runs"] == 36 and counts["fitted_models"] == 5
        assert counts["capacity_profiles"] == 1
        names = set(inspect(kb.engine).get_table_names())
    assert "hosts" not in names and "devices" not in names
    assert not any(is_pickle(b) for b in _blobs(old_file))
    backup = old_file.with_name("kb.sqlite.bak-0001")
    assert _blobs(backup) == _blobs(FIXTURE)  # the untouched 0.1 file
    assert _schema_diffs(f"sqlite:///{old_file}") == []
    # Opening again migrates nothing and writes no second backup.
    with KnowledgeBase.open(f"sqlite:///{old_file}") as kb:
        assert kb.revision() == head_revision()
    assert sorted(p.name for p in old_file.parent.glob("kb.sqlite.bak-*")) == [backup.name]


@pytest.mark.parametrize("workload", ["mobilenet_v2@20rps", "resnet18@20rps"])
def test_migrated_surrogates_predict_what_the_pickles_did(old_file: Path, workload: str) -> None:
    from edgewise.interference.predictor import Predictor

    with KnowledgeBase.open(f"sqlite:///{old_file}") as kb:
        model = Predictor(kb).model(workload)
        _, row = load_model(kb, "surrogate", workload)
    assert row.meta["format"] == "edgewise.interference-model"
    assert model.chosen == EXPECTED[workload]["chosen"]
    for vector, expected in zip(PROBES, EXPECTED[workload]["predictions"], strict=True):
        got = model.predict(vector)
        for key in ("p50", "p95", "p99"):
            assert got[key] == pytest.approx(expected[key], rel=1e-9)
            assert got["lower"][key] == pytest.approx(expected["lower"][key], rel=1e-9)
            assert got["upper"][key] == pytest.approx(expected["upper"][key], rel=1e-9)


def test_migrated_calibration_caps_and_profiles(old_file: Path) -> None:
    from edgewise.interference.calibration import load_calibration
    from edgewise.interference.stressors import HostCaps
    from edgewise.retrain.records import load_profiles

    with KnowledgeBase.open(f"sqlite:///{old_file}") as kb:
        cal = load_calibration(kb, "release-host")
        caps, _ = load_model(kb, "host_caps", "release-host")
        profiles = load_profiles(kb, EXPECTED["pool"])
    assert cal is not None and cal.knob("cpu", 0.6) == pytest.approx(EXPECTED["knob_cpu_0.6"])
    assert cal.caps == HostCaps(ncpus=2, membw_mbs=18000.0, mem_bytes=2.0e9) == caps
    assert profiles is not None and sorted(profiles) == ["pi-a", "pi-b"]
    assert profiles["pi-a"].intensities[1].throughput_sps == 25.0
    assert profiles["pi-b"].solo_latency_ms == 35.0


def test_kb_list_works_on_the_old_file(old_file: Path) -> None:
    result = CliRunner().invoke(
        app, ["kb", "--db", f"sqlite:///{old_file}", "list"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert f"schema v{SCHEMA_VERSION}" in result.output and "fitted_models" in result.output
    assert "hosts" not in result.output
    assert old_file.with_name("kb.sqlite.bak-0001").exists()


def test_upgrading_an_empty_database_step_by_step_gives_the_models_schema(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'steps.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    engine.dispose()
    assert _schema_diffs(url) == []
    with KnowledgeBase.open(url) as kb:  # a database already at head opens as is
        assert kb.schema_version() == SCHEMA_VERSION


def test_a_revision_from_a_newer_edgewise_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite"
    KnowledgeBase.open(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(EnvironmentProblem, match="schema revision 9999"):
        KnowledgeBase.open(f"sqlite:///{path}")


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, ("echo owned",))


def test_a_hostile_or_unconvertible_pickle_is_kept_not_run(old_file: Path) -> None:
    doc, fmt = convert_pickle("surrogate", pickle.dumps(_Evil(), protocol=5), "x.Evil")
    assert fmt == "edgewise.legacy-pickle" and b"refusing to load" in doc
    with sqlite3.connect(old_file) as conn:  # an old row the migration cannot convert
        conn.execute(
            "UPDATE fitted_models SET blob = ?, meta = '{}' WHERE kind = 'host_caps'",
            (pickle.dumps(_Evil(), protocol=5),),
        )
    with KnowledgeBase.open(f"sqlite:///{old_file}") as kb:
        with pytest.raises(EdgewiseError, match="could not be converted") as info:
            load_model(kb, "host_caps", "release-host")
        assert "\n" not in str(info.value)
        with kb.snapshot() as s:
            row = s.scalars(select(m.FittedModel).where(m.FittedModel.kind == "host_caps")).one()
            assert row.meta["format"] == "edgewise.legacy-pickle"


def test_predict_and_plan_answer_as_the_release_did(old_file: Path, tmp_path: Path) -> None:
    """The migrated file serves ``predict`` and ``plan`` with the 0.1 release's answers.

    The release's answers were recorded by ``make_release_kb.py`` running the release's
    own CLI on the file it had just written; here the current CLI runs the same lines.
    """
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from make_release_kb import cli_answers
    finally:
        sys.path.pop(0)
    got = cli_answers(old_file, tmp_path)
    for line, expected in EXPECTED["cli"].items():
        answer = got[line]
        for key, value in expected.items():  # newer releases may add keys, never change one
            assert _same(answer[key], value), f"{line}: {key}: {answer[key]} != {value}"


def _same(got: Any, want: Any) -> bool:
    """Equal, floats to 1e-9 (their last digits follow the BLAS kernel the host's CPU picks)."""
    if isinstance(want, float):
        return bool(got == pytest.approx(want, rel=1e-9))
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(_same(got[k], v) for k, v in want.items())
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_same(g, w) for g, w in zip(got, want, strict=True))
        )
    return bool(got == want)


def test_opening_a_current_file_takes_no_write_lock(tmp_path: Path) -> None:
    """Another process mid-write does not make a plain open wait (or fail)."""
    import time

    db = tmp_path / "kb.sqlite"
    KnowledgeBase.open(f"sqlite:///{db}").close()  # created at the head
    writer = sqlite3.connect(db, isolation_level=None, timeout=0.1)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        t0 = time.monotonic()
        KnowledgeBase.open(f"sqlite:///{db}").close()
        assert time.monotonic() - t0 < 5.0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
