"""Multi-digit scenes: MNIST digits written as numbers or scattered, with tight ink boxes.

A scene is a (H, W) float32 canvas in 0..1 (ink = 1) holding 0 to ``max_digits``
digits and, for each, its label and its tight ink box in pixel edges
(``locmnist.boxes``). Each digit gets the single-digit task's augmentation:
thinned or thickened strokes, an ink height in [min_height, max_height],
rotation and shear. Digits are pasted with ``max``, so each box stays the tight
box of that digit's own ink even where neighbours touch. Three kinds:

* ``row``: a number: similar heights (+-10%), small gaps (slight overlap allowed),
  a wobbling baseline;
* ``scatter``: digits anywhere, of any size, overlapping lightly at most;
* ``negative``: no digit: strokes that are not digits, or a blank canvas.

Everything is seeded: ``scene_batch(..., seed, batch_index)`` always gives the
same canvases. Rendering is PIL's affine warp per digit (about 0.1 ms), far
faster than the detector consumes scenes.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from locmnist.boxes import tight_box
from locmnist.detector_config import DetectorConfig

KINDS = ("row", "scatter", "negative")
# Digits per canvas in a row: numbers of 2-5 digits are the common case.
ROW_DIGIT_WEIGHTS = (0.08, 0.22, 0.22, 0.2, 0.16, 0.12)
MAX_OVERLAP = 0.12       # scattered digits: intersection / smaller box area at most this
TEST_SEED = 20_261_010   # the one fixed seed of the published detection test split
TEST_CANVAS = (112, 160)  # (height, width) of the test split's canvases
# The validation split for fitting the reader's settings: its own seeds, never TEST_SEED.
VALIDATION_SEEDS = (4_242, 4_243, 4_244, 4_245)


@dataclass(frozen=True)
class Scene:
    canvas: np.ndarray   # (H, W) float32 in 0..1, ink = 1
    boxes: np.ndarray    # (n, 4) float32 pixel-edge (xmin, ymin, xmax, ymax)
    labels: np.ndarray   # (n,) int64
    kind: str            # "row" | "scatter" | "negative" | "single"

    @property
    def text(self) -> str:
        """The digits read left to right (by box centre)."""
        order = np.argsort((self.boxes[:, 0] + self.boxes[:, 2]) if len(self.boxes) else [])
        return "".join(str(int(self.labels[i])) for i in order)


# --- one digit -------------------------------------------------------------------

def _thickness(x: np.ndarray, u: float) -> np.ndarray:
    """Thin / as is / thick / thicker, like the single-digit synthesis (x: (28, 28))."""
    if u < 0.2:
        return np.clip((x - 0.45) * 2.2, 0.0, 1.0)
    if u < 0.55:
        return x
    p = np.pad(x, 1)
    thick = np.maximum.reduce([p[1:-1, 1:-1], p[2:, 1:-1], p[1:-1, 2:], p[2:, 2:]])  # +1 px
    if u < 0.85:
        return thick
    return np.maximum.reduce([p[i:i + 28, j:j + 28] for i in range(3) for j in range(3)])


def render_digit(digit: np.ndarray, height: float, rotation_deg: float = 0.0,
                 shear: float = 0.0, thickness: float = 0.4,
                 aspect: float = 1.0) -> np.ndarray | None:
    """A (28, 28) uint8 digit warped to ``height`` px of ink, cropped to its tight ink box.

    ``thickness`` in [0, 1) picks thin / as is / thick / thicker (see ``_thickness``);
    ``aspect`` multiplies the digit's width (before rotation and shear).
    Returns a (h, w) float32 patch whose pixels >= INK_THRESHOLD touch all four
    edges, or None when no ink survives.
    """
    x = _thickness(np.asarray(digit, np.float32) / 255.0, thickness)
    src = tight_box(x)
    if src is None:
        return None
    sx0, sy0, sx1, sy1 = src
    scale = height / max(sy1 - sy0, 1.0)
    t = math.radians(rotation_deg)
    c, s = math.cos(t), math.sin(t)
    a = scale * np.array([[c, c * shear - s], [s, s * shear + c]]) @ np.diag([aspect, 1.0])
    corners = np.array([[sx0, sy0], [sx1, sy0], [sx0, sy1], [sx1, sy1]]) - [(sx0 + sx1) / 2,
                                                                           (sy0 + sy1) / 2]
    ext = np.abs(corners @ a.T).max(axis=0) + 2 * scale + 2           # half-extent + blur
    w, h = int(math.ceil(2 * ext[0])), int(math.ceil(2 * ext[1]))
    inv = np.linalg.inv(a)
    # PIL maps output edge coordinates to input ones: in = inv @ (out - centre_out) + centre_in.
    cx_in, cy_in = (sx0 + sx1) / 2, (sy0 + sy1) / 2
    off = np.array([cx_in, cy_in]) - inv @ np.array([w / 2, h / 2])
    data = (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])
    out = np.asarray(Image.fromarray(x, mode="F").transform(
        (w, h), Image.AFFINE, data=data, resample=Image.BILINEAR), dtype=np.float32)
    box = tight_box(out)
    if box is None:
        return None
    x0, y0, x1, y1 = (int(v) for v in box)
    return np.clip(out[y0:y1, x0:x1], 0.0, 1.0)


# --- scenes ----------------------------------------------------------------------

def _draw_params(rng: np.random.Generator, cfg: DetectorConfig) -> tuple[float, ...]:
    """render_digit's (rotation, shear, thickness, aspect) for one digit. Without aspect
    jitter no number is drawn for it: the published splits' scenes stay as they were."""
    params = (rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg),
              rng.uniform(-cfg.max_shear, cfg.max_shear),
              rng.uniform() if cfg.thickness else 0.4)
    j = cfg.aspect_jitter
    return (*params, rng.uniform(1 - j, 1 + j) if j > 0 else 1.0)


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    h, w = patch.shape
    np.maximum(canvas[y:y + h, x:x + w], patch, out=canvas[y:y + h, x:x + w])


