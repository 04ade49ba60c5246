"""The user's own data for re-training: an image folder or an ``.npz``, split and fingerprinted.

Two forms are read:

- an **image folder**: one sub-folder per class holding PNG or JPEG files; the class
  names are the sub-folders' names, sorted (or, when the model's labels name every
  folder, the model's label order); each image goes through the model card's
  preprocessing (size, channels, normalisation), passed in as a callable;
- an **``.npz``** with an array ``x`` (one sample per row, already preprocessed) and an
  integer array ``y`` of the same length.

Pure parts: :func:`held_out_split` (a seeded, stratified train / held-out split) and
:func:`check_labels`. Effects: :func:`load_user_data` and its two readers (files in),
:func:`data_fingerprint` (a sha256 over the files' content, stable across runs and
hosts) and :func:`write_image_folder` (files out, for demos and tests).

Every problem a user can fix raises :class:`edgewise.errors.SpecError` with one line
naming the file: a folder with no images, one class only, an unreadable image, an
``.npz`` without ``x``/``y`` or with lengths that differ, labels outside the model's
output size.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgewise.errors import SpecError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "Preprocess",
    "UserData",
    "check_labels",
    "data_fingerprint",
    "held_out_split",
    "load_user_data",
    "write_image_folder",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""Files of an image folder that are read (any case); other files are ignored."""

Preprocess = Callable[["Image.Image"], np.ndarray]
"""A model card's image preprocessing: a PIL image to one sample's array."""


