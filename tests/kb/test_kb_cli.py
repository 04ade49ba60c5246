"""``edgewise kb list|show|export`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kb_roundtrip import crud_every_model
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.kb import (
    SCHEMA_VERSION,
    KnowledgeBase,
    export_tables,
    load_model,
    save_model,
    table_names,
)
from edgewise.kb import models as m

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(make_app(["kb"]), list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def filled(_isolated_home: Path) -> KnowledgeBase:
    """The default KB (under EDGEWISE_HOME) with rows in several tables."""
    kb = KnowledgeBase.open()
    with kb.transaction() as s:
        w = m.Workload(name="resnet18@10rps", kind="zoo", params={"rps": 10})
        s.add(w)
        s.flush()
        c = m.Campaign(name="camp", target_workload_id=w.id, config={"design": "lhs"})
        s.add(c)
        s.flush()
        for i in range(3):
            s.add(
                m.Run(
                    campaign_id=c.id,
                    index=i,
                    design={"cpu": i / 4},
                    latency={"p99": 20.0 + i},
                    flags=["slow"] if i == 2 else [],
                )
            )
    save_model(kb, "surrogate", "resnet18/p99", {"coef": [1.0, 2.0]}, features=["cpu"])
    kb.close()
    return kb


def test_list_on_an_empty_kb(_isolated_home: Path) -> None:
    code, out = invoke("kb", "list")
    assert code == 0, out
    assert str(_isolated_home / "kb.sqlite") in out
    for name in table_names():
        assert name in out
    assert f"schema v{SCHEMA_VERSION}" in out
    rows = [line for line in out.splitlines() if "│" in line]
    assert len(rows) == len(table_names())
    assert all(line.rstrip(" │").endswith(" 0") for line in rows)


def test_list_on_a_filled_kb(filled: KnowledgeBase) -> None:
    code, out = invoke("kb", "list")
    assert code == 0, out
    line = {
        row.split("│")[1].strip(): row.split("│")[2].strip()
        for row in out.splitlines()
        if row.count("│") == 3
    }
    assert line["runs"] == "3"
    assert line["workloads"] == "1"
    assert line["fitted_models"] == "1"
    assert line["plans"] == "0"
    assert "hosts" not in line  # never written, dropped by revision 0002


def test_list_with_db_option(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with KnowledgeBase.open(url) as kb, kb.transaction() as s:
        s.add(m.Workload(name="w", kind="zoo", params={}))
    code, out = invoke("kb", "--db", url, "list")
    assert code == 0, out
    assert "elsewhere.db" in out


def test_show_rows_and_one_row(filled: KnowledgeBase) -> None:
    code, out = invoke("kb", "show", "runs", "--limit", "2")
    assert code == 0, out
    assert "newest 2 of 3 rows" in out
    assert '{"cpu": 0.5}' in out and '{"cpu": 0.25}' in out
    assert '{"cpu": 0.0}' not in out  # oldest row left out by --limit
    code, out = invoke("kb", "show", "FittedModel", "--id", "1")
    assert code == 0, out
    assert "resnet18/p99" in out
    assert "blob_bytes" in out and " B" in out  # the stored document is shown as its size
    assert '"cpu"' in out


def test_show_on_an_empty_table(_isolated_home: Path) -> None:
    code, out = invoke("kb", "show", "samples")
    assert code == 0, out
    assert "newest 0 of 0 rows" in out


def test_show_narrow_terminal_uses_records(filled: KnowledgeBase) -> None:
    result = runner.invoke(make_app(["kb"]), ["kb", "show", "runs"], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    assert "started_at" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 60


def test_show_unknown_table_is_one_line_exit_2(_isolated_home: Path) -> None:
    code, out = invoke("kb", "show", "nope")
    assert code == 2
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("edgewise: error: unknown table 'nope'")
    assert "fitted_models" in lines[0] and "capacity_profiles" in lines[0]


def test_show_unknown_id_is_one_line_exit_2(filled: KnowledgeBase) -> None:
    code, out = invoke("kb", "show", "runs", "--id", "99")
    assert code == 2
    assert out.strip() == "edgewise: error: no row with id 99 in table runs"


def test_unreachable_db_is_one_line_exit_2() -> None:
    code, out = invoke("kb", "--db", "postgresql+psycopg://u:hunter2@127.0.0.1:9/x", "list")
    assert code == 2
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "u:***@127.0.0.1:9/x" in lines[0]
    assert "hunter2" not in out


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_one_table_reads_back(filled: KnowledgeBase, tmp_path: Path, fmt: str) -> None:
    out_dir = tmp_path / "out"
    code, out = invoke("kb", "export", "runs", "--format", fmt, "--out", str(out_dir))
    assert code == 0, out
    path = out_dir / f"runs.{fmt}"
    assert str(path) in out and "3 rows" in out
    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    assert list(frame["index"]) == [0, 1, 2]
    assert [json.loads(v) for v in frame["design"]] == [{"cpu": 0.0}, {"cpu": 0.25}, {"cpu": 0.5}]
    assert [json.loads(v) for v in frame["flags"]] == [[], [], ["slow"]]
    assert json.loads(frame["latency"][2]) == {"p99": 22.0}
    started = pd.to_datetime(frame["started_at"], utc=True)
    assert started.notna().all()
    assert list(frame["status"]) == ["ok"] * 3
    assert not any(p.name.endswith(".tmp") for p in out_dir.iterdir())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_all_includes_empty_tables_and_blob_sizes(
    filled: KnowledgeBase, tmp_path: Path, fmt: str
) -> None:
    out_dir = tmp_path / "all"
    code, out = invoke("kb", "export", "all", "-f", fmt, "-o", str(out_dir))
    assert code == 0, out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{n}.{fmt}" for n in table_names())
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    plans = read(out_dir / f"plans.{fmt}")
    assert len(plans) == 0
    assert list(plans.columns) == ["id", "created_at", "kind", "inputs", "decision", "cost"]
    models = read(out_dir / f"fitted_models.{fmt}")
    assert "blob" not in models.columns
    with KnowledgeBase.open() as kb:
        _, stored = load_model(kb, "surrogate", "resnet18/p99")
    assert int(models["blob_bytes"][0]) == len(stored.blob)
    assert json.loads(models["features"][0]) == ["cpu"]


def test_export_every_model_round_trips_through_parquet(tmp_path: Path) -> None:
    kb = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    crud_every_model(kb)
    results = export_tables(kb, "all", "parquet", tmp_path / "pq")
    by_table = {r.table: r for r in results}
    for name, rows in kb.counts().items():
        assert by_table[name].rows == rows
        frame = pd.read_parquet(by_table[name].path)
        assert len(frame) == rows
        assert str(frame["created_at"].dtype).startswith("datetime64")
    forecasts = pd.read_parquet(by_table["forecasts"].path)
    assert json.loads(forecasts["values"][0])["lower"] == {"80": [0.5, 1.5, 2.5]}
    kb.close()


def test_export_unknown_table_or_format(_isolated_home: Path, tmp_path: Path) -> None:
    code, out = invoke("kb", "export", "nope", "--out", str(tmp_path))
    assert code == 2 and "unknown table 'nope'" in out
    code, out = invoke("kb", "export", "runs", "--format", "xlsx", "--out", str(tmp_path))
    assert code == 2 and "xlsx" in out
