"""Canvases with no digit on them: what the model must learn to answer "not a digit".

``negatives(n, seed, size=(75, 75))`` returns (n, h, w) float32 canvases in 0..1,
ink = 1, the convention of the digit canvases (``locmnist.synthesis``) and of
the model input after ``locmnist.preprocess.prepare``. A (seed, batch index)
pair always gives the same canvases, as for the digit synthesis. Kinds:

* ``font_letter``: letters and short words in the machine's fonts (``fc-list``);
  fonts are split by a fixed rule into training and held-out test fonts;
* ``stroke_letter``: letters drawn as strokes, like a mouse or a pen would;
* ``shape``: stars, arrows, houses, hearts, grids, smileys, targets, polygons...;
* ``scribble``: random tangled pen strokes and hatching;
* ``texture``: gratings, checkerboards, dot patterns, blobs;
* ``noise``: strong random noise, raw or contrast-stretched as ``prepare`` would;
* ``blank``: empty paper: faint grain and shading, sometimes exactly zero.

Glyphs a person could take for a digit are left out (O, I, l, S, Z, b, g, q,
...), and so is a plain circle (a 0): training the model to reject them would
teach it to reject real digits. Drawn kinds are 15..70 px tall like the digits,
rotated and sheared slightly, and placed anywhere on the canvas.

The drawn kinds share their renderer with ``styled_digits``: digits drawn as
strokes and typed in the same fonts, mixed into training as *positives*. Without
them a model learns the shortcut "rendered strokes or a font = not a digit"
(measured: it then refused 60% of the wild set's drawn, photographed and typed
digits); with them only the shape tells a digit from a letter or a star. Their
stroke templates are our own, not the wild set's (``locmnist.wild``).

Drawing uses Pillow in C (2x supersampled, box-filtered down, so edges are soft
like MNIST's); per canvas only the geometry is Python. Noise, texture and blank
canvases are numpy over the whole batch. Several thousand canvases a second on
one core: cheap next to a training step.
"""
from __future__ import annotations

import functools
import glob
import math
import subprocess

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont

KINDS = ("font_letter", "stroke_letter", "shape", "scribble", "texture", "noise", "blank")
# Share of each kind in a batch: mostly the things people actually draw or type.
WEIGHTS = (0.22, 0.18, 0.22, 0.14, 0.09, 0.09, 0.06)
TEST_SEED = 31_415_926       # the fixed negative test split (training never uses it)
TEST_SIZE = 2_100            # 300 canvases of each kind
HEIGHTS = (15.0, 70.0)       # ink height range in canvas pixels, as for the digits
SUPERSAMPLE = 2

# Letters that are no digit in anyone's handwriting. Left out: O o Q D (0), I l i j |
# (1), Z z (2), S s (5), G b (6), B (8), g q (9), and the glyphs fonts draw as digits.
LETTERS = "ACEFHKLMNPRTUVWXYacdefhkmnprtuvwxy"
WORD_LETTERS = LETTERS + "ao"  # inside a word, round letters are not digits either


def _unit(points) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


def _arc(cx, cy, rx, ry, a0, a1, n=16):
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


