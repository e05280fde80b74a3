"""Turn whatever a user gives us into the model's 75x75 input, and map boxes back.

Accepted: a path, bytes, a file-like object, a PIL image or a numpy array, of
any size and mode (RGBA canvases with ink in colour or only in alpha, RGB photos
of dark ink on light paper, L, P, I;16, CMYK, ...). Steps:

1. decode safely: size limits checked from the header before decoding, first
   frame of animations, EXIF orientation applied;
2. an *ink map* in 0..1 (1 = ink): transparency or luminance, inverted when the
   background is light, contrast-stretched, faint background noise removed;
3. a square frame around the image (pad, never stretch) -- or around the ink
   when the digit would be too small or too large for what the model learned --
   resized to 75x75. The frame is kept so boxes map back exactly.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from locmnist.config import CANVAS_SIZE as CANVAS

MAX_FILE_BYTES = 25 * 1024 * 1024     # refuse larger files before reading them
MAX_PIXELS = 40_000_000               # decoded pixel cap (a 5000x5000 photo is 25 M)
MAX_SIDE = 20_000                     # a 1 x 100000 strip is not a digit either
WORK_SIDE = 1024                      # larger images are reduced to this first (speed)
# The model learned digits 15..70 px tall (Config.min_height..max_height); outside this
# band we frame on the ink.
MIN_INK_PX, MAX_INK_PX, TARGET_INK_PX = 18.0, 68.0, 46.0
MIN_CONTRAST = 0.12                   # peak ink minus background, on a 0..1 scale
MAX_INK_FRACTION = 0.5                # more ink than this is a texture, not a digit


class InvalidImage(ValueError):
    """The input is not a usable image; the message says why, for the user."""


@dataclass(frozen=True)
class Prepared:
    """A model input plus what is needed to map its boxes back to the input image."""
    model_input: np.ndarray        # (75, 75) float32 in 0..1, ink = 1
    image_size: tuple[int, int]    # input (width, height) in pixels, after EXIF rotation
    frame: tuple[float, float, float]  # (x0, y0, side) of the square frame, input pixels
    blank_reason: str | None       # why there is no digit, or None

    def to_input_pixels(self, box_normalized) -> tuple[float, float, float, float]:
        """Model-normalized box -> input pixel coordinates, clipped to the image."""
        x0, y0, side = self.frame
        w, h = self.image_size
        bx0, by0, bx1, by1 = (float(v) for v in box_normalized)
        xs = sorted((x0 + bx0 * side, x0 + bx1 * side))
        ys = sorted((y0 + by0 * side, y0 + by1 * side))
        clip = lambda v, hi: float(min(max(v, 0.0), hi))
        return (clip(xs[0], w), clip(ys[0], h), clip(xs[1], w), clip(ys[1], h))


# --- 1. decoding -----------------------------------------------------------

def open_image(source) -> Image.Image:
    """Decode ``source`` to a loaded, upright PIL image, or raise InvalidImage.

    Very large JPEGs are decoded at a reduced scale (see ``_open``).
    """
    return _open(source)[0]


def _open(source) -> tuple[Image.Image, tuple[int, int]]:
    """(loaded upright image, the input's full upright (width, height)).

    The two sizes differ only when a large JPEG was decoded at 1/2..1/8 scale.
    """
    if isinstance(source, Image.Image):
        img = source
        _check_size(img.size)
    else:
        data = _read_bytes(source)
        if not data:
            raise InvalidImage("the file is empty")
        _refuse_pillow_bomb_warnings()
        try:
            img = Image.open(io.BytesIO(data))  # parses the header only
        except UnidentifiedImageError:
            raise InvalidImage("not a supported image file (PNG, JPEG, GIF, BMP, TIFF "
                               "or WebP)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidImage(f"the image is too large: the limit is {MAX_PIXELS / 1e6:.0f} "
                               f"megapixels") from None
        except Exception as e:  # Pillow raises many types on hostile headers
            raise InvalidImage(f"not a readable image ({_short(e)})") from None
        _check_size(img.size)  # before any pixel is decoded
    full_size = img.size
    try:
        # Animations are left on their first frame: asking for n_frames would walk
        # every frame of the file (a GIF can hold thousands).
        if (img.format == "JPEG" and max(img.size) > 2 * WORK_SIDE
                and not isinstance(source, Image.Image)):  # never shrink a caller's image
            img.draft(img.mode, (WORK_SIDE, WORK_SIDE))  # decode at reduced scale: fast
        img.load()
    except Exception as e:
        raise InvalidImage(f"the image data is damaged or truncated ({_short(e)})") from None
    try:
        orientation = img.getexif().get(0x0112, 1)
        img = ImageOps.exif_transpose(img)  # phone photos: honour orientation
        if orientation in (5, 6, 7, 8):
            full_size = full_size[::-1]
    except Exception:
        pass  # a broken EXIF block only loses the rotation
    return _known_mode(img), full_size


def _refuse_pillow_bomb_warnings() -> None:
    """Make Pillow's DecompressionBombWarning an exception we turn into InvalidImage.

    Pillow only *warns* at open for 89M..179M pixels (errors above); our own
    cap (MAX_PIXELS) is lower, so such files are refused either way, and must
    not print a warning on the way. Warning filters are process-wide and pytest
    resets them per test, hence an idempotent check on every open.
    """
    if _BOMB_FILTER not in warnings.filters:
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


_BOMB_FILTER = ("error", None, Image.DecompressionBombWarning, None, 0)
_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I", "F",
          "I;16", "I;16B", "I;16L"}


def _known_mode(img: Image.Image) -> Image.Image:
    """Bring exotic modes (LAB, HSV, I;16S, La, ...) to RGBA or RGB, or refuse."""
    if img.mode in _MODES:
        return img
    if img.mode in ("LAB", "HSV"):  # Pillow cannot convert these to RGB; use lightness
        return img.getchannel("L" if img.mode == "LAB" else "V")
    try:
        return img.convert("RGBA" if "A" in img.mode or "a" in img.mode else "RGB")
    except Exception:
        raise InvalidImage(f"unsupported image mode {img.mode}") from None


def _read_bytes(source) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes from bytes, a path or a binary file object."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source[:MAX_FILE_BYTES + 1])
        elif isinstance(source, (str, os.PathLike)):
            p = Path(source)
            if not p.is_file():  # also refuses directories, FIFOs and devices: no hang
                raise InvalidImage(f"no such file: {p}")
            if p.stat().st_size > MAX_FILE_BYTES:
                raise InvalidImage(f"the file is {p.stat().st_size / 2**20:.0f} MB; "
                                   f"the limit is {MAX_FILE_BYTES // 2**20} MB")
            with open(p, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)  # it may have grown since stat()
        elif hasattr(source, "read"):
            data = source.read(MAX_FILE_BYTES + 1)
            if not isinstance(data, (bytes, bytearray)):
                raise InvalidImage("the file was opened as text; open it in binary mode")
        else:
            raise InvalidImage(f"cannot read an image from a {type(source).__name__}")
    except (OSError, ValueError) as e:  # unreadable path, closed file, ...
        if isinstance(e, InvalidImage):
            raise
        raise InvalidImage(f"could not read the file ({_short(e)})") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImage(f"the file is larger than the {MAX_FILE_BYTES // 2**20} MB limit")
    return bytes(data)


def _check_size(size) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise InvalidImage("the image has no pixels")
    if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
        raise InvalidImage(f"the image is {w}x{h} pixels; the limit is {MAX_PIXELS / 1e6:.0f} "
                           f"megapixels and {MAX_SIDE} pixels a side")


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:160]


# --- 2. ink map --------------------------------------------------------------

def _reduce(img: Image.Image) -> tuple[Image.Image, float]:
    """Shrink so the longer side is at most WORK_SIDE; returns (image, input px per px)."""
    side = max(img.size)
    if side <= WORK_SIDE:
        return img, 1.0
    factor = side / WORK_SIDE
    size = (max(1, round(img.width / factor)), max(1, round(img.height / factor)))
    if img.mode.startswith("I;16"):
        img = img.convert("I")
    elif img.mode in ("1", "P", "PA", "CMYK", "YCbCr", "RGBX") or "transparency" in img.info:
        # resize() cannot average these modes; keep transparency as alpha
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
    return img.resize(size, Image.BOX), img.width / size[0]


def _has_alpha(img: Image.Image) -> bool:
    """An alpha channel, or a transparent colour key (tRNS in P, L and RGB PNGs)."""
    return img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info


def _gray_and_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(luminance (H, W) in 0..1, alpha in 0..1 or None) for any PIL mode."""
    mode = img.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float32)
        top = float(np.nanmax(a)) if a.size else 0.0
        scale = 65535.0 if mode.startswith("I;16") else (255.0 if top <= 255 else
                                                        65535.0 if top <= 65535 else top)
        if mode == "F":
            scale = 1.0 if top <= 1.0 else top
        return np.nan_to_num(np.clip(a / max(scale, 1e-6), 0, 1)), None
    if _has_alpha(img):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        gray = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        return gray, rgba[..., 3]
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0, None


