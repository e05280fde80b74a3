"""A seeded "in the wild" set: what people really draw, photograph and type.

The test split measures the task we train on; this set measures what users
give the app, through the full ``Predictor.predict`` path (decoding, inversion,
framing) with ground truth known exactly:

* ``drawn``: mouse-style strokes on a 280x280 canvas, thick round brush, any
  size, anywhere; RGBA with a transparent or an opaque black background;
* ``photo``: dark ink on light paper: uneven lighting, sensor noise, blur, JPEG
  compression, a large image, the digit small or large;
* ``typed``: digits set in the fonts on this machine (and Pillow's own).

Stroke shapes come from hand-made templates per digit (not MNIST), varied by
a random affine map, jitter and brush width. The true box is the tight box of
the rendered ink in input pixels.
"""
from __future__ import annotations

import glob
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("drawn", "photo", "typed")


def _arc(cx, cy, rx, ry, a0, a1, n=14):
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


# Each digit is a list of strokes; each stroke a list of (x, y) in a unit box, y down.
TEMPLATES = {
    0: [_arc(.5, .5, .36, .48, 0, 360, 28)],
    1: [[(.35, .2), (.56, .02), (.52, .98)]],
    2: [_arc(.5, .3, .33, .27, 200, 360) + [(.83, .35), (.14, .97), (.9, .97)]],
    3: [_arc(.48, .27, .32, .24, 200, 450), _arc(.48, .72, .36, .26, 270, 520)],
    4: [[(.68, .98), (.66, .02), (.1, .68), (.92, .68)]],
    5: [[(.82, .03), (.28, .03), (.22, .45)] + _arc(.48, .68, .36, .3, 230, 500)],
    6: [[(.72, .02), (.42, .25)] + _arc(.5, .7, .32, .28, 200, 560, 30)],
    7: [[(.1, .04), (.9, .04), (.42, .98)]],
    8: [_arc(.5, .26, .26, .24, 0, 360, 24), _arc(.5, .72, .33, .27, 0, 360, 26)],
    9: [_arc(.5, .3, .32, .28, 0, 360, 26) + [(.82, .3), (.7, .98)]],
}


@dataclass
class WildImage:
    kind: str
    label: int
    image: Image.Image
    box: tuple[float, float, float, float]  # tight ink box, input pixels (pixel edges)


def _strokes(label: int, rng, x0, y0, h, aspect):
    """Template strokes mapped to pixels: width aspect*h, height h, rotated, jittered."""
    rot, shear = math.radians(rng.uniform(-10, 10)), rng.uniform(-.2, .2)
    out = []
    for stroke in TEMPLATES[label]:
        pts = np.array(stroke) + rng.normal(0, .015, (len(stroke), 2))
        u, v = (pts[:, 0] - .5) * aspect, pts[:, 1] - .5
        u = u + shear * v
        x = x0 + h * (u * math.cos(rot) - v * math.sin(rot))
        y = y0 + h * (u * math.sin(rot) + v * math.cos(rot))
        out.append(list(zip(x, y)))
    return out


def _draw(mask: Image.Image, strokes, width: int) -> None:
    d = ImageDraw.Draw(mask)
    for s in strokes:
        d.line(s, fill=255, width=width, joint="curve")
        r = width / 2  # round caps, like a brush
        for x, y in (s[0], s[-1]):
            d.ellipse([x - r, y - r, x + r, y + r], fill=255)


def _ink_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask >= 128)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def _stroke_mask(size, label, rng, h_frac):
    w, hgt = size
    h = h_frac * min(w, hgt)
    aspect = rng.uniform(.55, .8)
    width = max(2, int(h * rng.uniform(.07, .16)))
    margin = width + 2
    between = lambda lo, hi: rng.uniform(lo, hi) if hi > lo else (lo + hi) / 2
    cx = between(aspect * h / 2 + margin, w - aspect * h / 2 - margin)
    cy = between(h / 2 + margin, hgt - h / 2 - margin)
    mask = Image.new("L", size, 0)
    _draw(mask, _strokes(label, rng, cx, cy, h, aspect), width)
    return mask