# Letters as strokes: each a list of polylines in a unit box, y down.
STROKE_LETTERS = {
    "A": [[(0, 1), (.5, 0), (1, 1)], [(.22, .6), (.78, .6)]],
    "E": [[(1, 0), (0, 0), (0, 1), (1, 1)], [(0, .5), (.75, .5)]],
    "F": [[(1, 0), (0, 0), (0, 1)], [(0, .48), (.75, .48)]],
    "H": [[(0, 0), (0, 1)], [(1, 0), (1, 1)], [(0, .5), (1, .5)]],
    "K": [[(0, 0), (0, 1)], [(1, 0), (0, .55)], [(.3, .38), (1, 1)]],
    "L": [[(0, 0), (0, 1), (.85, 1)]],
    "M": [[(0, 1), (0, 0), (.5, .6), (1, 0), (1, 1)]],
    "N": [[(0, 1), (0, 0), (1, 1), (1, 0)]],
    "P": [[(0, 1), (0, 0)], _arc(0, .26, .8, .26, -90, 90)],
    "R": [[(0, 1), (0, 0)], _arc(0, .25, .8, .25, -90, 90), [(.3, .5), (1, 1)]],
    "T": [[(0, 0), (1, 0)], [(.5, 0), (.5, 1)]],
    "U": [[(0, 0), (0, .6)], _arc(.5, .6, .5, .4, 180, 0)[::-1], [(1, .6), (1, 0)]],
    "V": [[(0, 0), (.5, 1), (1, 0)]],
    "W": [[(0, 0), (.25, 1), (.5, .35), (.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (.5, .5), (1, 0)], [(.5, .5), (.5, 1)]],
    "C": [_arc(.55, .5, .5, .5, 45, 315, 20)],
    "e": [[(0, .55), (1, .55)] + _arc(.5, .55, .5, .45, 0, -300, 20)[1:].tolist()],
    "h": [[(0, 0), (0, 1)], [(0, .65)] + _arc(.5, .65, .5, .3, 180, 360, 10).tolist() + [(1, 1)]],
    "n": [[(0, .3), (0, 1)], [(0, .6)] + _arc(.5, .6, .5, .3, 180, 360, 10).tolist() + [(1, 1)]],
    "m": [[(0, .3), (0, 1)], _arc(.25, .6, .25, .3, 180, 360, 8).tolist() + [(.5, 1)],
          _arc(.75, .6, .25, .3, 180, 360, 8).tolist() + [(1, 1)]],
    "r": [[(0, .3), (0, 1)], [(0, .7), (.3, .4), (.9, .35)]],
    "w": [[(0, .3), (.25, 1), (.5, .5), (.75, 1), (1, .3)]],
    "k": [[(0, 0), (0, 1)], [(.9, .35), (0, .72)], [(.3, .6), (1, 1)]],
    "x": [[(0, .3), (1, 1)], [(1, .3), (0, 1)]],
    "a": [_arc(.45, .68, .45, .32, 0, 360, 20), [(.9, .35), (.9, 1)]],
}


# Digits as strokes for ``styled_digits``: several ways to write each (unit box, y down).
DIGIT_STROKES = {
    0: [[_arc(.5, .5, .5, .5, -100, 275, 28)]],
    1: [[[(.5, 0), (.5, 1)]], [[(.2, .22), (.55, 0), (.55, 1)]],
        [[(.25, .2), (.55, 0), (.55, 1)], [(.25, 1), (.85, 1)]]],
    2: [[_arc(.5, .27, .45, .27, 190, 370, 12).tolist() + [(0, 1), (1, 1)]],
        [_arc(.5, .3, .45, .3, 170, 390, 12).tolist() + [(.1, 1), (.3, .85), (1, .97)]]],
    3: [[_arc(.5, .25, .42, .25, -170, 90, 14), _arc(.5, .73, .47, .27, -90, 165, 14)],
        [[(.05, 0), (.9, 0), (.4, .4)], _arc(.5, .7, .45, .3, -100, 160, 14)]],
    4: [[[(.7, 1), (.7, 0), (0, .68), (1, .68)]], [[(.15, 0), (.05, .6), (.95, .6)], [(.7, .1), (.7, 1)]]],
    5: [[[(.9, 0), (.2, 0), (.12, .45)], _arc(.5, .68, .45, .32, -150, 150, 14)],
        [[(.2, 0), (.12, .45)], [(.2, 0), (.9, 0)], _arc(.48, .7, .45, .3, -160, 140, 14)]],
    6: [[[(.75, 0), (.25, .4)] + _arc(.5, .7, .38, .3, 200, 560, 24)[1:].tolist()]],
    7: [[[(0, 0), (1, 0), (.35, 1)]], [[(0, 0), (1, 0), (.4, 1)], [(.3, .5), (.85, .5)]]],
    8: [[_arc(.5, .25, .33, .25, 0, 360, 20), _arc(.5, .73, .4, .27, 0, 360, 22)]],
    9: [[_arc(.5, .3, .42, .3, 0, 360, 22), [(.92, .3), (.82, 1)]],
        [_arc(.48, .28, .4, .28, 10, 370, 22), _arc(.1, .3, .82, .7, 0, 80, 10)]],
}


def _star(points=5, inner=.42):
    t = np.pi / points * np.arange(2 * points + 1) - np.pi / 2
    r = np.where(np.arange(2 * points + 1) % 2 == 0, .5, .5 * inner)
    return np.stack([.5 + r * np.cos(t), .5 + r * np.sin(t)], 1)


def _polygon(k):
    t = 2 * np.pi * np.arange(k + 1) / k - np.pi / 2
    return np.stack([.5 + .5 * np.cos(t), .5 + .5 * np.sin(t)], 1)


def _heart():
    t = np.linspace(0, 2 * np.pi, 40)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([(x + 17) / 34, (y + 17) / 30], 1)


def _spiral(turns=2.5):
    t = np.linspace(0, turns * 2 * np.pi, int(24 * turns))
    r = .5 * t / t[-1]
    return np.stack([.5 + r * np.cos(t), .5 + r * np.sin(t)], 1)


# Shapes: (polylines, filled polygon or None, aspect range, may rotate fully).
SHAPES = {
    "star": ([_star()], _star(), (.9, 1.1), True),
    "star6": ([_star(6, .55)], None, (.9, 1.1), True),
    "arrow": ([[(0, .5), (1, .5)], [(.65, .2), (1, .5), (.65, .8)]], None, (1.2, 2.0), True),
    "house": ([[(0, .45), (0, 1), (1, 1), (1, .45), (.5, 0), (0, .45), (1, .45)],
               [(.4, 1), (.4, .7), (.6, .7), (.6, 1)]], None, (.8, 1.2), False),
    "heart": ([_heart()], _heart(), (.9, 1.2), False),
    "grid": ([[(.33, 0), (.33, 1)], [(.67, 0), (.67, 1)], [(0, .33), (1, .33)],
              [(0, .67), (1, .67)]], None, (.8, 1.2), True),
    "box_grid": ([[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], [(.5, 0), (.5, 1)], [(0, .5), (1, .5)]],
                 None, (.8, 1.3), False),
    "smiley": ([_arc(.5, .5, .5, .5, 0, 360, 32), _arc(.5, .55, .28, .22, 20, 160, 10),
                _arc(.33, .35, .05, .05, 0, 360, 8), _arc(.67, .35, .05, .05, 0, 360, 8)],
               None, (.9, 1.1), False),
    "target": ([_arc(.5, .5, .5, .5, 0, 360, 32), _arc(.5, .5, .25, .25, 0, 360, 20)],
               None, (.9, 1.1), False),
    "circle_x": ([_arc(.5, .5, .5, .5, 0, 360, 32), [(.15, .15), (.85, .85)], [(.85, .15), (.15, .85)]],
                 None, (.9, 1.1), False),
    "sun": ([_arc(.5, .5, .25, .25, 0, 360, 20)] + [
        [(.5 + .33 * math.cos(a), .5 + .33 * math.sin(a)), (.5 + .5 * math.cos(a), .5 + .5 * math.sin(a))]
        for a in np.linspace(0, 2 * np.pi, 9)[:-1]], None, (.9, 1.1), True),
    "triangle": ([_polygon(3)], _polygon(3), (.9, 1.3), True),
    "square": ([_unit([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)])],
               _unit([(0, 0), (1, 0), (1, 1), (0, 1)]), (.7, 1.4), True),
    "diamond": ([_polygon(4)], _polygon(4), (.6, 1.0), False),
    "hexagon": ([_polygon(6)], _polygon(6), (.9, 1.1), True),
    "spiral": ([_spiral()], None, (.9, 1.1), True),
    "wave": ([np.stack([np.linspace(0, 1, 30), .5 + .4 * np.sin(np.linspace(0, 4 * np.pi, 30))], 1)],
             None, (1.5, 3.0), True),
    "zigzag": ([[(0, 1), (.2, 0), (.4, 1), (.6, 0), (.8, 1), (1, 0)]], None, (1.3, 2.5), True),
    "plus": ([[(.5, 0), (.5, 1)], [(0, .5), (1, .5)]], None, (.9, 1.1), True),
    "asterisk": ([[(.5, 0), (.5, 1)], [(.07, .25), (.93, .75)], [(.93, .25), (.07, .75)]],
                 None, (.9, 1.1), True),
    "hash": ([[(.35, 0), (.25, 1)], [(.75, 0), (.65, 1)], [(0, .33), (1, .33)], [(0, .67), (1, .67)]],
             None, (.9, 1.1), False),
    "check": ([[(0, .55), (.35, 1), (1, 0)]], None, (1.0, 1.4), False),
    "cloud": ([_arc(.25, .65, .25, .3, 90, 270, 10), _arc(.45, .4, .25, .3, 180, 340, 10),
               _arc(.75, .55, .25, .35, 250, 450, 12), [(.25, .95), (.75, .9)]], None, (1.3, 1.8), False),
}
SHAPE_NAMES = tuple(SHAPES)


