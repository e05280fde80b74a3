"""Digit styles MNIST lacks, and the settings of the seeded "styles" test split that
measures them (the split itself: ``locmnist.synthesis.styles_split``).

MNIST is the handwriting of about 500 American writers. Writers elsewhere form
some digits differently: a 1 with a long flag and a foot, a crossed 7, a Z-like
2 (crossed or not), open and closed 4s, 9s with a straight or a curled tail. On
real handwriting, these are what a model trained on MNIST alone misreads.

Each variant is drawn from a stroke template of its digit with random pen
dynamics (point jitter, slant, aspect, pen width), and normalized as MNIST's
digits are: ink fitted in a 20x20 box centred in 28x28, uint8. So a variant
goes through the same synthesis as an MNIST digit (scale, rotation, thickness,
elastic distortion, placement), and its box is the tight box of its rendered
ink, like every other canvas's.

Seeds: the training variants and the test split's variants come from separate
generator streams (``SPLIT_STREAMS``), and the split's canvases from their own
seed, so no test variant is ever a training variant.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from locmnist.config import Config

STYLES = {                      # style name -> the digit it is
    "flag_foot_1": 1,           # a long flag, and (mostly) a foot
    "crossed_7": 7,
    "crossed_2": 2,             # Z-like, crossed or not, flat or curved top
    "open_4": 4,
    "closed_4": 4,
    "straight_9": 9,
    "curled_9": 9,
}
SPLIT_STREAMS = {"train": 1, "test": 2}  # generator streams: training and test never share one
STYLES_TEST_SEED = 20_251_128            # canvases of the styles split
TEST_VARIANTS = 3_500                    # 500 of each style in the styles split
SUPERSAMPLE = 4
# The styles split's synthesis: aspect ratios outside MNIST's normalization (+-40%),
# elastic distortion and wider pens, on top of the standard split's settings.
STYLES_SPLIT_CONFIG = dict(aspect_jitter=0.4, elastic=1.5, wide_pens=0.15)


def _arc(cx, cy, rx, ry, a0, a1, n=14):
    """Points along an ellipse from angle a0 to a1 (radians; y grows downwards)."""
    a = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _line(*points):
    return np.asarray(points, dtype=np.float64)


def _template(style: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The strokes of one instance of ``style``: (k, 2) point arrays in a unit box."""
    u = rng.uniform
    if style == "flag_foot_1":
        top = np.array([u(0.45, 0.6), 0.0])
        flag = top + [-u(0.25, 0.45), u(0.15, 0.4)]               # long, down to the left
        bottom = np.array([top[0] + u(-0.05, 0.05), 1.0])
        strokes = [_line(flag, top, bottom)]
        if rng.random() < 0.75:
            half = u(0.18, 0.32)
            strokes.append(_line(bottom - [half, 0], bottom + [half, 0]))
        return strokes
    if style == "crossed_7":
        left, right = np.array([u(0.0, 0.15), u(0.0, 0.08)]), np.array([u(0.85, 1.0), 0.0])
        foot = np.array([u(0.25, 0.5), 1.0])
        mid = (right + foot) / 2 + [u(-0.06, 0.03), 0]
        strokes = [_line(left, right, mid, foot)]
        if rng.random() < 0.3:                                       # a small serif
            strokes[0] = np.vstack([left + [0, u(0.1, 0.18)], strokes[0]])
        y = u(0.45, 0.6)
        x = np.interp(y, [mid[1], foot[1]], [mid[0], foot[0]]) if y > mid[1] else mid[0]
        half = u(0.15, 0.25)
        strokes.append(_line([x - half, y + u(-0.03, 0.03)], [x + half, y + u(-0.03, 0.03)]))
        return strokes
    if style == "crossed_2":
        if rng.random() < 0.5:                                       # flat top, as a Z
            head = _line([u(0.0, 0.15), u(0.0, 0.08)], [u(0.85, 1.0), 0.0])
        else:                                                        # a curved top, as a 2
            head = _arc(0.5, u(0.2, 0.28), u(0.4, 0.48), u(0.2, 0.28), np.pi * 1.05,
                        np.pi * 2.05)
        base_l = np.array([u(0.0, 0.12), 1.0])
        strokes = [np.vstack([head, base_l, [u(0.85, 1.0), 1.0 - u(0, 0.05)]])]
        if rng.random() < 0.7:
            y = u(0.45, 0.6)
            x = np.interp(y, [head[-1, 1], 1.0], [head[-1, 0], base_l[0]])
            half = u(0.15, 0.25)
            strokes.append(_line([x - half, y], [x + half, y]))
        return strokes
    if style == "open_4":
        bar_y, stem_x = u(0.55, 0.7), u(0.65, 0.8)
        if rng.random() < 0.5:   # the left stroke comes down steeply and stops short of the stem
            left = _line([u(0.1, 0.3), 0.0], [u(0.0, 0.12), bar_y], [1.0, bar_y + u(-0.04, 0.04)])
        else:                    # a slanted stroke that never meets the stem's top
            left = _line([u(0.4, 0.55), 0.0], [0.0, bar_y], [1.0, bar_y + u(-0.04, 0.04)])
        return [left, _line([stem_x, u(0.0, 0.25)], [stem_x + u(-0.05, 0.05), 1.0])]
    if style == "closed_4":
        bar_y, apex = u(0.55, 0.7), np.array([u(0.6, 0.75), 0.0])
        return [_line(apex, [0.0, bar_y], [1.0, bar_y + u(-0.04, 0.04)]),
                _line(apex, [apex[0] + u(-0.05, 0.05), 1.0])]
    if style in ("straight_9", "curled_9"):
        cy, ry, rx = u(0.22, 0.3), u(0.2, 0.3), u(0.3, 0.42)
        cx = 0.45
        start = u(-0.3, 0.2)
        loop = _arc(cx, cy, rx, ry, start, start - 2 * np.pi, n=24)  # drawn anticlockwise
        right = np.array([cx + rx, cy])
        if style == "straight_9":
            tail = _line(right, [right[0] - u(0.0, 0.2), 1.0])
        else:
            bottom_x = right[0] - u(0.0, 0.08)
            tail = np.vstack([_line(right, [bottom_x, 0.75]),
                              _arc(bottom_x - 0.2, 0.78, 0.2, u(0.15, 0.22), 0.0,
                                   np.pi * u(0.6, 0.95))])
        return [loop, tail]
    raise ValueError(f"unknown style {style!r}; choose from {tuple(STYLES)}")