def _transparent_strokes(img: Image.Image) -> np.ndarray | None:
    """The alpha channel (H, W) uint8 of a drawing: strokes on a mostly transparent
    background, else None. Decided on the 8-bit channel, without float copies of the
    image (the app's 280x280 canvas takes this path on every stroke)."""
    if not _has_alpha(img) or img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return None
    alpha = np.asarray(img if img.mode == "RGBA" else img.convert("RGBA"))[..., 3]
    # The same tests as on alpha / 255 in ink_map: min < 0.98 and (alpha > 0.5).mean() < 0.5.
    if alpha.min() < 250 and np.count_nonzero(alpha > 127) < 0.5 * alpha.size:
        return alpha
    return None


def ink_map(img: Image.Image) -> tuple[np.ndarray, str | None]:
    """(ink (H, W) float32 in 0..1, reason it is blank or None)."""
    alpha8 = _transparent_strokes(img)
    if alpha8 is not None:
        # Opacity is the ink, whatever colour the strokes have (even ink only in alpha).
        # Its median comes exactly from the 256-bin histogram, not from a sort.
        return _stretch(alpha8.astype(np.float32) / 255.0, bg=_median_u8(alpha8) / 255.0)
    gray, alpha = _gray_and_alpha(img)
    if alpha is not None and alpha.min() < 0.98:
        if (alpha > 0.5).mean() < 0.5:
            # Strokes on a transparent background (drawing canvases): opacity is the ink,
            # whatever colour the strokes have -- including ink that lives only in alpha.
            return _stretch(alpha)
        gray = gray * alpha + (1.0 - alpha)  # mostly opaque: flatten onto white paper
    # Background level from the border: robust for photos and scans.
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    bg = float(np.median(border))
    ink = 1.0 - gray if bg > 0.5 else gray  # dark ink on light paper -> invert
    return _stretch(ink)


