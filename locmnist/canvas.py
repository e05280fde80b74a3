"""What the drawing canvas sends back, checked before anything is decoded or copied.

``streamlit-drawable-canvas`` returns the browser's drawing as a PNG data URL
plus the Fabric.js JSON of its objects. Both come from the browser, so a visitor
can send anything in their place: a 20,000 x 20,000 PNG, a JPEG, a string where a
number belongs (``{"width": "A", "scaleX": 3e8}``). ``read_canvas`` checks the
URL's length, the PNG's header (size, mode) and the JSON's types and ranges
first, then decodes at most ``MAX_SIDE`` x ``MAX_SIDE`` pixels. Anything else is
an ``InvalidCanvas`` with a message for the user.
"""
from __future__ import annotations

import binascii
import io
import math
from dataclasses import dataclass

import numpy as np

CANVAS_PX = 280                 # the canvas's height as the page draws it, CSS pixels
CANVAS_WIDTH = 2 * CANVAS_PX    # wide enough for a number of 4 or more digits
MAX_SIDE = 4 * CANVAS_WIDTH     # a high-DPI screen sends up to 4x as many pixels
MAX_PNG_BYTES = 4 * MAX_SIDE * MAX_SIDE + 2**16   # more than an uncompressed RGBA canvas
MAX_OBJECTS = 5000              # strokes and boxes
MAX_COORD = 100 * CANVAS_WIDTH    # coordinates and sizes, canvas pixels
MAX_SCALE = 100.0
ORIGIN = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}  # Fabric.js
NUMBER_FIELDS = {"left": 0, "top": 0, "width": 0, "height": 0, "scaleX": 1, "scaleY": 1}


class InvalidCanvas(ValueError):
    """The canvas payload is not a drawing this page made; the message says why."""


@dataclass(frozen=True)
class Canvas:
    rgba: np.ndarray                     # (H, W, 4) uint8, H and W <= MAX_SIDE
    user_box: tuple[float, float, float, float] | None   # normalized, the last rectangle


def read_canvas(result) -> Canvas | None:
    """The checked drawing and the user's box from ``st_canvas``'s result; None before drawing.

    ``result`` needs ``image_bytes`` (the PNG the browser sent, or None) and ``json_data``.
    """
    if result is None:  # st_canvas itself could not parse what the browser sent
        raise InvalidCanvas("the drawing is not what this canvas sends")
    user_box = last_user_box(getattr(result, "json_data", None))   # the cheap checks first
    try:
        data = result.image_bytes  # base64-decodes the browser's data URL
    except (ValueError, TypeError, AttributeError, binascii.Error):
        raise InvalidCanvas("the drawing is not an image data URL") from None
    if data is None:
        return None
    return Canvas(decode_png(data), user_box)


def decode_png(data) -> np.ndarray:
    """(H, W, 4) uint8 from PNG bytes, the size checked from the header before decoding."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray)):
        raise InvalidCanvas("the drawing is not an image")
    if len(data) > MAX_PNG_BYTES:
        raise InvalidCanvas(f"the drawing is {len(data) / 2**20:.0f} MB; a canvas is far smaller")
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
        w, h = img.size
        if img.format != "PNG":
            raise InvalidCanvas("the drawing is not a PNG image")
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
            raise InvalidCanvas(f"the drawing is {w}x{h} pixels; the canvas is at most "
                                f"{MAX_SIDE}x{MAX_SIDE}")
        if img.mode not in ("RGBA", "RGB", "LA", "L", "P"):
            raise InvalidCanvas(f"the drawing has an unexpected colour mode ({img.mode})")
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except Image.DecompressionBombError:
        raise InvalidCanvas(f"the drawing has far more pixels than a canvas "
                            f"(at most {MAX_SIDE}x{MAX_SIDE})") from None
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError, EOFError) as e:
        if isinstance(e, InvalidCanvas):
            raise
        raise InvalidCanvas("the drawing could not be decoded") from None
    if rgba.shape != (h, w, 4):
        raise InvalidCanvas("the drawing could not be decoded")
    return rgba


def last_user_box(json_data) -> tuple[float, float, float, float] | None:
    """The last rectangle dragged on the canvas, normalized (xmin, ymin, xmax, ymax).

    Every field is type- and range-checked before any arithmetic.
    """
    if json_data is None:
        return None
    if not isinstance(json_data, dict):
        raise InvalidCanvas("the drawing's description is not an object")
    objects = json_data.get("objects", [])
    if not isinstance(objects, list) or len(objects) > MAX_OBJECTS:
        raise InvalidCanvas(f"the drawing's description has no list of at most "
                            f"{MAX_OBJECTS} objects")
    rects = [o for o in objects if isinstance(o, dict)
             and str(o.get("type", ""))[:10].lower() == "rect"]   # Fabric.js writes "Rect"
    if not rects:
        return None
    o = rects[-1]
    v = {k: _number(o.get(k, default), k) for k, default in NUMBER_FIELDS.items()}
    if not all(abs(v[k]) <= MAX_SCALE for k in ("scaleX", "scaleY")):
        raise InvalidCanvas(f"the box is scaled by more than {MAX_SCALE:g}")
    origin_x, origin_y = o.get("originX", "left"), o.get("originY", "top")
    if not (isinstance(origin_x, str) and isinstance(origin_y, str)
            and origin_x in ORIGIN and origin_y in ORIGIN):
        raise InvalidCanvas("the box has an unknown origin")
    w, h = v["width"] * v["scaleX"], v["height"] * v["scaleY"]
    x0 = v["left"] - ORIGIN[origin_x] * w
    y0 = v["top"] - ORIGIN[origin_y] * h
    box = (min(x0, x0 + w), min(y0, y0 + h), max(x0, x0 + w), max(y0, y0 + h))
    sides = (CANVAS_WIDTH, CANVAS_PX, CANVAS_WIDTH, CANVAS_PX)
    return tuple(float(min(max(c / side, 0.0), 1.0)) for c, side in zip(box, sides))


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidCanvas(f"the box's {name} is not a number")
    value = float(value)
    if not math.isfinite(value) or abs(value) > MAX_COORD:
        raise InvalidCanvas(f"the box's {name} is out of range")
    return value
