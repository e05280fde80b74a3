"""The hostile-input corpus: every way an image can enter, good and hostile.

Each input is built here, from real MNIST digits or raw bytes, and must give
exactly one of three outcomes:

* ``digit``   a Prediction with the right label and a box on the digit;
* ``blank``   a Prediction with label None ("no digit"), never a guess;
* ``invalid`` an ``InvalidImage`` (the CLI: a JSON ``{"error": ...}`` line).

Not a test module: ``tests/test_hostile_inputs.py``, ``tests/test_properties.py``,
``tests/test_concurrency.py`` and ``scripts/reliability_report.py`` use it; its model-file
section (crafted .keras files) also serves ``tests/test_model_checks.py``,
``tests/test_app.py`` and ``scripts/hostile_server.py``.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from locmnist.boxes import iou
from locmnist.preprocess import InvalidImage

# MNIST test-set digits drawn into the images (clear, upright specimens).
SPECIMENS = {7: 0, 2: 1, 1: 2, 0: 3, 4: 4}


# --- building blocks -----------------------------------------------------------

@lru_cache(maxsize=None)
def _mnist_digit(label: int) -> np.ndarray:
    from locmnist.data import load_mnist

    img = load_mnist().x_test[SPECIMENS[label]]
    return img


def digit_ink(label: int, height: int) -> np.ndarray:
    """An MNIST test digit scaled to ``height`` px (square), uint8 ink (255 = ink)."""
    return np.asarray(Image.fromarray(_mnist_digit(label)).resize((height, height),
                                                                  Image.BICUBIC))


@dataclass(frozen=True)
class Page:
    """A sheet with one digit: the ink (uint8, 255 = ink) and where the digit is."""
    ink: np.ndarray
    box: tuple[float, float, float, float]   # tight ink box, pixels (x0, y0, x1, y1)

    def paper(self) -> np.ndarray:
        """Dark ink on white paper (what a photo or scan looks like)."""
        return 255 - self.ink


def page(label: int, size=(200, 200), height: int = 140, at=None) -> Page:
    """``label`` drawn ``height`` px tall with its top-left corner at ``at`` (default centred)."""
    w, h = size
    x, y = at if at is not None else ((w - height) // 2, (h - height) // 2)
    ink = np.zeros((h, w), np.uint8)
    ink[y:y + height, x:x + height] = digit_ink(label, height)
    ys, xs = np.nonzero(ink >= 128)
    return Page(ink, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_with_header_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR then claims ``width`` x ``height`` (CRC fixed up)."""
    data = bytearray(encode(Image.new("L", (1, 1), 255), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def gif_with_screen_size(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("L", (1, 1), 255), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)   # logical screen
    return bytes(data)


def png_with_garbage_idat() -> bytes:
    """A 64x64 PNG whose compressed pixel data was replaced by random bytes."""
    data = bytearray(encode(Image.new("L", (64, 64), 128), "PNG"))
    i = data.index(b"IDAT")
    n = struct.unpack(">I", data[i - 4:i])[0]
    data[i + 4:i + 4 + n] = np.random.default_rng(1).bytes(n)
    data[i + 4 + n:i + 8 + n] = struct.pack(">I", zlib.crc32(bytes(data[i:i + 4 + n])))
    return bytes(data)


def png_text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 20 MB of text."""
    data = encode(Image.fromarray(page(7).paper()), "PNG")
    text = zlib.compressobj(9)
    payload = b"bomb\x00\x00" + text.compress(b"\0" * (20 * 2**20)) + text.flush()
    chunk = struct.pack(">I", len(payload)) + b"zTXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"zTXt" + payload))
    return data[:33] + chunk + data[33:]


def exif_rotated_jpeg(orientation: int) -> tuple[bytes, Page]:
    """A phone photo: the upright page (digit in the top-left quarter) stored rotated,
    with the EXIF Orientation tag telling viewers how to turn it upright."""
    upright = page(7, size=(320, 240), height=90, at=(20, 15))
    turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = Image.fromarray(upright.paper()).transpose(turn)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=92, exif=exif.tobytes()), upright


def animated_gif() -> bytes:
    first = Image.fromarray(page(7).paper())
    second = Image.fromarray(page(1).paper())
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def palette_with_transparency() -> tuple[bytes, Page]:
    """P-mode PNG: transparent background, black ink (a sticker or a canvas export)."""
    p = page(2)
    pal = np.where(p.ink >= 128, 1, 0).astype(np.uint8)
    img = Image.fromarray(pal, mode="P")
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    return encode(img, "PNG", transparency=0), p


def alpha_only_ink() -> tuple[bytes, Page]:
    """RGBA where every pixel is black and only the alpha channel draws the digit."""
    p = page(4)
    rgba = np.zeros((*p.ink.shape, 4), np.uint8)
    rgba[..., 3] = p.ink
    return encode(Image.fromarray(rgba, mode="RGBA"), "PNG"), p


def sixteen_bit_png() -> tuple[bytes, Page]:
    p = page(0)
    img = Image.fromarray(p.paper().astype(np.uint16) * 257)  # I;16 (uint16 array)
    return encode(img, "PNG"), p


def cmyk_jpeg() -> tuple[bytes, Page]:
    p = page(1)
    img = Image.fromarray(p.paper()).convert("CMYK")
    return encode(img, "JPEG", quality=95), p


def faint_noise() -> bytes:
    rng = np.random.default_rng(3)
    a = np.clip(128 + rng.normal(0, 3, (240, 320)), 0, 255).astype(np.uint8)
    return encode(Image.fromarray(a), "PNG")


def small_digit_in_big_photo() -> tuple[bytes, Page]:
    """A 60 px digit on a 1600x1200 grey, slightly noisy sheet (a far-away photo)."""
    p = page(7, size=(1600, 1200), height=60, at=(1100, 300))
    rng = np.random.default_rng(4)
    photo = 200 - p.ink.astype(np.float32) * (150 / 255) + rng.normal(0, 4, p.ink.shape)
    return encode(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)), "JPEG",
                  quality=90), p


# --- the corpus --------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], tuple[bytes, Page | None]]
    expect: str                 # "digit" | "blank" | "invalid" | "digit_or_invalid"
    label: int | None = None    # for "digit"
    suffix: str = ".png"        # file name the CLI sees (lies included)


def _bytes(fn):
    return lambda: (fn(), None)


def digit_file(label, fmt, size=(200, 200), height=140, at=None, mode="L", paper=True, **kw):
    def build():
        p = page(label, size, height, at)
        img = Image.fromarray(p.paper() if paper else p.ink)
        return encode(img.convert(mode), fmt, **kw), p
    return build


def _truncated(fmt: str):
    def build():
        data = encode(Image.fromarray(page(7).paper()), fmt)
        return data[:len(data) // 2], None
    return build


CORPUS: list[Case] = [
    # not images at all
    Case("empty file", _bytes(lambda: b""), "invalid"),
    Case("text renamed .png", _bytes(lambda: b"just some notes\n" * 20), "invalid"),
    Case("HTML renamed .jpg", _bytes(lambda: b"<!doctype html><html><body><img src=x>"
                                     b"</body></html>"), "invalid", suffix=".jpg"),
    Case("SVG renamed .png", _bytes(lambda: b'<svg xmlns="http://www.w3.org/2000/svg" '
                                    b'width="75" height="75"><text y="50">7</text></svg>'),
         "invalid"),
    Case("random bytes", _bytes(lambda: np.random.default_rng(0).bytes(5000)), "invalid"),
    # damaged images
    Case("truncated PNG", _truncated("PNG"), "invalid"),
    Case("truncated JPEG", _truncated("JPEG"), "invalid", suffix=".jpg"),
    Case("PNG with garbage pixel data", _bytes(png_with_garbage_idat), "invalid"),
    # bombs and absurd sizes
    Case("PNG bomb 40000x40000 header", _bytes(lambda: png_with_header_size(40000, 40000)),
         "invalid"),
    Case("PNG 10000x10000 header (Pillow warns)", _bytes(lambda: png_with_header_size(10000, 10000)),
         "invalid"),
    Case("GIF bomb 65535x65535 screen", _bytes(lambda: gif_with_screen_size(65535, 65535)),
         "invalid", suffix=".gif"),
    Case("PNG zTXt text bomb", lambda: (png_text_bomb(), page(7)), "digit_or_invalid", 7),
    Case("30000x1 strip", _bytes(lambda: encode(Image.new("L", (30000, 1), 255), "PNG")),
         "invalid"),
    # degenerate but valid
    Case("1x1 image", _bytes(lambda: encode(Image.new("L", (1, 1), 0), "PNG")), "blank"),
    Case("1x3000 strip", _bytes(lambda: encode(Image.new("L", (1, 3000), 255), "PNG")), "blank"),
    Case("3000x40 strip", _bytes(lambda: encode(Image.new("RGB", (3000, 40), "white"), "PNG")),
         "blank"),
    # nothing to find
    Case("all black", _bytes(lambda: encode(Image.new("L", (300, 300), 0), "PNG")), "blank"),
    Case("all white", _bytes(lambda: encode(Image.new("RGB", (300, 300), "white"), "JPEG")),
         "blank", suffix=".jpg"),
    Case("fully transparent", _bytes(lambda: encode(Image.new("RGBA", (300, 300), (0, 0, 0, 0)),
                                                    "PNG")), "blank"),
    Case("faint noise", _bytes(faint_noise), "blank"),
    # legitimate digits in every format and mode
    Case("PNG grey, dark on white", digit_file(7, "PNG"), "digit", 7),
    Case("PNG white on black", digit_file(2, "PNG", paper=False), "digit", 2),
    Case("PNG bilevel (mode 1)", digit_file(1, "PNG", mode="1"), "digit", 1),
    Case("JPEG RGB", digit_file(2, "JPEG", mode="RGB", quality=90), "digit", 2, ".jpg"),
    Case("JPEG CMYK", cmyk_jpeg, "digit", 1, ".jpg"),
    Case("PNG 16-bit", sixteen_bit_png, "digit", 0),
    Case("PNG palette + transparency", palette_with_transparency, "digit", 2),
    Case("PNG ink only in alpha", alpha_only_ink, "digit", 4),
    Case("GIF animated (first frame)", lambda: (animated_gif(), page(7)), "digit", 7, ".gif"),
    Case("TIFF", digit_file(4, "TIFF"), "digit", 4, ".tif"),
    Case("BMP", digit_file(7, "BMP", mode="RGB"), "digit", 7, ".bmp"),
    Case("WebP", digit_file(0, "WEBP", mode="RGB", quality=90), "digit", 0, ".webp"),
    Case("wide 2000x150", digit_file(7, "PNG", size=(2000, 150), height=120, at=(300, 15)),
         "digit", 7),
    Case("tall 120x1500", digit_file(1, "PNG", size=(120, 1500), height=100, at=(10, 1200)),
         "digit", 1),
    Case("5000x5000 PNG", digit_file(2, "PNG", size=(5000, 5000), height=2600), "digit", 2),
    Case("5000x5000 JPEG", digit_file(7, "JPEG", size=(5000, 5000), height=3000, quality=85),
         "digit", 7, ".jpg"),
    Case("small digit in 1600x1200 photo", small_digit_in_big_photo, "digit", 7, ".jpg"),
    Case("JPEG EXIF orientation 6", lambda: exif_rotated_jpeg(6), "digit", 7, ".jpg"),
    Case("JPEG EXIF orientation 8", lambda: exif_rotated_jpeg(8), "digit", 7, ".jpg"),
]


def outcome(predictor, data: bytes):
    """('invalid', message) | ('blank', Prediction) | ('digit', Prediction)."""
    try:
        pred = predictor.predict(data)
    except InvalidImage as e:
        return "invalid", str(e)
    return ("blank" if pred.label is None else "digit"), pred


def judge(case: Case, kind: str, result, page_: Page | None, check_accuracy: bool = True):
    """An error message if the outcome is not the expected one, else None."""
    allowed = {"digit_or_invalid": {"digit", "invalid"}}.get(case.expect, {case.expect})
    if kind not in allowed:
        return f"expected {case.expect}, got {kind}: {result if kind == 'invalid' else result.label}"
    if kind == "invalid":
        return None if isinstance(result, str) and result.strip() else "empty error message"
    if kind == "blank":
        return None if result.message and result.box is None else "blank without a message"
    if check_accuracy and result.label != case.label:
        return f"expected label {case.label}, got {result.label} ({result.confidence:.2f})"
    if check_accuracy and page_ is not None:
        overlap = float(iou(np.array([result.box]), np.array([page_.box]))[0])
        if overlap < 0.5:
            return f"box {np.round(result.box, 1).tolist()} misses the digit at {page_.box} " \
                   f"(IoU {overlap:.2f})"
    return None


# --- shared predictor -----------------------------------------------------------

def load_predictor():
    """The model the tests judge: $LOCMNIST_MODEL or the shipped ``models/default.keras``
    (it is in the repository, so a missing one fails the tests that need it)."""
    from locmnist.inference import Predictor

    return Predictor.load()


# --- model files -----------------------------------------------------------------------

def reference_list_model(input_shape=(75, 75, 1), n_outputs: int = 2):
    """The reference notebook's CNN as users bring it (``locmnist.model.seed_cnn``, outputs
    as a list); another input shape, or the softmax output alone, make models the loader
    must refuse."""
    import keras

    from locmnist.model import seed_cnn

    model = seed_cnn(input_shape, list_outputs=True)
    return model if n_outputs == 2 else keras.Model(model.inputs, model.outputs[0])


def craft(good: Path, out: Path, edit) -> Path:
    """A copy of the .keras file ``good`` whose config.json went through ``edit(config)``
    (changed in place); weights unchanged. Written to ``out``, which is returned."""
    import json
    import zipfile

    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            dst.writestr(item, data)
    return out


def layer(cfg: dict, name: str) -> dict:
    """The layer called ``name`` in a functional model's config.json (for ``craft``)."""
    return next(l for l in cfg["config"]["layers"] if l["config"].get("name") == name)


def with_lambda(marker: Path):
    """A model whose Lambda layer would create ``marker`` if its code ever ran."""
    import keras
    from keras import layers

    path = str(marker)
    inputs = keras.Input((75, 75, 1))
    # A real lambda: Keras stores its bytecode (marshal) in the file.
    x = layers.Lambda(lambda t: (open(path, "w").close(), t)[1])(inputs)
    marker.unlink(missing_ok=True)  # building the model above ran it once
    x = layers.Flatten()(x)
    return keras.Model(inputs, [layers.Dense(10, activation="softmax")(x), layers.Dense(4)(x)])


class Exploit:
    """Unpickling this would create a file: proof that a pickle was loaded."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))
