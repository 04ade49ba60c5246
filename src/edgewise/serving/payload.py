"""Request bodies for ``POST /predict``: decode and validate, purely.

An image arrives as PNG or JPEG bytes or as a NumPy ``.npy`` tensor (float, already
normalised, or uint8 pixels 0..255, normalised like decoded images), a text as
JSON (``{"text": "..."}`` or ``{"token_ids": [...]}``), a plain tensor as ``.npy`` or
JSON (``{"inputs": [...]}``) of the model card's shape and dtype. Anything else is a
:class:`BadRequest` carrying the HTTP status and one line saying what is wrong; the
replica answers it with a 4xx and stays up.

The model's own preprocessing (its card's image transform, its tokenizer) arrives as
functions on the :class:`InputSpec`; without them images are normalised with
:data:`IMAGE_MEAN` / :data:`IMAGE_STD` and texts use :func:`hash_tokenize`.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BATCH = 32
MAX_TEXT_CHARS = 20_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
NPY_MAGIC = b"\x93NUMPY"
IMAGE_MEAN = 0.5
IMAGE_STD = 0.25


@dataclass(frozen=True)
class BadRequest(Exception):
    """A request the service refuses, with its HTTP status and a one-line reason."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


ImageFn = Callable[[Any], np.ndarray]
"""A card's image transform: a PIL image in, one float32 sample of the input shape out."""
TokenizeFn = Callable[[str], list[int]]
"""A model's tokenizer: a text in, its token ids out."""

KINDS = ("image", "text", "tensor")


@dataclass(frozen=True)
class InputSpec:
    """What a model accepts.

    Attributes
    ----------
    kind : {'image', 'text', 'tensor'}
        Images have shape (C, H, W), texts (L,), tensors any shape.
    shape : tuple of int
        One sample, without the batch dimension.
    vocab_size : int
        Token ids of a text model lie in ``[0, vocab_size)``.
    dtype : str, optional
        A tensor model's input dtype (its card's); images are float32, texts int64.
    image_fn : callable, optional
        The card's image preprocessing (resize, channels, normalisation); default: resize
        and normalise with :data:`IMAGE_MEAN` / :data:`IMAGE_STD`.
    tokenize : callable, optional
        The model's tokenizer; default :func:`hash_tokenize`.
    """

    kind: str
    shape: tuple[int, ...]
    vocab_size: int = 30522
    dtype: str | None = None
    image_fn: ImageFn | None = None
    tokenize: TokenizeFn | None = None


def decode(body: bytes, content_type: str | None, spec: InputSpec) -> np.ndarray:
    """Turn a request body into a model-ready batch (N, *spec.shape).

    Images become float32 in the model's layout, texts int64 token ids padded or cut
    to the model's sequence length.
    """
    if not body:
        raise BadRequest(400, "empty request body")
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"body of {len(body)} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if body.startswith(NPY_MAGIC):
        return _decode_npy(body, spec)
    if spec.kind == "image":
        if body.startswith(PNG_MAGIC) or body.startswith(JPEG_MAGIC):
            return _decode_image(body, spec)
        raise BadRequest(
            415,
            f"expected a PNG or JPEG image or a .npy tensor, got {ctype or 'unknown content'}",
        )
    if spec.kind == "text":
        return _decode_text(body, spec)
    if spec.kind == "tensor":
        return _decode_json_tensor(body, spec)
    raise BadRequest(500, f"model input kind {spec.kind!r} is not servable")


def _decode_image(body: bytes, spec: InputSpec) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels, height, width = spec.shape
    try:
        with Image.open(io.BytesIO(body)) as src:
            if src.width * src.height > 40_000_000:
                raise BadRequest(413, f"image of {src.width}x{src.height} pixels is too large")
            if spec.image_fn is not None:
                src.load()
                return _card_image(src, spec)
            img = src.convert("L" if channels == 1 else "RGB")
            img = img.resize((width, height), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except BadRequest:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        zlib.error,
        Image.DecompressionBombError,
    ) as err:
        raise BadRequest(400, f"image could not be decoded: {err}") from None
    arr = arr[None, :, :] if channels == 1 else arr.transpose(2, 0, 1)
    return ((arr - IMAGE_MEAN) / IMAGE_STD)[None].astype(np.float32)


