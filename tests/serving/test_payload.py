from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edgewise.serving.payload import BadRequest, InputSpec, decode, hash_tokenize

IMG = InputSpec("image", (3, 32, 32))
GRAY = InputSpec("image", (1, 32, 32))
TEXT = InputSpec("text", (16,), vocab_size=5000)


def _png(w: int = 40, h: int = 30, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), color=128 if mode == "L" else (10, 200, 30)).save(buf, format=fmt)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_png_and_jpeg_become_normalised_batches() -> None:
    for fmt in ("PNG", "JPEG"):
        x = decode(_png(fmt=fmt), "image/png", IMG)
        assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
        assert np.isfinite(x).all()
    g = decode(_png(mode="L"), None, GRAY)
    assert g.shape == (1, 1, 32, 32)
    # green channel brighter than red after normalisation
    assert x[0, 1].mean() > x[0, 0].mean()


def test_npy_tensor_single_and_batch() -> None:
    one = np.random.default_rng(0).normal(size=(3, 32, 32)).astype(np.float32)
    assert decode(_npy(one), "application/octet-stream", IMG).shape == (1, 3, 32, 32)
    four = np.stack([one] * 4)
    assert decode(_npy(four), None, IMG).shape == (4, 3, 32, 32)


@pytest.mark.parametrize(
    ("body", "ctype", "spec", "status", "fragment"),
    [
        (b"", "image/png", IMG, 400, "empty"),
        (b"hello", "text/plain", IMG, 415, "PNG or JPEG"),
        (b"\x89PNG\r\n\x1a\ngarbage", "image/png", IMG, 400, "could not be decoded"),
        (_npy(np.zeros((3, 8, 8), np.float32)), None, IMG, 422, "does not match"),
        (_npy(np.zeros((3, 32, 32), np.int32)), None, IMG, 422, "floating point"),
        (_npy(np.full((3, 32, 32), np.nan, np.float32)), None, IMG, 422, "NaN"),
        (_npy(np.zeros((40, 3, 32, 32), np.float32)), None, IMG, 422, "batch of 40"),
        (b"\x93NUMPYxx", None, IMG, 400, "could not be read"),
        (b"not json", "application/json", TEXT, 400, "must be JSON"),
        (b"[1,2]", "application/json", TEXT, 422, "object"),
        (b'{"foo": 1}', "application/json", TEXT, 422, '"text" or "token_ids"'),
        (b'{"text": ""}', "application/json", TEXT, 422, "non-empty"),
        (b'{"token_ids": [1, 99999]}', "application/json", TEXT, 422, "lie in"),
        (b'{"token_ids": ["a"]}', "application/json", TEXT, 422, "integers"),
    ],
)
def test_bad_bodies_are_4xx_with_a_reason(body, ctype, spec, status, fragment) -> None:
    with pytest.raises(BadRequest) as err:
        decode(body, ctype, spec)
    assert err.value.status == status
    assert fragment in err.value.message
    assert "\n" not in err.value.message


def test_oversized_body_is_413() -> None:
    with pytest.raises(BadRequest) as err:
        decode(b"\x89PNG" + b"0" * (9 * 1024 * 1024), "image/png", IMG)
    assert err.value.status == 413


def test_text_json_padded_and_deterministic() -> None:
    a = decode(json.dumps({"text": "a bike to the station"}).encode(), "application/json", TEXT)
    b = decode(json.dumps({"text": "a bike to the station"}).encode(), "application/json", TEXT)
    assert a.shape == (1, 16) and a.dtype == np.int64
    assert (a == b).all() and (a[0, :5] >= 1000).all() and (a[0, 5:] == 0).all()
    ids = decode(b'{"token_ids": [5, 6, 7]}', "application/json", TEXT)
    assert ids[0, :3].tolist() == [5, 6, 7]
    assert all(1000 <= t < 5000 for t in hash_tokenize("x y z", 5000))


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=2048), kind=st.sampled_from(["image", "text"]))
def test_fuzz_any_bytes_either_decode_or_bad_request(body: bytes, kind: str) -> None:
    spec = IMG if kind == "image" else TEXT
    try:
        out = decode(body, None, spec)
    except BadRequest as err:
        assert 400 <= err.status < 500
    else:
        assert out.shape[1:] == spec.shape


def test_uint8_pixel_tensor_is_normalised_like_a_png() -> None:

    pixels = np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "PNG")
    from_png = decode(buf.getvalue(), "image/png", IMG)
    from_npy = decode(_npy(pixels.transpose(2, 0, 1).copy()), None, IMG)
    assert from_npy.dtype == np.float32 and from_npy.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(from_npy, from_png, atol=1e-6)


