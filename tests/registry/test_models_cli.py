"""`edgewise models add/list/show/export` and the zoo listing beside them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import LABELS, SAVERS, inputs, reference, tiny_cnn
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.kb import KnowledgeBase
from edgewise.paths import home
from edgewise.registry import ModelCard, list_models, load_model


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(make_app(["models"]), ["models", *args])
    return result.exit_code, result.output


@pytest.fixture
def labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(LABELS) + "\n")
    return path


def test_add_list_show_export(models_dir: Path, labels_file: Path, tmp_path: Path) -> None:
    module = tiny_cnn(seed=4)
    path = SAVERS["torchscript"](module, models_dir)
    code, out = _run(
        "add", "tiny", str(path), "--input", "image:1x8x8", "--labels", str(labels_file)
    )
    assert code == 0, out
    assert out.startswith("registered tiny:v1 (torchscript, sha256 ")
    code, out = _run(
        "add", "tiny", str(path), "--input", "image:1x8x8", "--labels", str(labels_file), "--json"
    )
    assert code == 0, out
    assert json.loads(out)["ref"] == "tiny:v2"

    code, out = _run("list", "--json")
    assert code == 0, out
    rows = json.loads(out)["models"]
    assert [r["ref"] for r in rows] == ["tiny:v1", "tiny:v2"]
    assert rows[0]["card"]["labels"] == list(LABELS) and rows[0]["card"]["task"] == "classification"
    code, out = _run("list")
    assert code == 0 and "tiny:v2" in out and "torchscript" in out

    code, out = _run("show", "tiny:v1")
    assert code == 0, out
    assert "tiny:v1" in out and "cat, dog, fox" in out and rows[0]["sha256"] in out
    code, out = _run("show", "tiny", "--json")
    assert json.loads(out)["version"] == 2

    target = tmp_path / "out.pt"
    code, out = _run("export", "tiny:v1", "--out", str(target))
    assert code == 0, out
    assert ModelCard.load(target).labels == LABELS
    batch = inputs()
    np.testing.assert_allclose(
        load_model(str(target)).forward(batch), reference(module, batch), atol=1e-4
    )


def test_safetensors_with_an_arch_flag(models_dir: Path, builder: str) -> None:
    path = SAVERS["safetensors"](tiny_cnn(), models_dir)
    path.with_name(path.name + ".card.yaml").unlink()
    code, out = _run("add", "w", str(path), "--input", "image:1x8x8", "--arch", builder)
    assert code == 0, out
    with KnowledgeBase.open() as kb:
        (version,) = list_models(kb)
    assert version.card.arch == builder and version.format == "safetensors"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "tiny", "{missing}", "--input", "image:1x8x8"], "does not exist"),
        (["add", "tiny", "{model}", "--input", "image:1x9x9"], "does not run on a image input"),
        (["add", "tiny", "{model}", "--input", "image:8x8"], "--input 'image:8x8'"),
        (["add", "tiny", "{model}", "--input", "image:1x8x8", "--labels", "{four}"], "4 labels"),
        (["add", "tiny", "{model}"], "no model card for"),
        (["add", "digits_cnn", "{model}", "--input", "image:1x8x8"], "built-in zoo model"),
        (["add", "tiny", "{model}", "--input", "image:1x8x8", "--task", "guess"], "task 'guess'"),
        (["add", "tiny", "{model}", "--card", "{card}"], "absent.card.yaml does not exist"),
        (["show", "tiny:v3"], "no registered model named 'tiny'"),
        (["export", "nothing", "--out", "{missing}"], "no registered model named 'nothing'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, models_dir: Path, tmp_path: Path
) -> None:
    model = SAVERS["torchscript"](tiny_cnn(), models_dir)
    four = tmp_path / "four.txt"
    four.write_text("a\nb\nc\nd\n")
    values = {
        "{model}": str(model),
        "{missing}": str(tmp_path / "absent.pt"),
        "{four}": str(four),
        "{card}": str(tmp_path / "absent.card.yaml"),
    }
    code, out = _run(*[values.get(a, a) for a in args])
    assert code == 2, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], out
    with KnowledgeBase.open() as kb:
        assert list_models(kb) == []
    assert not (home() / "models").exists() or not any(
        p.is_file() for p in (home() / "models").rglob("*")
    )


def test_models_alone_is_still_the_zoo_listing() -> None:
    args = ["--models", "digits_cnn", "--repeats", "1", "--warmup", "0", "--batch-sizes", "1"]
    code, out = _run(*args, "--json", "--threads", "1")
    assert code == 0, out
    assert [r["model"] for r in json.loads(out)] == ["digits_cnn"]
    code, out = _run("zoo", *args, "--json", "--threads", "1")
    assert code == 0, out
    row = json.loads(out)[0]
    assert row["params"] == 89_546 and set(row) == {
        "model",
        "kind",
        "params",
        "input",
        "threads",
        "latency_ms",
    }
    code, out = _run("list")
    assert code == 0 and "no registered models" in out
