"""Offline image datasets and drift generators for "deployed" and "updated" splits.

Two datasets ship inside installed wheels, so nothing is downloaded:

- ``digits``: scikit-learn's 1,797 8×8 hand-written digits (10 classes), upscaled
  bilinearly to ``size``×``size`` (32 by default, the input of ``digits_cnn``).
- ``lfw``: scikit-image's ``lfw_subset``, 200 25×25 grey images, 100 faces (label 1)
  then 100 non-faces (label 0), upscaled the same way.

Drifts (:func:`make_drift_splits`): ``rotation`` (every drifted image turned by a fixed
angle), ``noise`` (additive Gaussian noise) and ``new_classes`` (some classes are held
out of the base split and appear only in the drifted split). Drifts act on pixel values
in [0, 1]; every split is then normalised with the same dataset-wide mean and std.

All functions are deterministic given ``seed`` and touch no global RNG state.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from edgewise.errors import SpecError, UnknownNameError

DATASETS: tuple[str, ...] = ("digits", "lfw")
DRIFTS: tuple[str, ...] = ("rotation", "noise", "new_classes")

Split = tuple[torch.Tensor, torch.Tensor]


def _upscale(images: np.ndarray, size: int) -> torch.Tensor:
    """``(N, H, W)`` array in [0, 1] -> ``(N, 1, size, size)`` float32, bilinear."""
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=4)
def _pixels(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Original images scaled to [0, 1] and int64 labels (read-only, cached)."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.asarray(bunch.images, dtype=np.float32) / 16.0
        labels = np.asarray(bunch.target, dtype=np.int64)
    elif dataset == "lfw":
        from skimage.data import lfw_subset

        images = np.asarray(lfw_subset(), dtype=np.float32)
        lo, hi = float(images.min()), float(images.max())
        images = (images - lo) / (hi - lo) if hi > lo else images
        half = images.shape[0] // 2
        labels = np.concatenate([np.ones(half), np.zeros(images.shape[0] - half)]).astype(np.int64)
    else:
        raise UnknownNameError(
            f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _raw(dataset: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel values in [0, 1], shape ``(N, 1, size, size)``, and int64 labels."""
    if size < 4:
        raise ValueError(f"image size must be at least 4, got {size}")
    images, labels = _pixels(dataset)
    return _upscale(images.copy(), size), torch.tensor(labels)


def _normalise(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return (x - mean) / std


def _stats(x: torch.Tensor) -> tuple[float, float]:
    return float(x.mean()), float(x.std()) or 1.0


def digits_images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn digits upscaled to ``size``×``size`` and normalised (zero mean, unit std).

    Returns
    -------
    X : torch.Tensor
        ``(1797, 1, size, size)`` float32.
    y : torch.Tensor
        ``(1797,)`` int64 labels 0–9.
    """
    x, y = _raw("digits", size)
    return _normalise(x, *_stats(x)), y


def lfw_images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-image ``lfw_subset`` upscaled to ``size``×``size`` and normalised.

    Returns ``(X (200, 1, size, size) float32, y (200,) int64)`` with 1 = face, 0 = not.
    """
    x, y = _raw("lfw", size)
    return _normalise(x, *_stats(x)), y


def rotate(images: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """Turn every image of ``(N, C, H, W)`` by ``angle_deg`` degrees about its centre.

    Positive angles turn counter-clockwise as displayed (row 0 at the top), like
    ``torch.rot90``. Bilinear resampling; pixels that come from outside the frame are 0 (background).
    """
    theta = math.radians(angle_deg)
    c, s = math.cos(theta), math.sin(theta)
    mat = torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=images.dtype)
    grid = F.affine_grid(mat.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def add_noise(images: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Add Gaussian noise of ``std`` (pixel units) and clip back to [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen, dtype=images.dtype) * std
    return (images + noise).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class DriftSplits:
    """A deployed ("base") and an updated ("drift") data set, each with train and test parts.

    Each field is an ``(X, y)`` tuple: ``X`` float32 ``(N, 1, size, size)`` normalised,
    ``y`` int64 ``(N,)``.
    """

    base_train: Split
    base_test: Split
    drift_train: Split
    drift_test: Split
    dataset: str
    drift: str
    held_out_classes: tuple[int, ...] = ()


def _split(idx: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_test = max(1, round(len(idx) * test_fraction))
    return idx[n_test:], idx[:n_test]


def make_drift_splits(
    dataset: str = "digits",
    drift: Literal["rotation", "noise", "new_classes"] | str = "rotation",
    seed: int = 0,
    *,
    size: int = 32,
    angle_deg: float = 30.0,
    noise_std: float = 0.5,
    held_out: int = 2,
    test_fraction: float = 0.25,
) -> DriftSplits:
    """Deterministic base and drifted splits of an offline dataset.

    The samples are shuffled with ``seed`` and cut in two disjoint halves: the base half
    is left as it is, the drift half is transformed (``rotation`` by ``angle_deg``,
    ``noise`` with ``noise_std``). For ``new_classes``, ``held_out`` classes drawn with
    ``seed`` are removed from the base half; the drift half keeps every class, so the
    held-out ones appear only there. Each half is cut into train and test parts
    (``test_fraction`` of it to test).

    Raises
    ------
    UnknownNameError
        Unknown ``dataset`` or ``drift``.
    SpecError
        ``new_classes`` on a dataset with too few classes, or bad sizes.
    """
    if drift not in DRIFTS:
        raise UnknownNameError(f"unknown drift {drift!r}; known drifts: {', '.join(DRIFTS)}")
    if not 0.0 < test_fraction < 1.0:
        raise SpecError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x, y = _raw(dataset, size)
    mean, std = _stats(x)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    base_idx, drift_idx = order[: len(order) // 2], order[len(order) // 2 :]

    held: tuple[int, ...] = ()
    if drift == "new_classes":
        classes = np.unique(y.numpy())
        if not 1 <= held_out <= len(classes) - 2:
            raise SpecError(
                f"new_classes drift on {dataset!r} ({len(classes)} classes) needs "
                f"1 <= held_out <= {len(classes) - 2}, got {held_out}"
            )
        held = tuple(sorted(int(c) for c in rng.choice(classes, size=held_out, replace=False)))
        base_idx = base_idx[~np.isin(y.numpy()[base_idx], held)]

    xb, xd = x[torch.as_tensor(base_idx)], x[torch.as_tensor(drift_idx)]
    if drift == "rotation":
        xd = rotate(xd, angle_deg)
    elif drift == "noise":
        xd = add_noise(xd, noise_std, seed=int(rng.integers(2**31)))
    yb, yd = y[torch.as_tensor(base_idx)], y[torch.as_tensor(drift_idx)]
    xb, xd = _normalise(xb, mean, std), _normalise(xd, mean, std)

    b_tr, b_te = _split(np.arange(len(yb)), test_fraction)
    d_tr, d_te = _split(np.arange(len(yd)), test_fraction)
    return DriftSplits(
        base_train=(xb[b_tr], yb[b_tr]),
        base_test=(xb[b_te], yb[b_te]),
        drift_train=(xd[d_tr], yd[d_tr]),
        drift_test=(xd[d_te], yd[d_te]),
        dataset=dataset,
        drift=drift,
        held_out_classes=held,
    )