def drawn(label: int, rng) -> WildImage:
    mask = _stroke_mask((280, 280), label, rng, rng.uniform(.25, .8))
    if rng.random() < .5:   # transparent background, coloured ink
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        img = Image.new("RGBA", (280, 280), colour + (0,))
        img.putalpha(mask)
    else:                   # opaque black background, white ink
        img = Image.merge("RGBA", (mask, mask, mask, Image.new("L", (280, 280), 255)))
    return WildImage("drawn", label, img, _ink_box(np.asarray(mask)))


def photo(label: int, rng) -> WildImage:
    size = (int(rng.integers(640, 1400)), int(rng.integers(480, 1000)))
    mask = _stroke_mask(size, label, rng, rng.uniform(.15, .7))
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    light = 0.75 + 0.2 * (xx / w) * rng.uniform(-1, 1) + 0.15 * (yy / h) * rng.uniform(-1, 1)
    paper = np.clip(light[..., None] * np.array([1.0, .97, .92]) * 255, 0, 255)
    ink = np.array([20, 25, 60]) if rng.random() < .5 else np.array([25, 25, 25])
    alpha = (np.asarray(mask.filter(ImageFilter.GaussianBlur(1.2)), np.float32) / 255)[..., None]
    arr = paper * (1 - alpha) + ink * alpha + rng.normal(0, 6, (h, w, 1))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(60, 92)))
    return WildImage("photo", label, Image.open(io.BytesIO(buf.getvalue())), _ink_box(np.asarray(mask)))


def _fonts() -> list[str]:
    found = sorted(glob.glob("/usr/share/fonts/truetype/**/*.ttf", recursive=True))
    return [f for f in found if "Symbol" not in f][:12]


def typed(label: int, rng) -> WildImage:
    size = (int(rng.integers(120, 500)), int(rng.integers(120, 500)))
    fonts = _fonts()
    px = int(min(size) * rng.uniform(.3, .8))
    pick = int(rng.integers(0, len(fonts) + 1))
    font = (ImageFont.truetype(fonts[pick], px) if pick < len(fonts)
            else ImageFont.load_default(size=px))
    mask = Image.new("L", size, 0)
    d = ImageDraw.Draw(mask)
    l, t, r, b = d.textbbox((0, 0), str(label), font=font)
    x = rng.uniform(-l + 2, size[0] - r - 2) if size[0] - r - 2 > -l + 2 else -l
    y = rng.uniform(-t + 2, size[1] - b - 2) if size[1] - b - 2 > -t + 2 else -t
    d.text((x, y), str(label), fill=255, font=font)
    m = np.asarray(mask)
    img = Image.fromarray(255 - m if rng.random() < .6 else m, "L")  # mostly black on white
    return WildImage("typed", label, img, _ink_box(m))


def wild_set(per_kind: int = 300, seed: int = 0):
    """Yield ``per_kind`` images of each kind, labels cycling 0..9, reproducibly."""
    makers = {"drawn": drawn, "photo": photo, "typed": typed}
    for kind in KINDS:
        rng = np.random.default_rng([seed, KINDS.index(kind)])
        for i in range(per_kind):
            yield makers[kind](i % 10, rng)


def evaluate_wild(predictor, per_kind: int = 300, seed: int = 0) -> dict:
    """Accuracy and box IoU per kind through ``predictor.predict`` (the app's path)."""
    from locmnist.boxes import iou

    rows: dict[str, list] = {k: [] for k in KINDS}
    for item in wild_set(per_kind, seed):
        pred = predictor.predict(item.image)
        hit = pred.label == item.label
        rows[item.kind].append((hit, 0.0 if pred.box is None else float(iou(pred.box, item.box)),
                                pred.label is None))
    out: dict = {"set": "wild", "seed": seed, "by_kind": {}}
    every = [r for k in KINDS for r in rows[k]]
    for name, rs in [*rows.items(), ("all", every)]:
        a = np.array(rs, dtype=float).reshape(-1, 3)
        stats = {"n": len(rs), "accuracy": float(a[:, 0].mean()), "iou_mean": float(a[:, 1].mean()),
                 "iou_ge_0.5": float((a[:, 1] >= .5).mean()), "no_digit": float(a[:, 2].mean())}
        if name == "all":
            out.update(stats)
        else:
            out["by_kind"][name] = stats
    return out
