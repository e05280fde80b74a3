"""Property-based tests: for ANY array, PIL image or byte string, ``prepare`` and
``Predictor.predict`` either return a well-formed result or raise InvalidImage.

Arrays are generated from a drawn recipe (shape, dtype, pattern, special values)
with numpy rather than element by element, which keeps examples varied and fast.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from locmnist.preprocess import InvalidImage, Prepared, prepare
from locmnist.results import NOT_A_DIGIT
from tests.corpus import digit_ink, encode, load_predictor

FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_]
PATTERNS = ["constant", "noise", "faint noise", "stroke", "digit", "gradient"]
MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
         "I", "F", "I;16"]
FORMATS = {"PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"},
           "JPEG": {"L", "RGB", "CMYK"}, "GIF": {"L", "P"}, "BMP": {"1", "L", "P", "RGB"},
           "TIFF": {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "F", "I;16", "LAB"},
           "WEBP": {"RGB", "RGBA"}}


@st.composite
def images(draw, max_side: int = 160) -> np.ndarray:
    """A numpy image of any shape and dtype: blank, noisy, a stroke or a real digit."""
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = draw(st.sampled_from(DTYPES))
    pattern = draw(st.sampled_from(PATTERNS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ink = np.zeros((h, w), np.float64)
    if pattern == "constant":
        ink[:] = rng.random()
    elif pattern == "noise":
        ink = rng.random((h, w))
    elif pattern == "faint noise":
        ink = 0.5 + rng.normal(0, 0.01, (h, w))
    elif pattern == "gradient":
        ink = np.linspace(0, 1, w)[None, :].repeat(h, 0)
    elif pattern == "stroke":
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        ink[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, max(2, w // 4))] = 1.0
    else:
        side = int(rng.integers(1, min(h, w) + 1))
        y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        ink[y0:y0 + side, x0:x0 + side] = digit_ink(int(rng.choice([0, 1, 2, 4, 7])), side) / 255
    if draw(st.booleans()):
        ink = 1.0 - ink  # dark on light
    a = ink if channels is None else np.repeat(ink[..., None], channels, axis=-1)
    if np.issubdtype(dtype, np.floating):
        scale = draw(st.sampled_from([1.0, 255.0, 1e6, -3.0]))
        a = (a * scale).astype(dtype)
        if draw(st.booleans()):  # NaN and inf sprinkled in
            a.flat[rng.integers(0, a.size, size=max(1, a.size // 50))] = rng.choice(
                [np.nan, np.inf, -np.inf])
    elif dtype == np.bool_:
        a = a > 0.5
    else:
        top = {np.uint8: 255, np.uint16: 65535}.get(dtype, draw(st.sampled_from([255, 70000])))
        a = (a * top).astype(dtype)
        if dtype in (np.int32, np.int64) and draw(st.booleans()):
            a = a - top // 2  # negative values
    return a


def check_prepared(prep: Prepared, size: tuple[int, int]) -> None:
    assert prep.model_input.shape == (75, 75)
    assert prep.model_input.dtype == np.float32
    assert np.isfinite(prep.model_input).all()
    assert prep.model_input.min() >= 0.0 and prep.model_input.max() <= 1.0
    assert prep.image_size == size
    assert prep.frame[2] > 0
    if prep.blank_reason is not None:
        assert prep.blank_reason.strip() and not prep.model_input.any()


def check_prediction(pred, size: tuple[int, int]) -> None:
    event("no digit" if pred.label is None else "digit")
    w, h = size
    assert pred.image_size == size
    assert pred.model_input.shape == (75, 75)
    assert 0.0 <= pred.model_input.min() and pred.model_input.max() <= 1.0
    assert len(pred.probabilities) == 10
    if pred.label is None:
        # No digit: never a box. Two answers (locmnist.results): "not a digit" keeps the
        # calibrated probabilities and the best one as confidence; a blank input (the model
        # never ran, its canvas is empty) has none.
        assert pred.box is None and pred.box_normalized is None and pred.model_box is None
        if pred.rejected:
            assert pred.message == NOT_A_DIGIT
            assert abs(sum(pred.probabilities) - 1.0) < 1e-3
            assert pred.confidence == max(pred.probabilities)
            assert pred.to_dict()["message"] == NOT_A_DIGIT
        else:
            assert pred.message.startswith("no digit found"), pred.message
            assert not pred.model_input.any()
            assert pred.probabilities == (0.0,) * 10 and pred.confidence == 0.0
        return
    assert pred.label in range(10)
    assert abs(sum(pred.probabilities) - 1.0) < 1e-3
    assert pred.confidence == max(pred.probabilities) == pred.probabilities[pred.label]
    x0, y0, x1, y1 = pred.box
    assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h, (pred.box, size)
    assert all(0.0 <= v <= 1.0 for v in pred.box_normalized + pred.model_box)
    d = pred.to_dict()
    assert d["label"] == pred.label and len(d["box"]) == 4


def array_size(a: np.ndarray) -> tuple[int, int]:
    return (a.shape[1], a.shape[0])


@pytest.fixture(scope="module")
def predictor():
    return load_predictor()


@FAST
@given(images())
def test_prepare_any_array(a):
    try:
        prep = prepare(a)
    except InvalidImage as e:
        # Only shapes that are not images are refused.
        assert a.ndim == 3 and a.shape[-1] == 2, (a.shape, a.dtype, e)
        return
    check_prepared(prep, array_size(a))


@FAST
@given(a=images(max_side=100))
def test_predict_any_array(predictor, a):
    try:
        pred = predictor.predict(a)
    except InvalidImage:
        assert a.ndim == 3 and a.shape[-1] == 2
        return
    check_prediction(pred, array_size(a))


@st.composite
def pil_images(draw, modes=tuple(MODES)) -> Image.Image:
    a = draw(images(max_side=90))
    a = np.nan_to_num(a.astype(np.float64), nan=0, posinf=255, neginf=0)
    gray = np.clip(a if a.ndim == 2 else a[..., 0], 0, 255)
    base = Image.fromarray(gray.astype(np.uint8), "L")
    mode = draw(st.sampled_from(sorted(modes)))
    if mode in ("I;16",):
        return Image.fromarray(gray.astype(np.uint16) * 257)
    if mode in ("LA", "PA", "RGBA") and draw(st.booleans()):
        rgba = base.convert("RGBA")
        rgba.putalpha(base)  # ink (or paper) only in alpha
        return rgba.convert(mode)
    return base.convert(mode)


@FAST
@given(img=pil_images())
def test_predict_any_pil_mode(predictor, img):
    try:
        pred = predictor.predict(img)
    except InvalidImage as e:
        assert "mode" in str(e), e  # only exotic modes may be refused, and clearly
        return
    check_prediction(pred, img.size)


@st.composite
def encoded(draw) -> tuple[Image.Image, bytes]:
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    img = draw(pil_images(FORMATS[fmt]))
    return img, encode(img, fmt)


@FAST
@given(encoded())
def test_predict_any_encoded_file(predictor, img_and_data):
    img, data = img_and_data
    pred = predictor.predict(data)  # a valid file must never be refused
    check_prediction(pred, img.size)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_prepare_damaged_files(fmt, flips, cut):
    """Valid files with bytes overwritten and/or cut short: a result or InvalidImage."""
    size = (120, 90)
    page = np.full(size[::-1], 255, np.uint8)
    page[20:70, 40:80] = 255 - digit_ink(7, 50)[:, 5:45]
    data = bytearray(encode(Image.fromarray(page).convert("RGB"), fmt))
    for pos, value in flips:
        data[int(pos * len(data))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    try:
        prep = prepare(bytes(data))
    except InvalidImage as e:
        event("refused")
        assert str(e).strip()
        return
    event("decoded")
    assert prep.model_input.shape == (75, 75) and np.isfinite(prep.model_input).all()
    assert 0.0 <= prep.model_input.min() and prep.model_input.max() <= 1.0


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.binary(max_size=4096))
def test_prepare_random_bytes(data):
    try:
        prep = prepare(data)
    except InvalidImage as e:
        assert str(e).strip()
        return
    assert prep.model_input.shape == (75, 75)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers()),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
def test_prepare_non_image_objects(obj):
    with pytest.raises(InvalidImage):
        prepare(obj)