def row_scene(rng, digits, labels, cfg: DetectorConfig, size) -> Scene:
    """Digits written left to right like a number (see module docstring)."""
    hgt, wid = size
    n = len(digits)
    params = [_draw_params(rng, cfg) for _ in range(n)]
    hi = max(cfg.min_height, min(cfg.max_height, hgt - 8, (wid - 8) / (0.8 * n)))
    h0 = rng.uniform(cfg.min_height, hi)
    heights = h0 * rng.uniform(0.9, 1.1, n)
    gaps = h0 * rng.uniform(-0.06, 0.3, max(0, n - 1))
    for _ in range(3):  # shrink the whole row until it fits the canvas
        patches = [render_digit(d, hh, *p) for d, hh, p in zip(digits, heights, params)]
        keep = [i for i, p in enumerate(patches) if p is not None]
        total = sum(patches[i].shape[1] for i in keep) + gaps[:max(0, len(keep) - 1)].sum()
        tallest = max((patches[i].shape[0] for i in keep), default=0)
        wobble = 0.07 * h0
        fit = min((wid - 4) / max(total, 1), (hgt - 4) / max(tallest + 2 * wobble, 1))
        if fit >= 1.0:
            break
        heights, gaps, h0 = heights * fit * 0.97, gaps * fit * 0.97, h0 * fit * 0.97
    canvas = np.zeros((hgt, wid), np.float32)
    boxes, out_labels = [], []
    x = rng.uniform(2, max(2, wid - 2 - total))
    yc = rng.uniform(2 + tallest / 2 + wobble, max(2 + tallest / 2 + wobble,
                                                  hgt - 2 - tallest / 2 - wobble))
    for k, i in enumerate(keep):
        p = patches[i]
        ph, pw = p.shape
        px = int(round(min(max(x, 0), wid - pw)))
        py = int(round(min(max(yc + rng.uniform(-wobble, wobble) - ph / 2, 0), hgt - ph)))
        if pw <= wid and ph <= hgt:
            _paste(canvas, p, px, py)
            boxes.append((px, py, px + pw, py + ph))
            out_labels.append(labels[i])
        x += pw + (gaps[k] if k < len(gaps) else 0)
    return Scene(canvas, np.array(boxes, np.float32).reshape(-1, 4),
                 np.array(out_labels, np.int64), "row")