def _decode_npy(body: bytes, spec: InputSpec) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as err:
        # raises more than ValueError (a damaged header dict gives tokenize.TokenError)
        raise BadRequest(400, f"tensor file could not be read: {err}") from None
    if arr.shape == spec.shape:
        arr = arr[None]
    if arr.ndim != len(spec.shape) + 1 or tuple(arr.shape[1:]) != spec.shape:
        raise BadRequest(
            422, f"tensor of shape {tuple(arr.shape)} does not match the model input {spec.shape}"
        )
    if not 1 <= arr.shape[0] <= MAX_BATCH:
        raise BadRequest(422, f"batch of {arr.shape[0]} outside 1..{MAX_BATCH}")
    if spec.kind == "tensor":
        return _checked_tensor(arr, spec)
    if spec.kind == "image":
        if arr.dtype == np.uint8 and spec.image_fn is not None:
            return np.concatenate([_card_image(_pixels_to_image(a), spec) for a in arr])
        if arr.dtype == np.uint8:
            # Raw pixels (0..255): a quarter of the float32 bytes on the wire, normalised
            # here exactly as decoded PNG/JPEG pixels are.
            return ((arr.astype(np.float32) / 255.0 - IMAGE_MEAN) / IMAGE_STD).astype(
                np.float32, copy=False
            )
        if arr.dtype.kind != "f":
            raise BadRequest(
                422, f"image tensor must be floating point or uint8 pixels, got {arr.dtype}"
            )
        if not np.isfinite(arr).all():
            raise BadRequest(422, "image tensor contains NaN or infinity")
        return arr.astype(np.float32, copy=False)
    if arr.dtype.kind not in "iu":
        raise BadRequest(422, f"token ids must be integers, got {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= spec.vocab_size):
        raise BadRequest(422, f"token ids must lie in [0, {spec.vocab_size})")
    return arr.astype(np.int64, copy=False)


def _decode_text(body: bytes, spec: InputSpec) -> np.ndarray:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(400, f"text requests must be JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BadRequest(422, 'JSON body must be an object with "text" or "token_ids"')
    (seq_len,) = spec.shape
    if "token_ids" in doc:
        ids = doc["token_ids"]
        if not isinstance(ids, list) or not ids or not all(type(i) is int for i in ids):
            raise BadRequest(422, '"token_ids" must be a non-empty list of integers')
        if min(ids) < 0 or max(ids) >= spec.vocab_size:
            raise BadRequest(422, f'"token_ids" must lie in [0, {spec.vocab_size})')
        tokens = ids
    elif "text" in doc:
        text = doc["text"]
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(422, '"text" must be a non-empty string')
        if len(text) > MAX_TEXT_CHARS:
            raise BadRequest(413, f'"text" longer than {MAX_TEXT_CHARS} characters')
        tokens = spec.tokenize(text) if spec.tokenize else hash_tokenize(text, spec.vocab_size)
    else:
        raise BadRequest(422, 'JSON body needs a "text" or "token_ids" field')
    out = np.zeros((1, seq_len), dtype=np.int64)
    tokens = tokens[:seq_len]
    out[0, : len(tokens)] = tokens
    return out


def _card_image(image: Any, spec: InputSpec) -> np.ndarray:
    """One decoded image through the card's transform, as a batch of one."""
    assert spec.image_fn is not None
    try:
        arr = np.asarray(spec.image_fn(image), dtype=np.float32)
    except (OSError, ValueError) as err:
        raise BadRequest(400, f"image could not be preprocessed: {err}") from None
    if arr.shape == spec.shape:
        arr = arr[None]
    if tuple(arr.shape) != (1, *spec.shape):
        raise BadRequest(
            500, f"the card's preprocessing gave shape {arr.shape}, not the input {spec.shape}"
        )
    return arr


def _pixels_to_image(pixels: np.ndarray) -> Any:
    """uint8 pixels (C, H, W) as a PIL image, for the card's transform."""
    from PIL import Image

    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0], "L")
    if pixels.shape[0] == 3:
        return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), "RGB")
    raise BadRequest(422, f"uint8 pixels need 1 or 3 channels, got {pixels.shape[0]}")


def _checked_tensor(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A batch of plain tensors cast to the card's dtype, refusing lossy kinds."""
    target = np.dtype(spec.dtype or "float32")
    if not np.can_cast(arr.dtype, target, casting="same_kind"):
        raise BadRequest(422, f"tensor of dtype {arr.dtype} does not match the model's {target}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise BadRequest(422, "tensor contains NaN or infinity")
    return arr.astype(target, copy=False)


def _decode_json_tensor(body: bytes, spec: InputSpec) -> np.ndarray:
    """``{"inputs": [...]}``: one sample or a batch as nested lists."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(400, f"tensor requests must be .npy or JSON: {err}") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise BadRequest(422, 'JSON body must be an object with an "inputs" field')
    try:
        arr = np.asarray(doc["inputs"])
    except ValueError as err:
        raise BadRequest(422, f'"inputs" is not a rectangular array: {err}') from None
    if arr.dtype.kind not in "biuf":
        raise BadRequest(422, f'"inputs" must hold numbers, got {arr.dtype}')
    if arr.shape == spec.shape:
        arr = arr[None]
    if arr.ndim != len(spec.shape) + 1 or tuple(arr.shape[1:]) != spec.shape:
        raise BadRequest(
            422, f'"inputs" of shape {tuple(arr.shape)} does not match the model input {spec.shape}'
        )
    if not 1 <= arr.shape[0] <= MAX_BATCH:
        raise BadRequest(422, f"batch of {arr.shape[0]} outside 1..{MAX_BATCH}")
    if np.dtype(spec.dtype or "float32").kind == "f" and arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)  # JSON integers are valid float inputs
    return _checked_tensor(arr, spec)


def hash_tokenize(text: str, vocab_size: int) -> list[int]:
    """Deterministic word-hash tokenizer (no vocabulary file ships offline).

    Ids 0..999 are reserved; each lower-cased word maps to a stable id above them.
    """
    ids = []
    for word in text.lower().split():
        h = zlib.crc32(word.encode("utf-8"))
        ids.append(1000 + h % (vocab_size - 1000))
    return ids
