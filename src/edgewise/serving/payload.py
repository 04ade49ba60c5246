"""Request bodies for ``POST /predict``: decode and validate, purely.

An image arrives as PNG or JPEG bytes or as a NumPy ``.npy`` tensor (float, already
normalised, or uint8 pixels 0..255, normalised like decoded images), a text as
JSON (``{"text": "..."}`` or ``{"token_ids": [...]}``). Anything else is a
:class:`BadRequest` carrying the HTTP status and one line saying what is wrong; the
replica answers it with a 4xx and stays up.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass

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


@dataclass(frozen=True)
class InputSpec:
    """What a model accepts: ``kind`` 'image' (shape C,H,W) or 'text' (shape L,)."""

    kind: str
    shape: tuple[int, ...]
    vocab_size: int = 30522


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
    raise BadRequest(500, f"model input kind {spec.kind!r} is not servable")


def _decode_image(body: bytes, spec: InputSpec) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels, height, width = spec.shape
    try:
        with Image.open(io.BytesIO(body)) as src:
            if src.width * src.height > 40_000_000:
                raise BadRequest(413, f"image of {src.width}x{src.height} pixels is too large")
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
    if spec.kind == "image":
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
        tokens = hash_tokenize(text, spec.vocab_size)
    else:
        raise BadRequest(422, 'JSON body needs a "text" or "token_ids" field')
    out = np.zeros((1, seq_len), dtype=np.int64)
    tokens = tokens[:seq_len]
    out[0, : len(tokens)] = tokens
    return out


def hash_tokenize(text: str, vocab_size: int) -> list[int]:
    """Deterministic word-hash tokenizer (no vocabulary file ships offline).

    Ids 0..999 are reserved; each lower-cased word maps to a stable id above them.
    """
    ids = []
    for word in text.lower().split():
        h = zlib.crc32(word.encode("utf-8"))
        ids.append(1000 + h % (vocab_size - 1000))
    return ids