def scatter_scene(rng, digits, labels, cfg: DetectorConfig, size, kind: str = "scatter") -> Scene:
    """Digits of any size anywhere, overlapping at most lightly."""
    hgt, wid = size
    n = len(digits)
    canvas = np.zeros((hgt, wid), np.float32)
    boxes, out_labels = [], []
    # More digits on a canvas leave less room each: cap heights so they can fit.
    cap = max(cfg.min_height, min(cfg.max_height, hgt - 4, 1.1 * math.sqrt(hgt * wid / n)))
    for d, lab in zip(digits, labels):
        params = _draw_params(rng, cfg)
        height = rng.uniform(cfg.min_height, cap)
        for _ in range(6):  # no room: a smaller digit, then another place
            p = render_digit(d, height, *params)
            if p is None or p.shape[0] > hgt or p.shape[1] > wid:
                height *= 0.8
                continue
            ph, pw = p.shape
            placed = False
            for _ in range(25):
                px, py = int(rng.integers(0, wid - pw + 1)), int(rng.integers(0, hgt - ph + 1))
                box = np.array([px, py, px + pw, py + ph], np.float32)
                if all(_overlap(box, b) <= MAX_OVERLAP for b in boxes):
                    _paste(canvas, p, px, py)
                    boxes.append(box)
                    out_labels.append(lab)
                    placed = True
                    break
            if placed:
                break
            height *= 0.8
    return Scene(canvas, np.array(boxes, np.float32).reshape(-1, 4),
                 np.array(out_labels, np.int64), kind)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1e-6)


def negative_scenes(n: int, seed, size, fonts: str = "train") -> list[Scene]:
    """``n`` canvases with no digit, from ``locmnist.negatives`` (the shared generator)."""
    from locmnist.negatives import negatives

    canvases = negatives(n, seed, size=size, fonts=fonts) if n else []
    return [Scene(np.asarray(c, np.float32), np.zeros((0, 4), np.float32),
                  np.zeros((0,), np.int64), "negative") for c in canvases]


def random_scene(rng, images, labels, cfg: DetectorConfig, size=None) -> Scene | None:
    """One training scene drawn from ``rng``; None where a negative goes (drawn by batch)."""
    size = size or (cfg.canvas_height, cfg.canvas_width)
    u = rng.uniform()
    if u < cfg.negative_fraction:
        return None
    if u < cfg.negative_fraction + (1 - cfg.negative_fraction) * cfg.row_fraction:
        w = np.array(ROW_DIGIT_WEIGHTS[:cfg.max_digits])
        n = int(rng.choice(len(w), p=w / w.sum())) + 1
        idx = rng.integers(0, len(images), n)
        return row_scene(rng, images[idx], labels[idx], cfg, size)
    n = int(rng.integers(1, cfg.max_digits + 1))
    idx = rng.integers(0, len(images), n)
    return scatter_scene(rng, images[idx], labels[idx], cfg, size)


def scene_batch(images, labels, cfg: DetectorConfig, seed: int, batch_index: int,
                batch_size: int | None = None) -> list[Scene]:
    """``batch_size`` scenes, the same for the same (seed, batch_index)."""
    rng = np.random.default_rng([seed, batch_index])
    scenes = [random_scene(rng, images, labels, cfg) for _ in range(batch_size or cfg.batch_size)]
    holes = [i for i, s in enumerate(scenes) if s is None]
    negs = negative_scenes(len(holes), (seed, batch_index, 1), (cfg.canvas_height, cfg.canvas_width))
    for i, s in zip(holes, negs):
        scenes[i] = s
    return scenes


# --- the published detection test split -------------------------------------------

@dataclass(frozen=True)
class SceneSet:
    """Scenes of one size, stacked: what evaluation reads."""
    canvases: np.ndarray          # (N, H, W, 1) uint8, ink = 255
    boxes: list                   # N arrays (n_i, 4) float32, pixel edges
    labels: list                  # N arrays (n_i,) int64
    kinds: np.ndarray             # (N,) str: row / scatter / single / negative

    def __len__(self) -> int:
        return len(self.canvases)

    def text(self, i: int) -> str:
        order = np.argsort(self.boxes[i][:, 0] + self.boxes[i][:, 2])
        return "".join(str(int(self.labels[i][j])) for j in order)