# --- fonts -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """Every TrueType/OpenType font file on this machine (``fc-list``), sorted."""
    try:
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True,
                             text=True, timeout=20).stdout.split()
    except (OSError, subprocess.SubprocessError):
        out = []
    out += glob.glob("/usr/share/fonts/**/*.[ot]tf", recursive=True)
    return tuple(sorted({f for f in out if f.lower().endswith((".ttf", ".otf"))}))


def fonts_for(split: str) -> tuple[str, ...]:
    """Font files of ``split``: "test" holds every third file out; "train" the rest.

    "test" also gets Pillow's own built-in font (marked ``""``), so it is never empty.
    """
    if split not in ("train", "test"):
        raise ValueError(f"fonts must be 'train' or 'test', got {split!r}")
    files = font_files()
    held_out = tuple(f for i, f in enumerate(files) if i % 3 == 2)
    if split == "test":
        return held_out + ("",)
    train = tuple(f for f in files if f not in held_out)
    return train or ("",)  # a machine without fonts still renders letters


@functools.lru_cache(maxsize=64)
def _font(path: str, px: int = 96):
    try:
        return ImageFont.truetype(path, px) if path else ImageFont.load_default(size=px)
    except OSError:
        return ImageFont.load_default(size=px)


@functools.lru_cache(maxsize=4096)
def _glyph(path: str, text: str) -> Image.Image | None:
    """``text`` in the font at ``path``, white on black, cropped to its ink ("L")."""
    font = _font(path)
    l, t, r, b = font.getbbox(text)
    img = Image.new("L", (max(1, r - l) + 8, max(1, b - t) + 8), 0)
    ImageDraw.Draw(img).text((4 - l, 4 - t), text, fill=255, font=font)
    box = img.getbbox()
    return img.crop(box) if box else None