def _median_u8(a: np.ndarray) -> np.float32:
    """``np.median`` of a uint8 array (as float32: the mean of the two middle values)."""
    cum = np.cumsum(np.bincount(a.ravel(), minlength=256))
    n = a.size
    lo, hi = np.searchsorted(cum, [(n - 1) // 2, n // 2], side="right").astype(np.float32)
    return (lo + hi) / np.float32(2)


def _stretch(ink: np.ndarray, bg: float | None = None) -> tuple[np.ndarray, str | None]:
    """Contrast-stretch so background -> 0 and the strongest ink -> 1.

    ``bg``: the median of ``ink`` when the caller has it already."""
    bg = float(np.median(ink) if bg is None else bg)  # a digit covers a minority of pixels
    peak = float(ink.max()) if ink.size else 0.0
    if peak - bg < MIN_CONTRAST:
        return np.zeros_like(ink, dtype=np.float32), "no digit found: the image is blank or too faint"
    lo = bg + 0.15 * (peak - bg)  # drop paper texture and sensor noise
    out = np.clip((ink - lo) / (peak - lo), 0.0, 1.0).astype(np.float32, copy=False)
    if np.count_nonzero(out >= 0.5) > MAX_INK_FRACTION * out.size:
        return out, "no digit found: the image is mostly ink or noise, not a digit"
    return out, None


# --- 3. framing ----------------------------------------------------------------

def _ink_extent(ink: np.ndarray, threshold: float = 0.3):
    rows = np.flatnonzero((ink >= threshold).any(axis=1))
    cols = np.flatnonzero((ink >= threshold).any(axis=0))
    if rows.size == 0:
        return None
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def ink_image(source) -> tuple[np.ndarray, float, tuple[int, int], str | None]:
    """Steps 1 and 2 for any source: (ink (h, w) float32 in 0..1, input px per ink px,
    input (width, height), why it is blank or None). The multi-digit reader starts here too.
    """
    if isinstance(source, np.ndarray):
        img = array_to_image(source)
        size = img.size
    else:
        img, size = _open(source)
    work, factor = _reduce(img)
    factor *= size[0] / img.width  # JPEGs decoded at reduced scale
    ink, reason = ink_map(work)
    return ink, factor, size, reason


def prepare(source) -> Prepared:
    """Decode and preprocess one image (see module docstring)."""
    ink, factor, size, reason = ink_image(source)
    h, w = ink.shape
    extent = None if reason else _ink_extent(ink)
    if reason is None and extent is None:
        reason = "no digit found: no ink strokes"

    side = float(max(w, h))
    x0, y0 = (w - side) / 2, (h - side) / 2  # pad to a square, centred: never stretch
    if extent is not None:
        ex0, ey0, ex1, ey1 = extent
        ink_px = max(ex1 - ex0, ey1 - ey0) * CANVAS / side
        if not MIN_INK_PX <= ink_px <= MAX_INK_PX:
            # Too small (a digit in a big photo) or too large (a tight crop): frame the ink
            # so it is TARGET_INK_PX tall in the model input, as in training.
            side = max(ex1 - ex0, ey1 - ey0) * CANVAS / TARGET_INK_PX
            x0, y0 = (ex0 + ex1 - side) / 2, (ey0 + ey1 - side) / 2

    frame_img = Image.fromarray(ink, mode="F")
    # crop() pads with zeros outside the image; BOX resampling keeps thin strokes.
    crop = frame_img.crop((round(x0), round(y0), round(x0 + side), round(y0 + side)))
    x0, y0, side = round(x0), round(y0), float(round(x0 + side) - round(x0))
    model_input = np.asarray(crop.resize((CANVAS, CANVAS), Image.BOX), dtype=np.float32)
    peak = float(model_input.max())
    if reason is None and peak < 0.05:
        reason = "no digit found: the strokes are too small to see"
    if reason is None and peak < 1.0:
        model_input = model_input / peak  # thin strokes downscaled fade: restore contrast
    model_input = np.clip(model_input, 0.0, 1.0)
    frame = (x0 * factor, y0 * factor, side * factor)
    return Prepared(model_input if reason is None else np.zeros_like(model_input),
                    size, frame, reason)


def array_to_image(a: np.ndarray) -> Image.Image:
    """A numpy image (H, W), (H, W, 1|3|4) of uint8, uint16, bool or float -> PIL."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InvalidImage(f"expected an array of shape (H, W), (H, W, 1), (H, W, 3) or "
                           f"(H, W, 4); got {a.shape}")
    _check_size((a.shape[1], a.shape[0]))
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a // 257).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = a.max() if a.size else 0.0
        a = np.clip(a / (255.0 if top > 1.0 else 1.0), 0, 1)  # floats in 0..1 or 0..255
        a = np.rint(a * 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise InvalidImage(f"unsupported array dtype {a.dtype}")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[a.ndim if a.ndim == 2 else a.shape[-1]]
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)