def render(style: str, rng: np.random.Generator) -> np.ndarray:
    """One variant of ``style`` as a (28, 28) uint8 image, normalized as MNIST's are."""
    strokes = _template(style, rng)
    pts = np.vstack(strokes)
    # Pen dynamics: jitter every point, slant, squeeze or stretch.
    slant, aspect = rng.uniform(-0.15, 0.45), rng.uniform(0.75, 1.25)
    out = []
    for s in strokes:
        s = s + rng.normal(0, 0.025, s.shape)
        s = np.stack([(s[:, 0] + slant * (0.5 - s[:, 1])) * aspect, s[:, 1]], axis=1)
        out.append(s)
    pts = np.vstack(out)
    lo, hi = pts.min(0), pts.max(0)
    pen = rng.uniform(1.2, 3.2)                                      # px on the 28x28 image
    side = 20.0 - pen                                                # ink fits 20x20, as MNIST
    k = side / max(hi[0] - lo[0], hi[1] - lo[1], 1e-6)
    offset = 14.0 - k * (lo + hi) / 2
    s_ = SUPERSAMPLE
    img = Image.new("L", (28 * s_, 28 * s_), 0)
    draw = ImageDraw.Draw(img)
    w = pen * s_
    for s in out:
        p = (s * k + offset) * s_
        xy = [tuple(q) for q in p]
        draw.line(xy, fill=255, width=max(1, int(round(w))), joint="curve")
        for q in (p[0], p[-1]):                                      # round pen ends
            draw.ellipse([q[0] - w / 2, q[1] - w / 2, q[0] + w / 2, q[1] + w / 2], fill=255)
    return np.asarray(img.resize((28, 28), Image.BOX), dtype=np.uint8)


def variants(n: int, seed: int = 0, split: str = "train"):
    """``n`` variants, styles in turn: (images (n, 28, 28) uint8, labels (n,) uint8,
    style names (n,)). ``split`` picks the generator stream ("train" or "test")."""
    rng = np.random.default_rng([SPLIT_STREAMS[split], seed])
    names = list(STYLES)
    kinds = np.array([names[i % len(names)] for i in range(n)])
    images = np.stack([render(k, rng) for k in kinds]) if n else np.zeros((0, 28, 28), np.uint8)
    labels = np.array([STYLES[k] for k in kinds], dtype=np.uint8)
    return images, labels, kinds


def styles_split_config() -> Config:
    return Config(data="standard", **STYLES_SPLIT_CONFIG)
