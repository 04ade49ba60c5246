"""The predictor behind ``/predict``: card -> input spec, forward -> answer (no Ray)."""

from __future__ import annotations

import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgewise.registry import InputSpec, ModelCard
from edgewise.serving.payload import decode
from edgewise.serving.runtime.batching import MicroBatcher
from edgewise.serving.runtime.predictor import Predictor, input_spec


@dataclass
class FakeModel:
    """A linear 'model': logits = x.reshape(n, -1) @ w."""

    card: ModelCard
    weights: np.ndarray
    name: str = "tiny"
    version: int | None = 2
    format: str = "torchscript"
    calls: list[int] = field(default_factory=list)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape[0])
        return batch.reshape(batch.shape[0], -1).astype(np.float64) @ self.weights

    def top_k(self, batch: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        logits = self.forward(batch)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        order = np.argsort(-probs, axis=1)[:, :k]
        return [
            [(self.card.labels[i], float(p[i])) for i in row]
            for row, p in zip(order, probs, strict=True)
        ]


def _classifier() -> FakeModel:
    spec = InputSpec("image", (1, 4, 4), mean=(0.5,), std=(0.5,))
    card = ModelCard("classification", spec, ("cat", "dog", "owl", "eel"))
    w = np.random.default_rng(0).normal(size=(16, 4))
    return FakeModel(card, w)


def _png(seed: int) -> bytes:
    px = np.random.default_rng(seed).integers(0, 256, size=(9, 7), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px, "L").save(buf, "PNG")
    return buf.getvalue()


def test_image_spec_comes_from_the_card() -> None:
    model = _classifier()
    spec = input_spec(model.card)
    assert spec.kind == "image" and spec.shape == (1, 4, 4)
    assert spec.image_fn == model.card.preprocess_image


def test_tensor_and_text_specs_come_from_the_card() -> None:
    tensor = input_spec(ModelCard("regression", InputSpec("tensor", (3,), dtype="float64")))
    assert (tensor.kind, tensor.shape, tensor.dtype) == ("tensor", (3,), "float64")
    text = input_spec(ModelCard("classification", InputSpec("text", (12,), dtype="int64")))
    assert (text.kind, text.shape, text.tokenize) == ("text", (12,), None)


def test_classifier_answers_top_k_labels_and_the_legacy_keys() -> None:
    model = _classifier()
    pred = Predictor(model, top_k=2)
    batch = np.concatenate([decode(_png(s), "image/png", pred.spec) for s in (1, 2)])
    doc = pred.answer(pred.infer(batch))
    offline = model.top_k(batch, 2)
    assert doc["model"] == "tiny" and doc["version"] == 2
    assert [[(t["label"], t["score"]) for t in top] for top in doc["top"]] == offline
    assert doc["class"] == [list(model.card.labels or ()).index(top[0][0]) for top in offline]
    assert doc["score"] == [round(top[0][1], 5) for top in offline]
    json.dumps(doc)  # the answer is JSON as it is


def test_other_models_answer_their_raw_output() -> None:
    card = ModelCard("regression", InputSpec("tensor", (3,)))
    model = FakeModel(card, np.eye(3)[:, :2], name="reg", version=None)
    pred = Predictor(model)
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    doc = pred.answer(pred.infer(x))
    assert doc == {"model": "reg", "version": None, "output": [[1.0, 2.0], [4.0, 5.0]]}
    assert pred.warm_batch().shape == (1, 3)


def test_batched_requests_each_get_their_own_answer() -> None:
    model = _classifier()
    pred = Predictor(model, top_k=1)
    bodies = [decode(_png(s), "image/png", pred.spec) for s in range(6)]

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(pred.infer, pool, max_batch=4)
            return list(await asyncio.gather(*(batcher.submit(b) for b in bodies)))

    answers = [pred.answer(o) for o in asyncio.run(main())]
    for body, doc in zip(bodies, answers, strict=True):
        assert doc["top"][0][0]["label"] == model.top_k(body, 1)[0][0][0]
        assert len(doc["class"]) == 1
    assert max(model.calls) > 1  # some requests shared a forward pass


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_asks_the_model_for_k_labels(k: int) -> None:
    pred = Predictor(_classifier(), top_k=k)
    doc = pred.answer(pred.infer(pred.warm_batch()))
    assert len(doc["top"][0]) == k


def test_a_zoo_model_answers_as_before_with_integer_classes() -> None:
    from edgewise.registry import load_model

    pred = Predictor(load_model("digits_cnn"))
    assert pred.spec.image_fn is None  # decoded exactly as before model cards existed
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 32, 32), np.float32))
    doc = pred.answer(pred.infer(decode(buf.getvalue(), None, pred.spec)))
    assert doc["model"] == "digits_cnn" and doc["version"] is None
    assert isinstance(doc["class"][0], int) and 0 <= doc["class"][0] < 10
    assert doc["top"][0][0]["label"] == str(doc["class"][0])