# --- placement ---------------------------------------------------------------

def _placement(rng, h, w, heights, aspect, rotation_deg, shear=0.2):
    """A random affine map from a unit box (y down) to canvas pixels: (A (2, 2), t (2,)).

    The unit box becomes ``aspect * height`` wide and ``height`` tall, rotated and
    sheared about its centre, then placed uniformly where it fits (1 px margin).
    """
    lo, hi = heights
    hi = min(hi, min(h, w) - 4.0)
    height = rng.uniform(min(lo, hi), hi)
    theta = math.radians(rng.uniform(-rotation_deg, rotation_deg))
    s = rng.uniform(-shear, shear)
    c, si = math.cos(theta), math.sin(theta)
    # Plain floats: numpy costs more than the arithmetic on 2x2 matrices.
    a00, a01 = c * aspect * height, (c * s - si) * height
    a10, a11 = si * aspect * height, (si * s + c) * height
    ext_x, ext_y = abs(a00) + abs(a01), abs(a10) + abs(a11)   # the unit box's extent
    fit = min(1.0, (w - 2.0) / (ext_x + 2.0), (h - 2.0) / (ext_y + 2.0))
    a00, a01, a10, a11, ext_x, ext_y = (v * fit for v in (a00, a01, a10, a11, ext_x, ext_y))
    cx = 1 + ext_x / 2 + rng.uniform() * max(0.0, w - 2 - ext_x)
    cy = 1 + ext_y / 2 + rng.uniform() * max(0.0, h - 2 - ext_y)
    a = np.array([[a00, a01], [a10, a11]])
    return a, np.array([cx - (a00 + a01) / 2, cy - (a10 + a11) / 2])