def build_scene_set(images, labels, cfg: DetectorConfig, seed: int, size, negatives: int,
                    single_fraction: float = 0.1, negative_fonts: str = "test") -> SceneSet:
    """Every digit in ``images`` used once: single-digit canvases, rows and scatters,
    plus ``negatives`` canvases with no digit (letters in ``negative_fonts``, "test":
    the held-out fonts). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    n_single = int(len(images) * single_fraction)
    scenes = [scatter_scene(rng, images[i:i + 1], labels[i:i + 1], cfg, size, "single")
              for i in order[:n_single]]
    rest = order[n_single:]
    w = np.array(ROW_DIGIT_WEIGHTS[:cfg.max_digits])
    pos = 0
    row_digits = int(len(rest) * 0.45)
    while pos < len(rest):
        if pos < row_digits:
            n = int(rng.choice(len(w), p=w / w.sum())) + 1
            idx = rest[pos:pos + n]
            scenes.append(row_scene(rng, images[idx], labels[idx], cfg, size))
        else:
            n = int(rng.integers(1, cfg.max_digits + 1))
            idx = rest[pos:pos + n]
            scenes.append(scatter_scene(rng, images[idx], labels[idx], cfg, size))
        pos += n
    scenes += negative_scenes(negatives, seed, size, fonts=negative_fonts)
    canvases = np.stack([np.rint(s.canvas * 255).astype(np.uint8) for s in scenes])[..., None]
    canvases.setflags(write=False)
    return SceneSet(canvases, [s.boxes for s in scenes], [s.labels for s in scenes],
                    np.array([s.kind for s in scenes]))


def subset(scenes: SceneSet, idx) -> SceneSet:
    """The scenes at indices ``idx``."""
    idx = np.asarray(idx, int)
    return SceneSet(scenes.canvases[idx], [scenes.boxes[i] for i in idx],
                    [scenes.labels[i] for i in idx], scenes.kinds[idx])


def test_scene_config() -> DetectorConfig:
    """The scene settings of the published test split, whatever a model was trained with."""
    return DetectorConfig(canvas_height=TEST_CANVAS[0], canvas_width=TEST_CANVAS[1])


@functools.lru_cache(maxsize=1)
def _detection_test_split(mnist_path: str | None) -> SceneSet:
    from locmnist.data import load_mnist

    mnist = load_mnist(mnist_path)
    return build_scene_set(mnist.x_test, mnist.y_test.astype(np.int64), test_scene_config(),
                           TEST_SEED, TEST_CANVAS, negatives=1000)


def concat(sets: list[SceneSet]) -> SceneSet:
    """One SceneSet of several of one canvas size, in order."""
    canvases = np.concatenate([s.canvases for s in sets])
    canvases.setflags(write=False)
    return SceneSet(canvases, [b for s in sets for b in s.boxes],
                    [lab for s in sets for lab in s.labels],
                    np.concatenate([s.kinds for s in sets]))


def detection_validation_split(mnist_path: str | None = None,
                               seeds: tuple[int, ...] = VALIDATION_SEEDS,
                               negatives: int = 250) -> SceneSet:
    """Scenes for fitting the reader's settings, built like the test split but from
    other seeds and digits: the MNIST train digits the shipped detector held out
    (``DetectorConfig().val_digits``, seed 0; also inside the shipped single-digit
    model's own hold-out), each arranged once per seed, and ``negatives`` canvases per
    seed drawn with the training fonts (the test split's fonts stay unseen)."""
    from locmnist.data import load_mnist
    from locmnist.training import split_digits

    _, _, vx, vy = split_digits(DetectorConfig(), load_mnist(mnist_path))
    return concat([build_scene_set(vx, vy.astype(np.int64), test_scene_config(), seed,
                                   TEST_CANVAS, negatives, negative_fonts="train")
                   for seed in seeds])


def detection_test_split(mnist_path: str | None = None) -> SceneSet:
    """The fixed, seeded detection test split: the 10,000 MNIST test digits, each used
    once (1,000 single-digit canvases, rows like numbers, scatters), and 1,000 canvases
    with no digit. All (112, 160)."""
    return _detection_test_split(mnist_path)
