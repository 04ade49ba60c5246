"""Bad models and cards: one line naming the file or field, nothing registered."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import CARD, LABELS, SAVERS, SHAPE, tiny_cnn

from edgewise.errors import EdgewiseError, UnknownNameError
from edgewise.kb import KnowledgeBase
from edgewise.paths import home
from edgewise.registry import (
    InputMismatchError,
    InputSpec,
    ModelCard,
    ModelCardError,
    ModelFileError,
    NotTrainableError,
    list_models,
    load_model,
    parse_input_flag,
    register_model,
    trainable_module,
)


def _nothing_registered(kb: KnowledgeBase) -> None:
    assert list_models(kb) == []
    stored = home() / "models"
    assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))


def _one_line(err: pytest.ExceptionInfo[EdgewiseError]) -> str:
    text = str(err.value)
    assert "\n" not in text and err.value.exit_code == 2
    return text


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("fmt", ["torchscript", "export", "onnx"])
def test_a_truncated_file_is_refused(fmt: str, kb: KnowledgeBase, models_dir: Path) -> None:
    path = _truncate(SAVERS[fmt](tiny_cnn(), models_dir))
    with pytest.raises(ModelFileError) as err:
        register_model(kb, "tiny", path, card=CARD)
    assert str(path) in _one_line(err)
    _nothing_registered(kb)


def test_an_unknown_extension_and_a_missing_path(kb: KnowledgeBase, models_dir: Path) -> None:
    odd = models_dir / "model.pkl"
    odd.write_bytes(b"\x80\x04not a model")
    with pytest.raises(ModelFileError, match=r"unknown model extension '\.pkl'") as err:
        register_model(kb, "tiny", odd, card=CARD)
    assert str(odd) in _one_line(err)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(str(models_dir / "absent.onnx"))
    _nothing_registered(kb)


def test_a_torch_save_pickle_is_not_unpickled(kb: KnowledgeBase, models_dir: Path) -> None:
    path = models_dir / "pickled.pt"
    torch.save(tiny_cnn(), path)  # a whole pickled module, not TorchScript
    with pytest.raises(ModelFileError, match="not a readable torchscript model"):
        register_model(kb, "tiny", path, card=CARD)
    _nothing_registered(kb)


def test_an_exported_program_with_a_pickled_payload_is_refused(models_dir: Path) -> None:
    path = SAVERS["export"](tiny_cnn(), models_dir)
    tampered = models_dir / "tampered.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                first = next(iter(config["config"].values()))
                first["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="stored as a pickle"):
        load_model(str(tampered))


def test_an_onnx_operator_onnxruntime_lacks(kb: KnowledgeBase, models_dir: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = models_dir / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"onnxruntime \(CPU\) cannot run it") as err:
        register_model(kb, "tiny", path, card=CARD)
    assert "NoSuchOp" in _one_line(err)
    _nothing_registered(kb)


def test_labels_whose_count_differs_from_the_output(kb: KnowledgeBase, models_dir: Path) -> None:
    path = SAVERS["torchscript"](tiny_cnn(), models_dir)
    card = CARD.with_labels((*LABELS, "owl"))
    with pytest.raises(InputMismatchError, match="4 labels for an output of size 3") as err:
        register_model(kb, "tiny", path, card=card)
    assert str(path) in _one_line(err)
    _nothing_registered(kb)


def test_a_card_whose_input_the_model_does_not_take(kb: KnowledgeBase, models_dir: Path) -> None:
    path = SAVERS["torchscript"](tiny_cnn(), models_dir)
    card = ModelCard("classification", InputSpec("image", (1, 9, 9)), LABELS)
    with pytest.raises(
        InputMismatchError, match=r"does not run on a image input of shape \[1, 9, 9\]"
    ):
        register_model(kb, "tiny", path, card=card)
    _nothing_registered(kb)


def test_a_batch_that_does_not_match_the_card(kb: KnowledgeBase, models_dir: Path) -> None:
    register_model(kb, "tiny", SAVERS["onnx"](tiny_cnn(), models_dir), card=CARD)
    model = load_model("tiny", kb)
    with pytest.raises(
        InputMismatchError, match=r"model tiny:v1 takes image batches of shape \(batch, 1, 8, 8\)"
    ):
        model.forward(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(InputMismatchError, match="takes float32 input, got bool"):
        model.forward(np.zeros((2, *SHAPE), bool))


def test_no_card_for_a_torchscript_file(kb: KnowledgeBase, models_dir: Path) -> None:
    path = SAVERS["torchscript"](tiny_cnn(), models_dir)
    with pytest.raises(
        ModelCardError, match=r"no model card for .*tiny\.pt: write .*tiny\.pt\.card\.yaml"
    ):
        register_model(kb, "tiny", path)
    _nothing_registered(kb)


def test_safetensors_without_an_architecture(kb: KnowledgeBase, models_dir: Path) -> None:
    path = SAVERS["safetensors"](tiny_cnn(), models_dir)
    with pytest.raises(ModelCardError, match="need an architecture"):
        register_model(kb, "tiny", path, card=CARD)
    with pytest.raises(ModelCardError, match="neither a zoo model"):
        register_model(kb, "tiny", path, card=CARD.with_arch("no_such_arch"))
    with pytest.raises(ModelFileError, match="not a readable safetensors model"):
        register_model(kb, "tiny", path, card=CARD.with_arch("digits_cnn"))  # other weights
    _nothing_registered(kb)


@pytest.mark.parametrize(
    ("card_text", "field"),
    [
        ("task: classification\n", "the card has no input"),
        ("task: guess\ninput: {kind: image, shape: [1, 8, 8]}\n", "task 'guess'"),
        ("input: {kind: audio, shape: [16000]}\n", "input.kind 'audio'"),
        ("input: {kind: image, shape: [8, 8]}\n", "must be [channels, height, width]"),
        ("input: {kind: image, shape: [1, 8, 8], mean: [0.5, 0.5]}\n", "input.mean needs one"),
        ("input: {kind: text, shape: [16], dtype: float32}\n", "a text input is token ids"),
        ("input: {kind: image, shape: [1, 8, 8]}\nlabels: missing.txt\n", "labels file"),
        ("input: [unclosed\n", "not a readable YAML card"),
    ],
)
def test_a_bad_card_names_its_file_and_field(
    card_text: str, field: str, kb: KnowledgeBase, models_dir: Path
) -> None:
    path = SAVERS["torchscript"](tiny_cnn(), models_dir)
    card_file = path.with_name(path.name + ".card.yaml")
    card_file.write_text(card_text)
    with pytest.raises(ModelCardError) as err:
        register_model(kb, "tiny", path)
    text = _one_line(err)
    assert str(card_file) in text and field in text
    _nothing_registered(kb)


def test_input_flags() -> None:
    assert parse_input_flag("image:1x8x8") == InputSpec("image", (1, 8, 8))
    assert parse_input_flag("text:128") == InputSpec("text", (128,), "int64")
    assert parse_input_flag("tensor:4x2:float64") == InputSpec("tensor", (4, 2), "float64")
    for bad in ("image", "audio:10", "image:8x8", "image:1xbx8", "text:16:float32"):
        with pytest.raises(ModelCardError, match="--input"):
            parse_input_flag(bad)


def test_names_versions_and_refs(kb: KnowledgeBase, models_dir: Path) -> None:
    path = SAVERS["onnx"](tiny_cnn(), models_dir)
    with pytest.raises(UnknownNameError, match="built-in zoo model"):
        register_model(kb, "digits_cnn", path, card=CARD)
    with pytest.raises(UnknownNameError, match="use letters, digits"):
        register_model(kb, "bad name!", path, card=CARD)
    with pytest.raises(UnknownNameError, match="no registered model named 'tiny'"):
        load_model("tiny:v1", kb)
    register_model(kb, "tiny", path, card=CARD)
    with pytest.raises(UnknownNameError, match=r"has no version v7 \(versions: v1\)"):
        load_model("tiny:v7", kb)
    with pytest.raises(UnknownNameError, match="no registered model named 'other'"):
        register_model(kb, "tiny", path, card=CARD, parent="other:v1")
    assert [v.ref for v in list_models(kb)] == ["tiny:v1"]


def test_inference_forms_cannot_be_retrained(models_dir: Path) -> None:
    path = SAVERS["torchscript"](tiny_cnn(), models_dir)
    path.with_name(path.name + ".card.yaml").write_text("input: {kind: image, shape: [1, 8, 8]}\n")
    with pytest.raises(
        NotTrainableError, match="torchscript model, which cannot be re-trained"
    ) as err:
        trainable_module(str(path))
    assert "Hugging Face directory" in _one_line(err) and "safetensors" in str(err.value)


def test_preprocessing_that_the_card_does_not_describe(tmp_path: Path) -> None:
    from PIL import Image

    with pytest.raises(ModelCardError, match="image without a tokenizer"):
        CARD.tokenize(["hello"])
    text = ModelCard("other", InputSpec("text", (8,), "int64", tokenizer=str(tmp_path)))
    with pytest.raises(ModelCardError, match="not a 1- or 3-channel image"):
        text.preprocess_image(Image.new("L", (8, 8)))
    with pytest.raises(ModelCardError, match="not a readable tokenizer directory"):
        text.tokenize(["hello"])
