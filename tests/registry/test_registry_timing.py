"""Timing any model reference: the example batch of a card, the runner, the canonical reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import CARD, SHAPE, reference, save_torchscript, tiny_cnn

from edgewise.errors import UnknownNameError
from edgewise.kb import KnowledgeBase
from edgewise.registry import (
    InputSpec,
    ModelCard,
    ModelFileError,
    canonical_ref,
    load_model,
    register_model,
)
from edgewise.registry.card import card_path_for
from edgewise.serving.profiles.worker import _model_service
from edgewise.workloads.runner import InferenceRunner, LoadedRunner, runner_for


def test_example_batch_follows_the_card(kb: KnowledgeBase, models_dir: Path) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    loaded = load_model("tiny:v1", kb)
    batch = loaded.example_batch(4, seed=3)
    assert batch.shape == (4, *SHAPE) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, loaded.example_batch(4, seed=3))
    assert not np.array_equal(batch, loaded.example_batch(4, seed=4))
    text = ModelCard("classification", InputSpec("text", (6,), "int64"), num_outputs=2)
    loaded.card = text
    ids = loaded.example_batch(2)
    assert ids.shape == (2, 6) and ids.dtype == np.int64 and not ids.any()
    with pytest.raises(ValueError, match="batch_size"):
        loaded.example_batch(0)


def test_runner_for_a_registered_model_times_its_forward(
    kb: KnowledgeBase, models_dir: Path
) -> None:
    module = tiny_cnn(seed=5)
    register_model(kb, "tiny", save_torchscript(module, models_dir), card=CARD)
    runner = runner_for("tiny:v1", batch_size=3, threads=1, seed=2, kb=kb)
    assert isinstance(runner, LoadedRunner) and runner.model.ref == "tiny:v1"
    assert tuple(runner.batch.shape) == (3, *SHAPE)
    out = runner.infer(runner.batch)
    np.testing.assert_allclose(out.numpy(), reference(module, runner.batch.numpy()), atol=1e-5)
    times = runner.measure(4, warmup=1)
    assert times.shape == (4,) and np.all(times > 0)
    with pytest.raises(ValueError, match="at least 1"):
        runner.measure(0)


def test_runner_for_a_zoo_name_is_the_zoo_runner() -> None:
    runner = runner_for("digits_cnn", batch_size=2, threads=1, seed=7)
    same = InferenceRunner("digits_cnn", batch_size=2, threads=1, seed=7)
    assert isinstance(runner, InferenceRunner)
    assert torch.equal(runner.batch, same.batch)
    assert torch.equal(runner.infer(runner.batch), same.infer(same.batch))


def test_runner_for_a_model_file(models_dir: Path) -> None:
    path = save_torchscript(tiny_cnn(), models_dir)
    CARD.save(card_path_for(path))
    runner = runner_for(str(path), batch_size=1)
    assert isinstance(runner, LoadedRunner) and runner.infer(runner.batch).shape == (1, 3)


def test_the_capacity_replica_serves_a_registered_model(
    kb: KnowledgeBase, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    monkeypatch.setenv("EDGEWISE_DB_URL", kb.url)  # what ReplicaSpec.kb hands the child
    serve = _model_service("tiny:v1", batch_size=2, threads=1, seed=0)
    serve()


def test_canonical_ref(kb: KnowledgeBase, models_dir: Path) -> None:
    path = save_torchscript(tiny_cnn(), models_dir)
    register_model(kb, "tiny", path, card=CARD)
    register_model(kb, "tiny", path, card=CARD)
    assert canonical_ref("mobilenet_v2") == "mobilenet_v2"
    assert canonical_ref("tiny", kb) == "tiny:v2"
    assert canonical_ref("tiny:1", kb) == "tiny:v1"
    assert canonical_ref(str(path)) == str(path)
    with pytest.raises(UnknownNameError, match=r"unknown model 'nosuch'; known models: "):
        canonical_ref("nosuch", kb)
    with pytest.raises(UnknownNameError, match="has no version v9"):
        canonical_ref("tiny:v9", kb)
    with pytest.raises(ModelFileError, match="does not exist"):
        canonical_ref(str(models_dir / "gone.pt"))
