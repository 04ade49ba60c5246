"""Datasets: shapes, determinism, and drifts that really move the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgewise.errors import SpecError, UnknownNameError
from edgewise.workloads.datasets import (
    DriftSplits,
    add_noise,
    digits_images,
    lfw_images,
    make_drift_splits,
    rotate,
)


def _nearest_centroid_accuracy(
    train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]
) -> float:
    """Accuracy of a nearest-class-mean classifier fitted on ``train``."""
    x, y = train[0].flatten(1), train[1]
    classes = torch.unique(y)
    centroids = torch.stack([x[y == c].mean(0) for c in classes])
    pred = classes[torch.cdist(test[0].flatten(1), centroids).argmin(1)]
    return float((pred == test[1]).float().mean())


def test_digits_images_shape_and_normalisation() -> None:
    x, y = digits_images()
    assert x.shape == (1797, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert set(y.tolist()) == set(range(10))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-4
    small, _ = digits_images(size=16)
    assert small.shape == (1797, 1, 16, 16)


def test_lfw_subset_ships_offline_faces_then_non_faces() -> None:
    x, y = lfw_images()
    assert x.shape == (200, 1, 32, 32)
    assert y[:100].tolist() == [1] * 100 and y[100:].tolist() == [0] * 100


@pytest.mark.parametrize("drift", ["rotation", "noise", "new_classes"])
def test_drift_splits_are_deterministic_disjoint_and_sized(drift: str) -> None:
    np_state, torch_state = np.random.get_state()[1].copy(), torch.random.get_rng_state()
    a = make_drift_splits("digits", drift, seed=5, size=16)
    b = make_drift_splits("digits", drift, seed=5, size=16)
    c = make_drift_splits("digits", drift, seed=6, size=16)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert isinstance(a, DriftSplits) and a.drift == drift
    for part in ("base_train", "base_test", "drift_train", "drift_test"):
        xa, ya = getattr(a, part)
        xb, yb = getattr(b, part)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.shape[1:] == (1, 16, 16) and len(xa) == len(ya) > 0
    assert not torch.equal(a.drift_test[0][:10], c.drift_test[0][:10])
    total = sum(
        len(getattr(a, p)[1]) for p in ("base_train", "base_test", "drift_train", "drift_test")
    )
    removed = 0 if drift != "new_classes" else 1797 - total
    assert total + removed == 1797


@pytest.mark.parametrize(
    ("drift", "kwargs"), [("rotation", {"angle_deg": 45.0}), ("noise", {"noise_std": 0.6})]
)
def test_drift_hurts_a_model_fitted_on_the_base_split(drift: str, kwargs: dict[str, float]) -> None:
    s = make_drift_splits("digits", drift, seed=0, size=16, **kwargs)
    base_acc = _nearest_centroid_accuracy(s.base_train, s.base_test)
    drift_acc = _nearest_centroid_accuracy(s.base_train, s.drift_test)
    assert base_acc > 0.8
    assert drift_acc < base_acc - 0.1


def test_new_classes_appear_only_in_the_drifted_split() -> None:
    s = make_drift_splits("digits", "new_classes", seed=1, held_out=3, size=8)
    assert len(s.held_out_classes) == 3
    base = set(s.base_train[1].tolist()) | set(s.base_test[1].tolist())
    drifted = set(s.drift_train[1].tolist()) | set(s.drift_test[1].tolist())
    assert base.isdisjoint(s.held_out_classes)
    assert set(s.held_out_classes) <= drifted
    assert drifted == set(range(10))


def test_rotation_and_noise_primitives() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-5)
    assert torch.allclose(rotate(x, 90.0), torch.rot90(x, 1, (2, 3)), atol=1e-4)
    img = torch.full((2, 1, 8, 8), 0.5)
    noisy = add_noise(img, 0.1, seed=0)
    assert torch.equal(noisy, add_noise(img, 0.1, seed=0))
    assert not torch.equal(noisy, img) and float(noisy.min()) >= 0 and float(noisy.max()) <= 1


def test_bad_names_and_impossible_drifts() -> None:
    with pytest.raises(UnknownNameError, match="known datasets: digits, lfw"):
        make_drift_splits("cifar", "rotation")
    with pytest.raises(UnknownNameError, match="known drifts"):
        make_drift_splits("digits", "blur")
    with pytest.raises(SpecError, match="2 classes"):
        make_drift_splits("lfw", "new_classes")
    lfw = make_drift_splits("lfw", "rotation", seed=0, size=16)
    assert len(lfw.base_train[1]) + len(lfw.base_test[1]) == 100