def _strokes(draw, polylines, a, t, width, rng, jitter=0.015):
    """Polylines (unit box) through (a, t), with a round brush ``width`` px wide (supersampled)."""
    k = SUPERSAMPLE
    for line in polylines:
        p = np.asarray(line, dtype=np.float64)
        p = p + rng.normal(0, jitter, p.shape)
        xy = (p @ a.T + t) * k
        pts = [tuple(v) for v in xy]
        wk = max(1, int(round(width * k)))
        if len(pts) > 1:
            draw.line(pts, fill=255, width=wk, joint="curve")
        r = wk / 2
        for x, y in (pts[0], pts[-1]):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)


def _brush(rng, height_px):
    return max(1.2, rng.uniform(0.06, 0.17) * height_px)


# --- drawn kinds ---------------------------------------------------------------

def _draw_stroke_letter(draw, rng, h, w, heights):
    name = rng.choice(list(STROKE_LETTERS))
    a, t = _placement(rng, h, w, heights, rng.uniform(.55, .95), 12)
    _strokes(draw, STROKE_LETTERS[name], a, t, _brush(rng, abs(a[1, 1])), rng)


def _draw_shape(draw, rng, h, w, heights):
    lines, fill, (lo, hi), spins = SHAPES[SHAPE_NAMES[rng.integers(len(SHAPE_NAMES))]]
    a, t = _placement(rng, h, w, heights, rng.uniform(lo, hi), 180 if spins else 12)
    if fill is not None and rng.uniform() < 0.3:
        draw.polygon([tuple(v) for v in (np.asarray(fill) @ a.T + t) * SUPERSAMPLE], fill=255)
    else:
        _strokes(draw, lines, a, t, _brush(rng, float(np.abs(a).sum(1).max())) * .7, rng, .01)


def _draw_scribble(draw, rng, h, w, heights):
    a, t = _placement(rng, h, w, heights, rng.uniform(.6, 1.6), 180)
    width = _brush(rng, float(np.abs(a).sum(1).max())) * .6
    if rng.uniform() < 0.25:  # hatching: back and forth strokes
        n = int(rng.integers(5, 12))
        ys = np.linspace(0, 1, n)
        xs = np.where(np.arange(n) % 2 == 0, 0.0, 1.0)
        _strokes(draw, [np.stack([xs, ys], 1)], a, t, width, rng, .04)
        return
    for _ in range(int(rng.integers(1, 3))):
        # Long, sharply turning walks: a tangle, not a stroke that could pass for a digit.
        n = int(rng.integers(40, 90))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, .9, n))
        p = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1), axis=0)
        p = (p - p.min(0)) / np.maximum(np.ptp(p, axis=0), 1e-6)  # into the unit box
        _strokes(draw, [p], a, t, width, rng, 0.0)


def _draw_stroke_digit(draw, rng, h, w, heights, label):
    variants = DIGIT_STROKES[label]
    a, t = _placement(rng, h, w, heights, rng.uniform(.5, .8), 12)
    _strokes(draw, variants[rng.integers(len(variants))], a, t, _brush(rng, abs(a[1, 1])), rng)


def _draw_font_letter(img, rng, h, w, heights, fonts, text=None):
    if text is not None:
        pass
    elif rng.uniform() < 0.25:  # a short word
        text = "".join(rng.choice(list(WORD_LETTERS), int(rng.integers(2, 5))))
    else:
        text = str(rng.choice(list(LETTERS)))
    glyph = _glyph(str(fonts[rng.integers(len(fonts))]), text)
    if glyph is None:
        return
    gw, gh = glyph.size
    a, t = _placement(rng, h, w, heights, gw / gh, 12)
    k = SUPERSAMPLE
    # Supersampled canvas point X -> glyph point q = M (X / k - t), M the inverse of
    # a @ diag(1/gw, 1/gh) (Pillow maps continuous coordinates, pixel centres at +0.5).
    f = a @ np.diag([1 / gw, 1 / gh])
    m = np.array([[f[1, 1], -f[0, 1]], [-f[1, 0], f[0, 0]]]) / (f[0, 0] * f[1, 1] - f[0, 1] * f[1, 0])
    off = -m @ t
    data = (m[0, 0] / k, m[0, 1] / k, off[0], m[1, 0] / k, m[1, 1] / k, off[1])
    placed = glyph.transform(img.size, Image.AFFINE, data, resample=Image.BILINEAR)
    img.paste(ImageChops.lighter(img, placed) if img.getbbox() else placed)


