"""The demo's user: real digits as image folders, a classifier trained on them, exported.

What a user of edgewise brings: scikit-learn's handwritten digits (real scans, shipped
with scikit-learn) written as PNG folders, one sub-folder per digit; a small CNN trained
on the clean folder in seconds; the trained model exported in a trainable form
(safetensors weights + a card naming the architecture, the input and the labels), which
edgewise can serve and re-train. The drift is the same digits turned by
:data:`ANGLE_DEG` degrees (a camera mounted askew): a folder to re-train on and a folder
the clients send.

Pure parts: :func:`digits_parts` (a seeded split of the pixels, the drifted parts
turned) and :func:`pixel_stats`. Effects: writing the folders, training, saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgewise.registry import ModelCard

__all__ = [
    "ANGLE_DEG",
    "ARCH",
    "LABELS",
    "DigitsFolders",
    "DigitsParts",
    "TrainedModel",
    "digits_parts",
    "export_trained",
    "pixel_stats",
    "train_classifier",
    "write_folders",
]

ANGLE_DEG = 45.0
"""How far the drifted digits are turned (counter-clockwise)."""
ARCH = "digits_cnn"
"""The architecture the user's weights go with (the zoo's small CNN, 32 x 32 grey)."""
SIZE = 32
LABELS = tuple(str(d) for d in range(10))
#: Shares of the 1,797 digits: clean training, clean held-out, drifted re-training,
#: drifted for the clients (the rest).
SHARES = (0.45, 0.10, 0.33)


@dataclass(frozen=True)
class DigitsParts:
    """Four disjoint parts of the digits: grey ``(N, 32, 32)`` pixels in [0, 1] and labels.

    ``clean_*`` are the digits as scanned, ``drift_*`` turned by :data:`ANGLE_DEG`.
    """

    clean_train: tuple[np.ndarray, np.ndarray]
    clean_test: tuple[np.ndarray, np.ndarray]
    drift_train: tuple[np.ndarray, np.ndarray]
    drift_test: tuple[np.ndarray, np.ndarray]


def digits_parts(seed: int, angle_deg: float = ANGLE_DEG) -> DigitsParts:
    """scikit-learn's digits, upscaled to 32 x 32, shuffled with ``seed`` and cut in four.

    Parameters
    ----------
    seed : int
        Seed of the shuffle.
    angle_deg : float
        Turn of the two drifted parts, in degrees.

    Returns
    -------
    DigitsParts
        The clean training and held-out parts, and the drifted ones.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from edgewise.workloads.datasets import rotate

    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images / 16.0, dtype=torch.float32)[:, None]
    big = F.interpolate(pixels, size=SIZE, mode="bilinear", align_corners=False)
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    cuts = np.cumsum([round(share * len(order)) for share in SHARES])
    parts = np.split(order, cuts)
    out = []
    for i, idx in enumerate(parts):
        images = big[torch.as_tensor(idx)]
        if i >= 2:
            images = rotate(images, angle_deg)
        out.append((images[:, 0].clamp(0.0, 1.0).numpy(), bunch.target[idx].astype(np.int64)))
    return DigitsParts(*out)


@dataclass(frozen=True)
class DigitsFolders:
    """The parts as image folders (one sub-folder per digit) under one directory."""

    clean_train: Path
    clean_test: Path
    drift_train: Path
    drift_test: Path


def write_folders(parts: DigitsParts, root: Path) -> DigitsFolders:
    """Write each part as PNGs under ``root`` (replacing what an earlier run left there)."""
    import shutil

    from edgewise.workloads.userdata import write_image_folder

    folders = DigitsFolders(*(root / name for name in DigitsFolders.__dataclass_fields__))
    for name in DigitsFolders.__dataclass_fields__:
        target: Path = getattr(folders, name)
        if target.exists():
            shutil.rmtree(target)
        images, labels = getattr(parts, name)
        write_image_folder(images, labels, target, class_names=LABELS)
    return folders


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the pixels (the card's normalisation), 3 decimals."""
    return round(float(images.mean()), 3), round(float(images.std()), 3)


@dataclass(frozen=True)
class TrainedModel:
    """The user's classifier after training: the module, its card and its figures."""

    module: Any
    card: ModelCard
    train_s: float
    held_out_accuracy: float


def _card(mean: float, std: float) -> ModelCard:
    from edgewise.registry import InputSpec, ModelCard

    spec = InputSpec("image", (1, SIZE, SIZE), mean=(mean,), std=(std,))
    return ModelCard("classification", spec, labels=LABELS)


def _read(folder: Path, card: ModelCard) -> tuple[Any, Any]:
    """A folder through the card's preprocessing, as served images are."""
    import torch

    from edgewise.workloads.userdata import load_user_data

    data = load_user_data(folder, preprocess=card.preprocess_image, labels=card.labels)
    return torch.from_numpy(data.x), torch.from_numpy(data.y)


def train_classifier(
    folders: DigitsFolders, pixels: np.ndarray, *, epochs: int, seed: int
) -> TrainedModel:
    """Train :data:`ARCH` on the clean folder (Adam, batches of 64), one thread.

    Parameters
    ----------
    folders : DigitsFolders
        The clean training folder is trained on, the clean held-out one scored.
    pixels : numpy.ndarray
        The clean training pixels, for the card's normalisation.
    epochs : int
        Passes over the training folder.
    seed : int
        Seed of the initial weights and the batch order.

    Returns
    -------
    TrainedModel
        The module in eval mode, its card, the training seconds, held-out accuracy.
    """
    import time

    import torch
    import torch.nn.functional as F

    from edgewise.retrain.trainer import accuracy
    from edgewise.workloads.zoo import build_model

    card = _card(*pixel_stats(pixels))
    x, y = _read(folders.clean_train, card)
    module = build_model(ARCH, seed=seed).module
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        module.train()
        for _ in range(epochs):
            for batch in np.array_split(rng.permutation(len(y)), max(1, len(y) // 64)):
                idx = torch.as_tensor(batch)
                loss = F.cross_entropy(module(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        module.eval()
    finally:
        torch.set_num_threads(threads)
    train_s = time.perf_counter() - start
    return TrainedModel(module, card, train_s, accuracy(module, *_read(folders.clean_test, card)))


def export_trained(trained: TrainedModel, out: Path) -> Path:
    """Save the model in its trainable form: ``model.safetensors`` and ``card.yaml``."""
    import shutil

    from edgewise.registry import save_trainable

    if out.exists():
        shutil.rmtree(out)
    return save_trainable(trained.module, trained.card, out, arch=ARCH)
