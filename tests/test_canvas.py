"""The drawing canvas's payload (issue 12, finding 1): checked before it is decoded or
copied, with a clear InvalidCanvas for anything the page's canvas would not send."""
from __future__ import annotations

import base64
import io
import resource
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from locmnist.canvas import MAX_SIDE, InvalidCanvas, last_user_box, read_canvas

RECT = {"type": "Rect", "left": 56, "top": 28, "width": 140, "height": 70,
        "scaleX": 1, "scaleY": 2, "originX": "left", "originY": "top"}


def png(size=(280, 280), mode="RGBA", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()


def png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (8-bit RGBA), with no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IEND", b""))


def result(data: bytes | None = None, json_data=None, url=None):
    """What st_canvas returns: image_bytes decodes the data URL the browser sent."""
    if url is None and data is not None:
        url = "data:image/png;base64," + base64.b64encode(data).decode()

    class Result(SimpleNamespace):
        @property
        def image_bytes(self):
            if self.url is None:
                return None
            _, encoded = self.url.split(";base64,", 1)   # as streamlit-drawable-canvas does
            return base64.b64decode(encoded)
    return Result(url=url, json_data=json_data)


def test_last_user_box_reads_fabric_rects_in_canvas_pixels():
    # The canvas is 560 x 280 CSS pixels: x is divided by 560, y by 280.
    assert last_user_box(None) is None
    assert last_user_box({"objects": [{"type": "Path", "left": 1, "top": 1}]}) is None
    assert last_user_box({"objects": [RECT]}) == (0.1, 0.1, 0.35, 0.6)
    centred = {**RECT, "left": 126, "top": 98, "originX": "center", "originY": "center"}
    assert last_user_box({"objects": [RECT, centred]}) == (0.1, 0.1, 0.35, 0.6)


def test_a_normal_drawing_is_read():
    c = read_canvas(result(png(), {"objects": [RECT]}))
    assert c.rgba.shape == (280, 280, 4) and c.rgba.dtype == np.uint8
    assert c.user_box == (0.1, 0.1, 0.35, 0.6)
    assert read_canvas(result(None, None)) is None     # nothing drawn yet
    assert read_canvas(result(png((560, 560)), None)).rgba.shape == (560, 560, 4)  # HiDPI


def test_the_reproduced_rect_allocates_nothing():
    """{"width": "A", "scaleX": 3e8} multiplied a string: ~286 MB before failing."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for rect in ({**RECT, "width": "A", "scaleX": 3e8}, {**RECT, "scaleX": 3e8},
                 {**RECT, "width": "A"}):
        with pytest.raises(InvalidCanvas, match="box"):
            last_user_box({"objects": [rect]})
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50_000, f"peak RSS grew {grown_kb} kB"


@pytest.mark.parametrize("json_data", [
    "objects", 5, [RECT], {"objects": "x"}, {"objects": [RECT] * 10_000},
    {"objects": [{**RECT, "left": float("nan")}]}, {"objects": [{**RECT, "top": True}]},
    {"objects": [{**RECT, "height": 1e12}]}, {"objects": [{**RECT, "originX": []}]},
    {"objects": [{**RECT, "originY": "middle"}]}, {"objects": [{**RECT, "scaleY": None}]},
])
def test_malformed_json_is_a_clear_error(json_data):
    with pytest.raises(InvalidCanvas):
        read_canvas(result(png(), json_data))


def test_non_rect_objects_of_any_shape_are_ignored():
    junk = [1, "x", None, {"type": ["Rect"]}, {"type": "path", "left": "A"}]
    assert last_user_box({"objects": junk}) is None


@pytest.mark.parametrize("payload,match", [
    (dict(data=png((MAX_SIDE + 1, 10))), "pixels"),
    (dict(data=png_header(20_000, 20_000)), "pixels"),       # a few bytes claiming 400 MP
    (dict(data=png_header(100_000, 100_000)), "pixels"),     # past Pillow's bomb limit
    (dict(data=png(fmt="JPEG", mode="RGB")), "not a PNG"),
    (dict(data=png(mode="I;16")), "colour mode"),
    (dict(data=b"\x89PNG\r\n\x1a\n" + b"\0" * 100), "decoded"),
    (dict(url="data:image/png;base64,@@@"), "decoded"),
    (dict(url="no data url"), "image data URL"),
    (dict(url=12345), "image data URL"),
])
def test_hostile_images_are_refused_from_the_header(payload, match):
    with pytest.raises(InvalidCanvas, match=match):
        read_canvas(result(**payload))