def _drawn(kind, rng, h, w, heights, fonts, label=None) -> np.ndarray:
    k = SUPERSAMPLE
    img = Image.new("L", (w * k, h * k), 0)
    # Sometimes two things on one canvas; a styled digit is always alone.
    items = 1 if label is not None or rng.uniform() < 0.85 else 2
    for _ in range(items):
        if label is not None and kind == "font_letter":
            _draw_font_letter(img, rng, h, w, heights, fonts, text=str(label))
        elif label is not None:
            _draw_stroke_digit(ImageDraw.Draw(img), rng, h, w, heights, label)
        elif kind == "font_letter":
            _draw_font_letter(img, rng, h, w, heights, fonts)
        else:
            draw = ImageDraw.Draw(img)
            {"stroke_letter": _draw_stroke_letter, "shape": _draw_shape,
             "scribble": _draw_scribble}[kind](draw, rng, h, w, heights)
    out = np.asarray(img.resize((w, h), Image.BOX), dtype=np.float32) / 255.0
    peak = out.max()
    return out / peak if peak > 0 else out  # ink peaks at 1, as after ``prepare``


# --- batched kinds -------------------------------------------------------------

def _smooth(rng, m, h, w, cells):
    """(m, h, w) smooth random fields in 0..1: bilinear upsampling of a coarse grid."""
    g = rng.uniform(0, 1, (m, cells + 1, cells + 1))
    ys, xs = np.linspace(0, cells, h), np.linspace(0, cells, w)
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = g[:, y0][:, :, x0] * (1 - fx) + g[:, y0][:, :, x0 + 1] * fx
    bot = g[:, y0 + 1][:, :, x0] * (1 - fx) + g[:, y0 + 1][:, :, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def _noise(rng, m, h, w) -> np.ndarray:
    style = rng.integers(0, 5, m)[:, None, None]
    uniform = rng.uniform(0, 1, (m, h, w))
    gauss = np.clip(rng.normal(rng.uniform(.2, .6, (m, 1, 1)), rng.uniform(.1, .4, (m, 1, 1)),
                               (m, h, w)), 0, 1)
    salt = (rng.uniform(0, 1, (m, h, w)) < rng.uniform(.03, .35, (m, 1, 1))).astype(np.float64)
    lo = rng.uniform(.4, .85, (m, 1, 1))  # as prepare's contrast stretch leaves strong noise
    stretched = np.clip((uniform - lo) / (1 - lo), 0, 1)
    patchy = uniform * (_smooth(rng, m, h, w, 4) > rng.uniform(.3, .7, (m, 1, 1)))
    out = np.select([style == 0, style == 1, style == 2, style == 3], [uniform, gauss, salt, stretched],
                    patchy)
    return out


def _texture(rng, m, h, w) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    style = rng.integers(0, 5, m)
    out = np.zeros((m, h, w))
    for s in range(5):
        idx = np.flatnonzero(style == s)
        if not len(idx):
            continue
        k = len(idx)
        theta = rng.uniform(0, np.pi, (k, 1, 1))
        period = rng.uniform(4, 16, (k, 1, 1))
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        if s <= 1:    # a sine grating, smooth or as hard lines
            g = .5 + .5 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi, (k, 1, 1)))
            out[idx] = g if s == 0 else g > rng.uniform(.6, .9, (k, 1, 1))
        elif s == 2:  # a checkerboard
            out[idx] = (np.floor(u / period) + np.floor(v / period)) % 2
        elif s == 3:  # a dot pattern
            out[idx] = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period) > .7
        else:         # random blobs
            out[idx] = _smooth(rng, k, h, w, int(rng.integers(4, 10))) > rng.uniform(.55, .75, (k, 1, 1))
    return out


