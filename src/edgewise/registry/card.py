"""Model cards: what a model takes as input, what it answers, and how to prepare an image.

A card is a small YAML file beside the model (``<file>.card.yaml``, or ``card.yaml``
inside a model directory)::

    task: classification          # classification | regression | other
    input:
      kind: image                 # image | text | tensor
      shape: [1, 8, 8]            # one sample: image (channels, height, width); text (seq_len,)
      dtype: float32              # text: int64
      mean: [0.5]                 # image normalisation, one value per channel (optional)
      std: [0.5]
    labels: labels.txt            # a list, or a file with one label a line (classifiers)
    arch: digits_cnn              # safetensors weights: a zoo name or a builder pkg.mod:fn

Pure data and one image transform; reading files is the only I/O here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import yaml

from edgewise.errors import SpecError
from edgewise.paths import user_path

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CARD_FILE",
    "DTYPES",
    "INPUT_KINDS",
    "TASKS",
    "InputSpec",
    "ModelCard",
    "ModelCardError",
    "card_path_for",
    "parse_input_flag",
    "read_labels",
]

InputKind = Literal["image", "text", "tensor"]
Task = Literal["classification", "regression", "other"]

INPUT_KINDS: tuple[str, ...] = ("image", "text", "tensor")
TASKS: tuple[str, ...] = ("classification", "regression", "other")
DTYPES: tuple[str, ...] = ("float32", "float64", "float16", "int64", "int32")
#: The card's file name inside a model directory.
CARD_FILE = "card.yaml"
CARD_SUFFIX = ".card.yaml"


class ModelCardError(SpecError):
    """A model card (or the flags standing in for it) is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class InputSpec:
    """The input of one sample.

    Attributes
    ----------
    kind : {'image', 'text', 'tensor'}
        Image inputs are ``(channels, height, width)``; text inputs are token ids
        ``(seq_len,)`` of dtype ``int64``; tensors are any shape.
    shape : tuple of int
        Shape of one sample, without the batch dimension.
    dtype : str
        Numpy dtype name of the input array.
    mean, std : tuple of float
        Image normalisation, one value per channel (empty: none).
    tokenizer : str or None
        Directory of a Hugging Face tokenizer for text inputs; a relative one is
        relative to the model's directory (``"."``: the model directory itself).
    """

    kind: InputKind
    shape: tuple[int, ...]
    dtype: str = "float32"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ModelCardError(f"input.kind {self.kind!r} is not one of {', '.join(INPUT_KINDS)}")
        if not self.shape or any(int(d) < 1 for d in self.shape):
            raise ModelCardError(f"input.shape {list(self.shape)} must be positive integers")
        if self.dtype not in DTYPES:
            raise ModelCardError(f"input.dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.kind == "image" and len(self.shape) != 3:
            raise ModelCardError(
                f"input.shape {list(self.shape)} of an image must be [channels, height, width]"
            )
        if self.kind == "text" and (len(self.shape) != 1 or self.dtype not in ("int64", "int32")):
            raise ModelCardError(
                f"a text input is token ids: shape [seq_len] and dtype int64, got "
                f"{list(self.shape)} {self.dtype}"
            )
        for key, values in (("mean", self.mean), ("std", self.std)):
            if values and (self.kind != "image" or len(values) != self.shape[0]):
                raise ModelCardError(
                    f"input.{key} needs one value per image channel ({self.shape[0]}), "
                    f"got {list(values)}"
                )
        if any(s == 0 for s in self.std):
            raise ModelCardError("input.std has a zero")

    @property
    def channels(self) -> int:
        """Channels of an image input (its ``shape[0]``)."""
        return self.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of an image input."""
        return self.shape[1], self.shape[2]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML and JSON ready); defaults are left out."""
        out: dict[str, Any] = {"kind": self.kind, "shape": list(self.shape), "dtype": self.dtype}
        if self.mean:
            out["mean"] = list(self.mean)
        if self.std:
            out["std"] = list(self.std)
        if self.tokenizer is not None:
            out["tokenizer"] = self.tokenizer
        return out

    @classmethod
    def from_dict(cls, data: Any) -> InputSpec:
        """Build from a mapping as :meth:`to_dict` writes it.

        Raises
        ------
        ModelCardError
            If a field is missing or has the wrong type.
        """
        if not isinstance(data, dict):
            raise ModelCardError(f"input must be a mapping with kind and shape, got {data!r}")
        unknown = set(data) - {"kind", "shape", "dtype", "mean", "std", "tokenizer"}
        if unknown:
            raise ModelCardError(f"input has unknown field(s) {', '.join(sorted(unknown))}")
        kind = data.get("kind")
        if kind not in INPUT_KINDS:
            raise ModelCardError(f"input.kind {kind!r} is not one of {', '.join(INPUT_KINDS)}")
        dtype = str(data.get("dtype", "int64" if kind == "text" else "float32"))
        tokenizer = data.get("tokenizer")
        return cls(
            kind=cast(InputKind, kind),
            shape=_ints(data.get("shape"), "input.shape"),
            dtype=dtype,
            mean=_floats(data.get("mean", ()), "input.mean"),
            std=_floats(data.get("std", ()), "input.std"),
            tokenizer=None if tokenizer is None else str(tokenizer),
        )


@dataclass(frozen=True)
class ModelCard:
    """What a model takes and answers.

    Attributes
    ----------
    task : {'classification', 'regression', 'other'}
        Classifiers answer logits, one per label.
    input : InputSpec
        One sample's input.
    labels : tuple of str or None
        Class names, in output order (classifiers).
    arch : str or None
        For bare safetensors weights: a zoo name or a builder ``package.module:function``.
    num_outputs : int or None
        Output size of the architecture when it cannot be read from ``labels``.
    """

    task: Task
    input: InputSpec
    labels: tuple[str, ...] | None = None
    arch: str | None = None
    num_outputs: int | None = field(default=None)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ModelCardError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.labels is not None and len(self.labels) == 0:
            raise ModelCardError("labels is empty")
        if self.num_outputs is not None and self.num_outputs < 1:
            raise ModelCardError(f"num_outputs must be positive, got {self.num_outputs}")

    # ------------------------------------------------------------------ files

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read the card of the model at ``path`` (or the card file itself).

        ``path`` may be the card YAML, a model file (its card is ``<file>.card.yaml``) or
        a model directory (its card is ``card.yaml`` inside). A ``labels`` entry naming a
        file is read relative to the card.

        Raises
        ------
        ModelCardError
            If there is no card, or it is not valid YAML or not a valid card: one line
            naming the file.
        """
        card_file = path if path.name.endswith((".yaml", ".yml")) else card_path_for(path)
        if card_file == path and not path.is_file():
            raise ModelCardError(f"model card {path} does not exist")
        if not card_file.is_file():
            raise ModelCardError(
                f"no model card for {path}: write {card_file} or pass --input (and --labels)"
            )
        try:
            data = yaml.safe_load(card_file.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ModelCardError(f"{card_file}: not a readable YAML card ({first})") from None
        try:
            return cls.from_dict(data, base=card_file.parent)
        except ModelCardError as err:
            raise ModelCardError(f"{card_file}: {err}") from None

    def save(self, path: Path) -> Path:
        """Write the card as YAML to ``path`` (labels inline); return ``path``."""
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    # ------------------------------------------------------------------- data

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML and JSON ready), labels inline; unset fields left out."""
        out: dict[str, Any] = {"task": self.task, "input": self.input.to_dict()}
        if self.labels is not None:
            out["labels"] = list(self.labels)
        if self.arch is not None:
            out["arch"] = self.arch
        if self.num_outputs is not None:
            out["num_outputs"] = self.num_outputs
        return out

    @classmethod
    def from_dict(cls, data: Any, *, base: Path | None = None) -> ModelCard:
        """Build from a mapping as :meth:`to_dict` (or a card file) holds it.

        Parameters
        ----------
        data
            The mapping. ``labels`` may be a list or the name of a labels file.
        base
            Directory that a labels file name is relative to.

        Raises
        ------
        ModelCardError
            If a field is missing, unknown or has the wrong type.
        """
        if not isinstance(data, dict):
            raise ModelCardError("a model card must be a mapping with task and input")
        unknown = set(data) - {"task", "input", "labels", "arch", "num_outputs"}
        if unknown:
            raise ModelCardError(f"unknown card field(s) {', '.join(sorted(unknown))}")
        if "input" not in data:
            raise ModelCardError("the card has no input (kind and shape)")
        labels = data.get("labels")
        if isinstance(labels, str):
            labels = read_labels((base or Path.cwd()) / labels)
        elif labels is not None:
            if not isinstance(labels, list):
                raise ModelCardError("labels must be a list or the name of a labels file")
            labels = tuple(str(label) for label in labels)
        task = data.get("task", "classification" if labels else "other")
        if task not in TASKS:
            raise ModelCardError(f"task {task!r} is not one of {', '.join(TASKS)}")
        arch = data.get("arch")
        num_outputs = data.get("num_outputs")
        if num_outputs is not None and (
            isinstance(num_outputs, bool) or not isinstance(num_outputs, int)
        ):
            raise ModelCardError(f"num_outputs must be an integer, got {num_outputs!r}")
        return cls(
            task=cast(Task, task),
            input=InputSpec.from_dict(data["input"]),
            labels=labels,
            arch=None if arch is None else str(arch),
            num_outputs=num_outputs,
        )

    def with_labels(self, labels: tuple[str, ...] | None) -> ModelCard:
        """This card with other labels (a classifier when labels are given)."""
        task: Task = "classification" if labels is not None else self.task
        return ModelCard(task, self.input, labels, self.arch, self.num_outputs)

    def with_arch(self, arch: str | None, num_outputs: int | None = None) -> ModelCard:
        """This card naming another architecture (and output size)."""
        return ModelCard(self.task, self.input, self.labels, arch, num_outputs or self.num_outputs)

    # ---------------------------------------------------------- preprocessing

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """Resize, convert and normalise ``image`` to one input sample.

        The image is converted to grey (one channel) or RGB (three), resized to the
        card's ``(height, width)`` (bilinear), scaled to ``[0, 1]``, then normalised with
        the card's ``mean``/``std`` when given.

        Returns
        -------
        numpy.ndarray
            A float32 array of shape ``input.shape`` (channels first).

        Raises
        ------
        ModelCardError
            If the card's input is not an image of 1 or 3 channels.
        """
        spec = self.input
        if spec.kind != "image" or spec.channels not in (1, 3):
            raise ModelCardError(
                f"the card's input is {spec.kind} {list(spec.shape)}, not a 1- or 3-channel image"
            )
        from PIL import Image as PILImage

        mode = "L" if spec.channels == 1 else "RGB"
        height, width = spec.size
        resized = image.convert(mode).resize((width, height), PILImage.Resampling.BILINEAR)
        array = np.asarray(resized, dtype=np.float32) / 255.0
        array = array[None, :, :] if spec.channels == 1 else array.transpose(2, 0, 1)
        if spec.mean:
            array = array - np.asarray(spec.mean, dtype=np.float32)[:, None, None]
        if spec.std:
            array = array / np.asarray(spec.std, dtype=np.float32)[:, None, None]
        return np.ascontiguousarray(array, dtype=np.float32)

    def tokenize(self, texts: Sequence[str], *, base: Path | None = None) -> np.ndarray:
        """Token ids of ``texts``, padded and truncated to the card's sequence length.

        Parameters
        ----------
        texts
            The texts of a batch.
        base
            Directory a relative ``input.tokenizer`` is relative to (the model's
            directory; ``"."`` is the model directory itself).

        Returns
        -------
        numpy.ndarray
            Shape ``(len(texts), seq_len)``, the card's integer dtype.

        Raises
        ------
        ModelCardError
            If the card's input is not text with a tokenizer, or the tokenizer cannot be
            read.
        """
        spec = self.input
        if spec.kind != "text" or spec.tokenizer is None:
            raise ModelCardError(
                f"the card's input is {spec.kind} without a tokenizer; set input.tokenizer "
                "to a Hugging Face tokenizer directory"
            )
        directory = user_path(spec.tokenizer)
        if not directory.is_absolute() and base is not None:
            directory = base / directory
        encoded = _tokenizer(str(directory.resolve()))(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=spec.shape[0],
            return_tensors="np",
        )
        return np.asarray(encoded["input_ids"], dtype=np.dtype(spec.dtype))


@functools.lru_cache(maxsize=8)
def _tokenizer(directory: str) -> Any:
    """A Hugging Face tokenizer from a local directory (cached; never downloaded)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except Exception as err:
        line = next((ln for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise ModelCardError(
            f"input.tokenizer {directory}: not a readable tokenizer directory ({line[:200]})"
        ) from None


def card_path_for(model_path: Path) -> Path:
    """Where the card of the model at ``model_path`` lives (a directory holds ``card.yaml``)."""
    if model_path.is_dir():
        return model_path / CARD_FILE
    return model_path.with_name(model_path.name + CARD_SUFFIX)


def read_labels(path: Path) -> tuple[str, ...]:
    """Labels from a text file, one a line (blank lines ignored).

    Raises
    ------
    ModelCardError
        If the file cannot be read or holds no label.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ModelCardError(f"labels file {path} cannot be read ({err})") from None
    labels = tuple(line.strip() for line in lines if line.strip())
    if not labels:
        raise ModelCardError(f"labels file {path} holds no label")
    return labels


def parse_input_flag(text: str) -> InputSpec:
    """An :class:`InputSpec` from ``KIND:SHAPE[:DTYPE]``, e.g. ``image:3x224x224``.

    Raises
    ------
    ModelCardError
        If the text does not have that form.
    """
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or parts[0] not in INPUT_KINDS:
        raise ModelCardError(
            f"--input {text!r}: expected KIND:SHAPE[:DTYPE] with KIND one of "
            f"{', '.join(INPUT_KINDS)}, e.g. image:3x224x224 or text:128"
        )
    try:
        shape = tuple(int(d) for d in parts[1].lower().split("x"))
    except ValueError:
        raise ModelCardError(
            f"--input {text!r}: shape {parts[1]!r} is not like 3x224x224"
        ) from None
    kind = cast(InputKind, parts[0])
    dtype = parts[2] if len(parts) == 3 else ("int64" if kind == "text" else "float32")
    try:
        return InputSpec(kind=kind, shape=shape, dtype=dtype)
    except ModelCardError as err:
        raise ModelCardError(f"--input {text!r}: {err}") from None


def _ints(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ModelCardError(f"{name} must be a list of integers, got {value!r}")
    return tuple(int(v) for v in value)


def _floats(value: Any, name: str) -> tuple[float, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        raise ModelCardError(f"{name} must be a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)
