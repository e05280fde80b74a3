"""The box convention, IoU, the share of one box inside another, and drawing.

Box convention (the only one in this project)
---------------------------------------------
A box is ``(xmin, ymin, xmax, ymax)`` measured on **pixel edges**: the left
edge of column 0 is x=0 and the right edge of the last column is x=W. So the
tight box of ink in columns 10..19 has xmin=10, xmax=20. A *normalized* box
divides x by the image width and y by the height, so it lies in [0, 1].
Model targets and outputs are normalized boxes on the 75x75 canvas.
"""
from __future__ import annotations

import numpy as np

INK_THRESHOLD = 0.2  # a canvas pixel (0..1) at or above this counts as ink for the tight box


def tight_box(image: np.ndarray, threshold: float = INK_THRESHOLD) -> np.ndarray | None:
    """Pixel-edge box (xmin, ymin, xmax, ymax) of pixels >= threshold, or None."""
    ink = np.asarray(image).squeeze() >= threshold
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def iou(a, b) -> np.ndarray:
    """IoU of boxes ``a`` and ``b`` (..., 4), broadcast; 0 where the union is empty."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # Sort coordinates so a box predicted "inside out" still has a valid area.
    ax0, ax1 = np.minimum(a[..., 0], a[..., 2]), np.maximum(a[..., 0], a[..., 2])
    ay0, ay1 = np.minimum(a[..., 1], a[..., 3]), np.maximum(a[..., 1], a[..., 3])
    bx0, bx1 = np.minimum(b[..., 0], b[..., 2]), np.maximum(b[..., 0], b[..., 2])
    by0, by1 = np.minimum(b[..., 1], b[..., 3]), np.maximum(b[..., 1], b[..., 3])
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def inside_share(a, b) -> np.ndarray:
    """(K, N): the share of each box of ``a`` (K, 4) that lies inside each box of ``b``
    (N, 4), both in the same pixels (a box of no area counts as 1e-6 px^2)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    iw, ih = np.maximum(hi - lo, 0.0).transpose(2, 0, 1)
    area = np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-6)
    return iw * ih / area[:, None]


def to_pixels(box_normalized, width: float, height: float) -> tuple[float, ...]:
    x0, y0, x1, y1 = (float(v) for v in box_normalized)
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def draw_boxes(image, predicted=None, true=None, label: str | None = None,
               normalized: bool = True, scale: int = 1):
    """Return an RGB PIL image with the predicted box in red, the true box in green.

    ``image`` is anything PIL or numpy (2-D floats in 0..1 are treated as a canvas).
    Boxes are normalized (default) or in the image's pixel coordinates. ``scale``
    enlarges the image first (nearest neighbour), handy for a 75x75 canvas.
    """
    from PIL import Image, ImageDraw

    if isinstance(image, Image.Image):
        img = image.convert("RGB")
    else:
        arr = np.asarray(image).squeeze()
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)
        img = Image.fromarray(arr).convert("RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    w, h = img.size
    draw = ImageDraw.Draw(img)
    line = max(1, round(min(w, h) / 150))

    def px(box):
        if normalized:
            return to_pixels(box, w, h)
        return tuple(float(v) * scale for v in box)

    # Pixel-edge boxes: the last covered pixel is at x1 - 1, so the outline sits on the ink.
    for box, colour in ((true, (0, 200, 0)), (predicted, (255, 40, 40))):
        if box is not None:
            x0, y0, x1, y1 = px(box)
            draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=line)
    if label is not None and predicted is not None:
        from PIL import ImageFont

        size = max(10, 8 * line)
        font = ImageFont.load_default(size=size)  # Pillow's own scalable font: no system fonts
        x0, y0, _, _ = px(predicted)
        ty = y0 - size - line if y0 >= size + line else y0 + line
        draw.text((x0 + line, ty), label, fill=(255, 40, 40), font=font)
    return img