def _blank(rng, m, h, w) -> np.ndarray:
    shade = _smooth(rng, m, h, w, 3) * rng.uniform(0, .08, (m, 1, 1))
    grain = rng.uniform(0, 1, (m, h, w)) * rng.uniform(0, .06, (m, 1, 1))
    zero = rng.uniform(0, 1, (m, 1, 1)) < .2   # an untouched canvas
    return np.where(zero, 0.0, np.clip(shade + grain, 0, 1))


# --- public --------------------------------------------------------------------

def negatives(n: int, seed, size: tuple[int, int] = (75, 75), fonts: str = "train",
              kinds: tuple[str, ...] = KINDS, weights: tuple[float, ...] | None = None,
              heights: tuple[float, float] = HEIGHTS, return_kinds: bool = False):
    """``n`` canvases without a digit: float32 (n, h, w) in 0..1, ink = 1.

    ``seed``: an int or a sequence of ints, e.g. (seed, batch index) as the digit
    synthesis takes; the same seed always gives the same canvases. ``fonts``:
    "train" or "test" (held-out fonts, for the negative test split). ``kinds`` and
    ``weights`` choose the mix (default: ``KINDS`` at ``WEIGHTS``). With
    ``return_kinds`` also returns each canvas's index into ``kinds`` (n,).
    """
    h, w = (int(v) for v in size)
    if n < 0 or h < 8 or w < 8:
        raise ValueError(f"need n >= 0 and a canvas of at least 8x8, got n={n}, size={size}")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {KINDS}")
    if weights is None:
        weights = tuple(WEIGHTS[KINDS.index(k)] for k in kinds)
    p = np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    which = rng.choice(len(kinds), size=n, p=p / p.sum())
    font_list = fonts_for(fonts)
    out = np.zeros((n, h, w), np.float32)
    for i, kind in enumerate(kinds):
        idx = np.flatnonzero(which == i)
        if not len(idx):
            continue
        if kind in ("noise", "texture", "blank"):
            make = {"noise": _noise, "texture": _texture, "blank": _blank}[kind]
            out[idx] = make(rng, len(idx), h, w)
        else:
            for j in idx:
                out[j] = _drawn(kind, rng, h, w, heights, font_list)
    return (out, which) if return_kinds else out


def styled_digits(n: int, seed, size: tuple[int, int] = (75, 75), fonts: str = "train",
                  heights: tuple[float, float] = HEIGHTS):
    """``n`` digits rendered like the drawn negatives: half as strokes, half typed.

    Returns (canvases float32 (n, h, w) in 0..1, labels int64 (n,), tight ink boxes
    (n, 4) normalized, see ``locmnist.boxes``). Seeded like ``negatives``.
    """
    from locmnist.boxes import INK_THRESHOLD

    h, w = (int(v) for v in size)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    typed = rng.uniform(0, 1, n) < 0.5
    font_list = fonts_for(fonts)
    canvases = np.zeros((n, h, w), np.float32)
    boxes = np.zeros((n, 4), np.float32)
    for i in range(n):
        canvases[i] = _drawn("font_letter" if typed[i] else "stroke", rng, h, w, heights,
                             font_list, label=int(labels[i]))
        ink = canvases[i] >= INK_THRESHOLD
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        if rows.size:
            boxes[i] = (cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h)
    return canvases, labels.astype(np.int64), boxes


@functools.lru_cache(maxsize=1)
def _test_split():
    per_kind = TEST_SIZE // len(KINDS)
    parts = [negatives(per_kind, (TEST_SEED, i), fonts="test", kinds=(kind,))
             for i, kind in enumerate(KINDS)]
    canvases = np.rint(np.concatenate(parts) * 255).astype(np.uint8)[..., None]
    kinds = np.repeat(np.arange(len(KINDS)), per_kind)
    for a in (canvases, kinds):
        a.setflags(write=False)
    return canvases, kinds


def negative_test_split():
    """The fixed negative test split: (canvases uint8 (2100, 75, 75, 1), kind index (2100,)).

    300 canvases of each kind in ``KINDS``, from a seed training never uses and,
    for letters, from the held-out test fonts. Stored as uint8 like the digit
    test split (``locmnist.synthesis.test_split``).
    """
    return _test_split()
