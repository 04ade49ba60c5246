"""Versions, lineage, content-addressed storage, export, and the registry table's migration."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import inspect
from tiny_models import CARD, SAVERS, inputs, reference, tiny_cnn

from edgewise.kb import KnowledgeBase
from edgewise.kb.migrate import alembic_config, head_revision
from edgewise.paths import home
from edgewise.registry import (
    ModelCard,
    ModelFileError,
    content_sha256,
    export_version,
    list_models,
    load_model,
    parse_ref,
    register_model,
    resolve,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "kb-release-0.1.sqlite"


def test_versions_are_numbered_per_name_with_lineage(kb: KnowledgeBase, models_dir: Path) -> None:
    first = SAVERS["onnx"](tiny_cnn(seed=1), models_dir)
    v1 = register_model(kb, "tiny", first, card=CARD)
    (models_dir / "v2").mkdir()
    second = SAVERS["onnx"](tiny_cnn(seed=2), models_dir / "v2")
    v2 = register_model(
        kb,
        "tiny",
        second,
        card=CARD,
        parent="tiny",  # the latest, stored as the exact version
        data_fingerprint="sha256:abc",
        accuracy_before=0.61,
        accuracy_after=0.93,
    )
    other = register_model(kb, "other", first, card=CARD)
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v2.parent == "tiny:v1" and v2.data_fingerprint == "sha256:abc"
    assert (v2.accuracy_before, v2.accuracy_after) == (0.61, 0.93)
    assert v1.parent is None and v1.created_at <= v2.created_at
    assert [v.ref for v in list_models(kb)] == ["other:v1", "tiny:v1", "tiny:v2"]
    assert resolve(kb, "tiny").ref == "tiny:v2"
    assert resolve(kb, "tiny:1") == resolve(kb, "tiny:v1") == v1
    batch = inputs()
    np.testing.assert_allclose(
        load_model("tiny:v1", kb).forward(batch), reference(tiny_cnn(seed=1), batch), atol=1e-4
    )
    np.testing.assert_allclose(
        load_model("tiny", kb).forward(batch), reference(tiny_cnn(seed=2), batch), atol=1e-4
    )


def test_storage_is_content_addressed(kb: KnowledgeBase, models_dir: Path) -> None:
    path = SAVERS["torchscript"](tiny_cnn(), models_dir)
    a = register_model(kb, "a", path, card=CARD)
    b = register_model(kb, "b", path, card=CARD)
    assert a.sha256 == b.sha256 == content_sha256(path) and a.path == b.path
    assert a.path.read_bytes() == path.read_bytes()
    assert a.path.is_relative_to(home() / "models") and a.sha256 in str(a.path)
    path.unlink()  # the registry keeps its own copy
    assert load_model("a", kb).forward(inputs(1)).shape == (1, 3)


def test_a_directory_hash_covers_names_and_contents(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(b"abc")
    assert content_sha256(one) == content_sha256(two)
    (two / "model.safetensors").write_bytes(b"abd")
    assert content_sha256(one) != content_sha256(two)


def test_export_writes_the_artifact_and_its_card(
    kb: KnowledgeBase, models_dir: Path, tmp_path: Path
) -> None:
    version = register_model(kb, "tiny", SAVERS["onnx"](tiny_cnn(), models_dir), card=CARD)
    out = tmp_path / "exported.onnx"
    target = export_version(version, out)
    assert target == out and out.read_bytes() == version.path.read_bytes()
    assert ModelCard.load(out) == CARD
    again = load_model(str(out))  # an exported model loads as a path, with its card
    assert again.card == CARD
    with pytest.raises(ModelFileError, match="exists"):
        export_version(version, out)


def test_refs() -> None:
    assert parse_ref("digits_cnn").kind == "zoo"
    assert (parse_ref("tiny:v3").kind, parse_ref("tiny:v3").version) == ("registry", 3)
    assert parse_ref("tiny").version is None and parse_ref("tiny:12").version == 12
    assert parse_ref("./m.onnx").kind == "path" and parse_ref("m.onnx").kind == "path"
    assert parse_ref("/abs/dir").kind == "path"


def test_sqlite_round_trip_through_the_migration(tmp_path: Path, models_dir: Path) -> None:
    old = tmp_path / "old.sqlite"
    shutil.copyfile(FIXTURE, old)
    url = f"sqlite:///{old}"
    with KnowledgeBase.open(url) as kb:  # 0.1 -> 0001 -> ... -> the head
        assert "model_versions" in inspect(kb.engine).get_table_names()
        register_model(kb, "tiny", SAVERS["onnx"](tiny_cnn(), models_dir), card=CARD)
        with kb.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        assert "model_versions" not in inspect(kb.engine).get_table_names()
    with KnowledgeBase.open(url) as kb:  # upgraded again on open, an empty registry
        assert kb.revision() == head_revision() and list_models(kb) == []
        register_model(kb, "tiny", SAVERS["onnx"](tiny_cnn(), models_dir), card=CARD)
    with KnowledgeBase.open(url) as kb:
        (version,) = list_models(kb)
        assert version.ref == "tiny:v1" and version.card == CARD


def test_concurrent_registrations_of_one_name_get_distinct_versions(
    kb: KnowledgeBase, models_dir: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = SAVERS["onnx"](tiny_cnn(), models_dir)
    with ThreadPoolExecutor(max_workers=3) as pool:
        versions = list(pool.map(lambda _: register_model(kb, "tiny", path, card=CARD), range(3)))
    assert sorted(v.version for v in versions) == [1, 2, 3]
    assert len({v.path for v in versions}) == 1