@dataclass(frozen=True)
class UserData:
    """The user's samples, ready for the model.

    Attributes
    ----------
    x : numpy.ndarray
        float32 samples, one per row, in the model's input shape.
    y : numpy.ndarray
        int64 class indices into the model's outputs.
    classes : tuple of str or None
        The class names by index (an image folder's), ``None`` for an ``.npz``.
    source : Path
        The folder or file the data came from.
    fingerprint : str
        ``sha256:<hex>`` over the files' content (:func:`data_fingerprint`).
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...] | None
    source: Path
    fingerprint: str

    @property
    def num_classes(self) -> int:
        """Number of distinct classes present."""
        return int(np.unique(self.y).size)


def _image_files(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted), for every sub-folder that holds images."""
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(f for f in sub.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[sub.name] = files
    return out


def data_fingerprint(path: str | Path) -> str:
    """``sha256:<hex>`` of a data file, or of a folder's image files and their class paths.

    A folder's digest runs over its image files in sorted relative-path order, each as
    its relative path (POSIX form) then its bytes, so renaming a class or moving an
    image between classes changes it, and nothing else about the host does.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for files in _image_files(p).values():
            for f in files:
                h.update(f.relative_to(p).as_posix().encode() + b"\0")
                h.update(f.read_bytes())
    else:
        h.update(p.read_bytes())
    return f"sha256:{h.hexdigest()}"


def check_labels(y: np.ndarray, num_outputs: int | None, source: str) -> None:
    """Refuse labels the model cannot predict, or data with a single class (one line).

    Raises
    ------
    SpecError
        A label below 0 or at/above ``num_outputs``, or fewer than two classes.
    """
    if y.size and (int(y.min()) < 0 or (num_outputs is not None and int(y.max()) >= num_outputs)):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise SpecError(
            f"{source}: label {bad} is outside the model's {num_outputs} outputs "
            f"(labels must be 0..{(num_outputs or 1) - 1})"
        )
    if np.unique(y).size < 2:
        raise SpecError(f"{source}: only one class; re-training needs at least two")


def _class_index(names: Sequence[str], labels: Sequence[str] | None) -> dict[str, int]:
    """Folder name -> output index: by the model's labels when they name every folder."""
    if labels is not None and set(names) <= set(labels):
        return {n: list(labels).index(n) for n in names}
    return {n: i for i, n in enumerate(sorted(names))}


def _read_image(path: Path, preprocess: Preprocess) -> np.ndarray:
    """One image through the card's preprocessing; one line naming the file if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(preprocess(img), dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SpecError(f"{path}: unreadable image ({err})") from None


def _load_folder(
    folder: Path,
    preprocess: Preprocess,
    labels: Sequence[str] | None,
    num_outputs: int | None,
) -> UserData:
    classes = _image_files(folder)
    if not classes:
        raise SpecError(
            f"{folder}: no images (expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files)"
        )
    if len(classes) < 2:
        raise SpecError(
            f"{folder}: only one class ({next(iter(classes))}); re-training needs at least two"
        )
    index = _class_index(list(classes), labels)
    xs = [_read_image(f, preprocess) for files in classes.values() for f in files]
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise SpecError(f"{folder}: images preprocess to different shapes {sorted(shapes)}")
    y = np.array([index[c] for c, files in classes.items() for _ in files], dtype=np.int64)
    check_labels(y, num_outputs, str(folder))
    names = [""] * (max(index.values()) + 1)
    for n, i in index.items():
        names[i] = n
    return UserData(np.stack(xs), y, tuple(names), folder, data_fingerprint(folder))


def _load_npz(path: Path, sample_shape: Sequence[int] | None, num_outputs: int | None) -> UserData:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise SpecError(
                    f"{path}: no array {' or '.join(repr(k) for k in missing)} "
                    f"(an .npz needs x and y; it has {', '.join(z.files) or 'none'})"
                )
            x, y = z["x"], z["y"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise SpecError(f"{path}: not a readable .npz ({err})") from None
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise SpecError(
            f"{path}: x has {len(x) if x.ndim else 0} samples and y {y.size}; "
            "they must match (y one label per sample)"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise SpecError(f"{path}: y must hold integer class indices, got {y.dtype}")
    if sample_shape is not None and tuple(x.shape[1:]) != tuple(sample_shape):
        raise SpecError(
            f"{path}: x samples have shape {tuple(x.shape[1:])}, the model takes "
            f"{tuple(sample_shape)}"
        )
    y64 = y.astype(np.int64)
    check_labels(y64, num_outputs, str(path))
    return UserData(x.astype(np.float32), y64, None, path, data_fingerprint(path))


def load_user_data(
    path: str | Path,
    *,
    preprocess: Preprocess | None = None,
    sample_shape: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    num_outputs: int | None = None,
) -> UserData:
    """Read an image folder or an ``.npz`` for re-training.

    Parameters
    ----------
    path : str or Path
        A folder with one sub-folder per class (PNG/JPEG), or an ``.npz`` with ``x``
        and ``y``.
    preprocess : callable or None
        The model card's image preprocessing (needed for an image folder).
    sample_shape : sequence of int or None
        The model's input shape per sample; an ``.npz``'s ``x`` must have it.
    labels : sequence of str or None
        The model's labels; folders they all name map to their index.
    num_outputs : int or None
        The model's output size; every label must be below it.

    Returns
    -------
    UserData

    Raises
    ------
    SpecError
        One line naming the file: missing path, unknown form, no images, one class, an
        unreadable image, an ``.npz`` without ``x``/``y`` or with lengths that differ, a
        label outside the model's outputs.
    """
    p = Path(path)
    if p.is_dir():
        if preprocess is None:
            raise SpecError(f"{p}: an image folder needs a model that takes images; give an .npz")
        return _load_folder(p, preprocess, labels, num_outputs)
    if not p.exists():
        raise SpecError(f"{p}: no such file or folder")
    if p.suffix.lower() != ".npz":
        raise SpecError(
            f"{p}: unknown data form; give an image folder (one sub-folder per class) "
            "or an .npz with x and y"
        )
    return _load_npz(p, sample_shape, num_outputs)


def held_out_split(
    y: np.ndarray, *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / held-out indices, stratified where every class can give one of each.

    Each class with at least two samples sends ``round(n_c * test_fraction)`` (at least
    one, at most ``n_c - 1``) of its samples to the held-out part; a class with a single
    sample stays in training. Both parts come back sorted.

    Raises
    ------
    SpecError
        ``test_fraction`` outside (0, 1), or fewer than two samples.
    """
    if not 0.0 < test_fraction < 1.0:
        raise SpecError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(y) < 2:
        raise SpecError(f"{len(y)} sample(s): a train / held-out split needs at least two")
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) >= 2:
            test.append(idx[: min(len(idx) - 1, max(1, round(len(idx) * test_fraction)))])
    held = np.sort(np.concatenate(test)) if test else np.array([], dtype=np.int64)
    if held.size == 0:  # every class a singleton: a plain seeded cut
        held = np.sort(rng.permutation(len(y))[: max(1, round(len(y) * test_fraction))])
    train = np.setdiff1d(np.arange(len(y)), held)
    return train, held


def write_image_folder(
    images: np.ndarray,
    y: np.ndarray,
    out: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write grey images in [0, 1] as PNGs, one sub-folder per class (the form read back).

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` values in [0, 1].
    y : numpy.ndarray
        ``(N,)`` class indices.
    out : str or Path
        The folder to fill (created).
    class_names : sequence of str or None
        Folder name per class index (default the index itself).

    Returns
    -------
    Path
        ``out``.
    """
    from PIL import Image

    root = Path(out)
    for i, (img, c) in enumerate(zip(images, y, strict=True)):
        name = class_names[int(c)] if class_names is not None else str(int(c))
        (root / name).mkdir(parents=True, exist_ok=True)
        pixels = (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(root / name / f"{i:05d}.png")
    return root
