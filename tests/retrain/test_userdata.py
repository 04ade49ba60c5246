"""The user's own data: image folders and .npz files, the held-out split, the fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgewise.errors import EdgewiseError, SpecError
from edgewise.workloads.userdata import (
    data_fingerprint,
    held_out_split,
    load_user_data,
    write_image_folder,
)


def _grey8(img: Image.Image) -> np.ndarray:
    """A card's preprocessing in small: 8x8 grey, [0, 1], one channel."""
    return np.asarray(img.convert("L").resize((8, 8)), dtype=np.float32)[None] / 255.0


def _folder(tmp_path: Path, per_class: int = 4, classes: int = 3) -> Path:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(classes), per_class)
    return write_image_folder(
        rng.random((len(y), 8, 8)), y, tmp_path / "imgs", ["cat", "dog", "eel"][:classes]
    )


def test_image_folder_reads_classes_sorted_and_preprocesses(tmp_path: Path) -> None:
    data = load_user_data(_folder(tmp_path), preprocess=_grey8, num_outputs=3)
    assert data.classes == ("cat", "dog", "eel")
    assert data.x.shape == (12, 1, 8, 8) and data.x.dtype == np.float32
    assert list(np.bincount(data.y)) == [4, 4, 4]
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    # PNG round trip keeps the pixels within one grey level
    again = load_user_data(tmp_path / "imgs", preprocess=_grey8)
    assert np.array_equal(data.x, again.x) and data.fingerprint == again.fingerprint


def test_folder_names_follow_the_models_labels(tmp_path: Path) -> None:
    data = load_user_data(_folder(tmp_path), preprocess=_grey8, labels=["eel", "x", "cat", "dog"])
    assert set(data.y.tolist()) == {0, 2, 3} and data.classes is not None
    assert data.classes[0] == "eel" and data.classes[2] == "cat"


def test_fingerprint_is_content_and_layout(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    fp = data_fingerprint(folder)
    assert fp.startswith("sha256:") and fp == data_fingerprint(folder)
    (folder / "cat" / "notes.txt").write_text("ignored")
    assert data_fingerprint(folder) == fp
    moved = next((folder / "cat").glob("*.png"))
    moved.rename(folder / "dog" / moved.name)
    assert data_fingerprint(folder) != fp


def test_npz_reads_x_and_y(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((6, 1, 8, 8)), y=np.array([0, 1, 0, 1, 2, 2]))
    data = load_user_data(path, sample_shape=(1, 8, 8), num_outputs=3)
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64 and data.classes is None
    assert data.fingerprint == data_fingerprint(path)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_held_out_split_is_seeded_stratified_and_disjoint(seed: int) -> None:
    y = np.array([0] * 8 + [1] * 4 + [2] * 1)
    train, held = held_out_split(y, test_fraction=0.25, seed=seed)
    assert set(train) | set(held) == set(range(len(y))) and not set(train) & set(held)
    assert sorted(y[held].tolist()) == [0, 0, 1]  # 2 of 8, 1 of 4, the singleton trains
    again = held_out_split(y, test_fraction=0.25, seed=seed)
    assert np.array_equal(held, again[1])


def test_held_out_split_of_singletons_still_holds_some_out() -> None:
    train, held = held_out_split(np.arange(5), test_fraction=0.25, seed=0)
    assert len(held) == 1 and len(train) == 4


def _bad_cases(tmp_path: Path) -> list[tuple[Path, dict[str, object], str]]:
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "a" / "readme.txt").write_text("no images here")
    one = write_image_folder(np.zeros((3, 8, 8)), np.zeros(3, dtype=int), tmp_path / "one")
    broken = _folder(tmp_path)
    (broken / "dog" / "zz.png").write_bytes(b"\x89PNG not really")
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, x=np.ones((3, 2)))
    lengths = tmp_path / "lengths.npz"
    np.savez(lengths, x=np.ones((3, 2)), y=np.array([0, 1]))
    outside = tmp_path / "outside.npz"
    np.savez(outside, x=np.ones((3, 2)), y=np.array([0, 1, 10]))
    return [
        (empty, {"preprocess": _grey8}, "no images"),
        (one, {"preprocess": _grey8}, "only one class"),
        (broken / "dog" / "zz.png", {}, "unknown data form"),
        (broken, {"preprocess": _grey8}, "zz.png: unreadable image"),
        (no_y, {}, "no array 'y'"),
        (lengths, {}, "x has 3 samples and y 2"),
        (outside, {"num_outputs": 10}, "label 10 is outside the model's 10 outputs"),
        (outside, {"sample_shape": (3,)}, "the model takes (3,)"),
        (tmp_path / "absent", {}, "no such file"),
    ]


def test_bad_data_is_one_line_naming_the_file(tmp_path: Path) -> None:
    for path, kwargs, words in _bad_cases(tmp_path):
        with pytest.raises(SpecError) as err:
            load_user_data(path, **kwargs)  # type: ignore[arg-type]
        msg = str(err.value)
        assert isinstance(err.value, EdgewiseError) and "\n" not in msg
        assert words in msg and str(path) in msg, msg