def test_npy_with_a_damaged_header_is_a_400_not_a_crash() -> None:
    # Found by fuzzing a running server: a flipped byte in the header dict made numpy
    # raise tokenize.TokenError, which escaped as a 500.
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 32, 32), np.float32))
    body = bytes(b ^ 255 if i % 97 == 10 and i > 8 else b for i, b in enumerate(buf.getvalue()))
    with pytest.raises(BadRequest) as err:
        decode(body, "application/x-npy", GRAY)
    assert err.value.status == 400


def _card_transform(image: Image.Image) -> np.ndarray:
    """A card-like transform: 8x8 grey, normalised with mean 0.1 and std 0.3."""
    grey = image.convert("L").resize((8, 8), Image.Resampling.BILINEAR)
    return ((np.asarray(grey, np.float32) / 255.0 - 0.1) / 0.3)[None]


CARD_IMG = InputSpec("image", (1, 8, 8), dtype="float32", image_fn=_card_transform)
TENSOR = InputSpec("tensor", (4,), dtype="float32")
INT_TENSOR = InputSpec("tensor", (2, 2), dtype="int64")


def test_png_goes_through_the_cards_own_preprocessing() -> None:
    body = _png(20, 10)
    with Image.open(io.BytesIO(body)) as img:
        expected = _card_transform(img)
    out = decode(body, "image/png", CARD_IMG)
    assert out.shape == (1, 1, 8, 8) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], expected)


def test_uint8_pixels_go_through_the_cards_preprocessing_like_a_png() -> None:
    pixels = np.random.default_rng(3).integers(0, 256, size=(8, 8), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, "PNG")
    from_png = decode(buf.getvalue(), "image/png", CARD_IMG)
    from_npy = decode(_npy(np.stack([pixels[None], pixels[None]])), None, CARD_IMG)
    assert from_npy.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(from_npy[1:], from_png, atol=1e-6)


def test_card_transform_with_the_wrong_shape_is_a_server_error_not_a_crash() -> None:
    spec = InputSpec("image", (1, 4, 4), image_fn=_card_transform)
    with pytest.raises(BadRequest) as err:
        decode(_png(), "image/png", spec)
    assert err.value.status == 500 and "(1, 4, 4)" in err.value.message


def test_tensor_models_take_npy_and_json_of_the_cards_shape_and_dtype() -> None:
    x = np.arange(4, dtype=np.float64)
    out = decode(_npy(x), None, TENSOR)
    assert out.shape == (1, 4) and out.dtype == np.float32
    js = decode(json.dumps({"inputs": [[1, 2, 3, 4], [0.5, 0, 0, 1]]}).encode(), None, TENSOR)
    assert js.shape == (2, 4) and js.dtype == np.float32 and js[1, 0] == 0.5
    ints = decode(json.dumps({"inputs": [[1, 2], [3, 4]]}).encode(), None, INT_TENSOR)
    assert ints.dtype == np.int64 and ints.tolist() == [[[1, 2], [3, 4]]]


@pytest.mark.parametrize(
    ("body", "spec", "status", "fragment"),
    [
        (_npy(np.zeros(5, np.float32)), TENSOR, 422, "does not match the model input (4,)"),
        (_npy(np.zeros((2, 2), np.float32)), INT_TENSOR, 422, "does not match the model's int64"),
        (_npy(np.array([1.0, np.inf, 0, 0])), TENSOR, 422, "NaN or infinity"),
        (b'{"inputs": [1, 2, 3]}', TENSOR, 422, "does not match the model input (4,)"),
        (b'{"inputs": [[1, 2], [3]]}', TENSOR, 422, "rectangular"),
        (b'{"inputs": ["a", "b", "c", "d"]}', TENSOR, 422, "numbers"),
        (b'{"x": [1, 2, 3, 4]}', TENSOR, 422, '"inputs"'),
        (b'{"inputs": [[0.5, 1], [2, 3]]}', INT_TENSOR, 422, "float64 does not match"),
        (b"\x89PNG\r\n\x1a\n", TENSOR, 400, ".npy or JSON"),
        (b"\x89PNG\r\n\x1a\ntruncated", CARD_IMG, 400, "could not be decoded"),
    ],
)
def test_requests_that_do_not_match_the_card_are_4xx_with_a_reason(
    body: bytes, spec: InputSpec, status: int, fragment: str
) -> None:
    with pytest.raises(BadRequest) as err:
        decode(body, None, spec)
    assert err.value.status == status
    assert fragment in err.value.message
    assert "\n" not in err.value.message


def test_text_uses_the_models_tokenizer_when_it_has_one() -> None:
    spec = InputSpec("text", (6,), vocab_size=100, tokenize=lambda t: [len(w) for w in t.split()])
    out = decode(b'{"text": "a bb ccc"}', "application/json", spec)
    assert out.tolist() == [[1, 2, 3, 0, 0, 0]]
