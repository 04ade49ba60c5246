"""Real predictions through the real runtime: a user's TorchScript classifier served by
Ray Serve answers through HTTP exactly what it answers offline."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

pytestmark = pytest.mark.slow

LABELS = ["zero", "one", "two", "three"]


def _tiny_classifier(path: Path) -> Path:
    """A seeded 4-class classifier of 1x8x8 images, saved as TorchScript with its card."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    torch.jit.save(torch.jit.script(net), str(path))
    card = {
        "task": "classification",
        "input": {"kind": "image", "shape": [1, 8, 8], "mean": [0.5], "std": [0.25]},
        "labels": LABELS,
    }
    path.with_name(path.name + ".card.yaml").write_text(yaml.safe_dump(card))
    return path


def _png(seed: int) -> bytes:
    px = np.random.default_rng(seed).integers(0, 256, size=(12, 10), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px, "L").save(buf, "PNG")
    return buf.getvalue()


def test_http_predictions_equal_offline_predictions(tmp_path: Path) -> None:
    from edgewise.registry import load_model

    model_file = _tiny_classifier(tmp_path / "tiny.pt")
    offline = load_model(str(model_file))
    cfg = RuntimeConfig(
        model=str(model_file),
        app="predtest",
        cpus_per_replica=0.5,
        max_replicas=1,
        port=0,
        num_cpus=2,
        use_cgroup=False,
    )
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(1, 120)
        for seed in range(8):
            body = _png(seed)
            got = httpx.post(rt.url + "/predict", content=body, timeout=30)
            assert got.status_code == 200, got.text
            doc = got.json()
            with Image.open(io.BytesIO(body)) as img:
                expected = offline.top_k(offline.card.preprocess_image(img)[None], 3)[0]
            assert doc["model"] == "tiny.pt" or doc["model"] == offline.name
            assert doc["version"] is None
            top = [(t["label"], t["score"]) for t in doc["top"][0]]
            assert [label for label, _ in top] == [label for label, _ in expected]
            np.testing.assert_allclose([s for _, s in top], [s for _, s in expected], atol=1e-6)
            assert doc["class"] == [LABELS.index(expected[0][0])]
        # A request that does not match the card: one line, 4xx, and the replica stays up.
        wrong = io.BytesIO()
        np.save(wrong, np.zeros((3, 8, 8), np.float32))
        bad = httpx.post(rt.url + "/predict", content=wrong.getvalue(), timeout=30)
        assert bad.status_code == 422 and "(1, 8, 8)" in bad.json()["error"]
        assert httpx.post(rt.url + "/predict", content=_png(0), timeout=30).status_code == 200
        health = httpx.get(rt.url + "/healthz", timeout=30).json()
        assert health["status"] == "ok" and health["version"] is None
