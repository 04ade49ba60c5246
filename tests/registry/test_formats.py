"""Each format, saved from an nn.Module, registered and loaded, answers as the module did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import CARD, LABELS, SAVERS, SHAPE, inputs, reference, tiny_cnn

from edgewise.kb import KnowledgeBase
from edgewise.registry import (
    InputSpec,
    ModelCard,
    detect_format,
    load_model,
    open_path,
    register_model,
    save_trainable,
    trainable_module,
)


@pytest.mark.parametrize("fmt", sorted(SAVERS))
def test_each_format_answers_as_its_source_module(
    fmt: str, kb: KnowledgeBase, models_dir: Path, builder: str
) -> None:
    module = tiny_cnn(seed=3)
    path = SAVERS[fmt](module, models_dir)
    assert detect_format(path) == fmt
    card = None if fmt == "safetensors" else CARD  # safetensors: its card file names the arch
    version = register_model(kb, "tiny", path, card=card)
    assert (version.format, version.version) == (fmt, 1)
    loaded = load_model("tiny:v1", kb)
    assert (loaded.name, loaded.version, loaded.format) == ("tiny", 1, fmt)
    batch = inputs()
    np.testing.assert_allclose(loaded.forward(batch), reference(module, batch), atol=1e-4)
    top = loaded.top_k(batch, k=2)
    assert len(top) == len(batch) and all(len(row) == 2 for row in top)
    assert {label for row in top for label, _ in row} <= set(LABELS)
    best = reference(module, batch).argmax(axis=1)
    assert [row[0][0] for row in top] == [LABELS[i] for i in best]


def test_a_hugging_face_directory_answers_as_its_source_and_carries_its_card(
    kb: KnowledgeBase, models_dir: Path
) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = ViTForImageClassification(config).eval()
    directory = models_dir / "vit"
    module.save_pretrained(str(directory), safe_serialization=True)
    assert detect_format(directory) == "huggingface"
    version = register_model(kb, "vit", directory)  # no card: read off config.json
    assert version.card.input == InputSpec("image", (1, 8, 8))
    assert version.card.labels == LABELS and version.card.task == "classification"
    batch = inputs()
    with torch.inference_mode():
        expected = module(torch.from_numpy(batch)).logits.numpy()
    np.testing.assert_allclose(load_model("vit", kb).forward(batch), expected, atol=1e-4)
    trained, card = trainable_module("vit", kb)
    assert card.labels == LABELS and isinstance(trained, torch.nn.Module)


def test_paths_and_zoo_names_load_without_the_registry(models_dir: Path) -> None:
    module = tiny_cnn()
    path = SAVERS["onnx"](module, models_dir)
    loaded = load_model(str(path))  # the ONNX graph says its input: no card needed
    assert loaded.version is None and loaded.card.input == InputSpec("image", SHAPE)
    batch = inputs(3)
    np.testing.assert_allclose(loaded.forward(batch), reference(module, batch), atol=1e-4)
    zoo = load_model("digits_cnn")
    assert zoo.format == "zoo" and zoo.card.input.shape == (1, 32, 32)
    assert zoo.forward(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 10)


def test_an_exported_program_carries_its_input_shape(models_dir: Path) -> None:
    path = SAVERS["export"](tiny_cnn(), models_dir)
    assert open_path(path).card.input == InputSpec("image", SHAPE)


def test_save_trainable_round_trips_a_zoo_architecture(kb: KnowledgeBase, tmp_path: Path) -> None:
    module, card = trainable_module("digits_cnn")
    assert card.arch == "digits_cnn"
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01)
    out = save_trainable(
        module, card.with_labels(tuple("0123456789")), tmp_path / "v2", arch="digits_cnn"
    )
    assert sorted(p.name for p in out.iterdir()) == ["card.yaml", "model.safetensors"]
    batch = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(
        load_model(str(out)).forward(batch), reference(module.eval(), batch), atol=1e-4
    )
    version = register_model(kb, "digits", out, parent=None)
    again, again_card = trainable_module(version.ref, kb)
    assert again_card.arch == "digits_cnn" and again_card.labels == tuple("0123456789")
    np.testing.assert_allclose(reference(again, batch), reference(module, batch), atol=1e-6)


def test_save_trainable_with_a_builder(builder: str, tmp_path: Path) -> None:
    module = tiny_cnn(seed=5)
    out = save_trainable(module, CARD, tmp_path / "tiny", arch=builder)
    rebuilt, card = trainable_module(str(out))
    assert card.arch == builder
    batch = inputs()
    np.testing.assert_allclose(reference(rebuilt, batch), reference(module, batch), atol=1e-6)


def test_preprocess_image_resizes_converts_and_normalises() -> None:
    from PIL import Image

    card = ModelCard("classification", InputSpec("image", (1, 8, 8), mean=(0.5,), std=(0.25,)))
    image = Image.new("RGB", (32, 16), color=(255, 255, 255))
    array = card.preprocess_image(image)
    assert array.shape == (1, 8, 8) and array.dtype == np.float32
    np.testing.assert_allclose(array, (1.0 - 0.5) / 0.25, atol=1e-5)
    rgb = ModelCard("other", InputSpec("image", (3, 4, 6))).preprocess_image(
        Image.new("L", (9, 9), 0)
    )
    assert rgb.shape == (3, 4, 6) and float(rgb.max()) == 0.0


def test_a_hugging_face_text_model_with_its_tokenizer(kb: KnowledgeBase, models_dir: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    vocab = {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]"
    )
    config = DistilBertConfig(
        vocab_size=len(vocab),
        dim=16,
        n_layers=1,
        n_heads=2,
        hidden_dim=32,
        max_position_embeddings=6,
        num_labels=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = DistilBertForSequenceClassification(config).eval()
    directory = models_dir / "bert"
    module.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    version = register_model(kb, "bert", directory)
    assert version.card.input == InputSpec("text", (6,), "int64", tokenizer=".")
    loaded = load_model("bert", kb)
    ids = loaded.tokenize(["hello world", "world oops hello"])
    assert ids.tolist() == [[2, 3, 0, 0, 0, 0], [3, 1, 2, 0, 0, 0]]
    with torch.inference_mode():
        expected = module(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(loaded.forward(ids), expected, atol=1e-4)
