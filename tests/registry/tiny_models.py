"""A tiny CNN on 1x8x8 inputs, and how to save it in every format the registry reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgewise.registry import InputSpec, ModelCard

LABELS = ("cat", "dog", "fox")
SHAPE = (1, 8, 8)


class TinyCNN(nn.Module):
    """A conv layer and a linear head: 1x8x8 in, three logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


def tiny_cnn(seed: int = 0) -> TinyCNN:
    """A :class:`TinyCNN` with weights from ``seed`` (global RNG untouched), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TinyCNN()
    return module.eval()


def inputs(n: int = 5, seed: int = 1) -> np.ndarray:
    """``n`` random 1x8x8 float32 samples."""
    return np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)


def reference(module: nn.Module, batch: np.ndarray) -> np.ndarray:
    """What the source module answers on ``batch``."""
    with torch.inference_mode():
        return module(torch.from_numpy(batch)).numpy()


CARD = ModelCard("classification", InputSpec("image", SHAPE), LABELS)


def save_torchscript(module: nn.Module, out: Path) -> Path:
    path = out / "tiny.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def save_export(module: nn.Module, out: Path) -> Path:
    path = out / "tiny.pt2"
    example = (torch.zeros(2, *SHAPE),)
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, example, dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def save_onnx(module: nn.Module, out: Path) -> Path:
    path = out / "tiny.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(2, *SHAPE),),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


def save_safetensors(module: nn.Module, out: Path) -> Path:
    """Weights only; the card names the builder ``tiny_builder:build`` (see ``builder``)."""
    from safetensors.torch import save_model

    path = out / "tiny.safetensors"
    save_model(module, str(path))
    CARD.with_arch("tiny_builder:build").save(path.with_name(path.name + ".card.yaml"))
    return path


SAVERS: dict[str, Callable[[nn.Module, Path], Path]] = {
    "torchscript": save_torchscript,
    "export": save_export,
    "onnx": save_onnx,
    "safetensors": save_safetensors,
}
