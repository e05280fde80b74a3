"""Canvas synthesis: MNIST digits placed on a 75x75 black canvas, with box targets.

Everything is batched TensorFlow ops (one projective-warp kernel per batch),
seeded with stateless RNG so a (seed, batch index) pair always gives the same
canvases, and fast enough to feed training from ``tf.data`` on one core.

Two modes:

* ``standard``: each digit is thinned or thickened, scaled to an ink height
  in [min_height, max_height], rotated and sheared slightly, and placed
  uniformly at random fully inside the canvas. Its box is the tight box of the
  rendered ink (pixels >= INK_THRESHOLD), see ``locmnist.boxes``.
* ``seed``: the reference notebook: the 28x28 digit pasted at an integer offset
  in 0..47, and the box is the whole 28x28 patch.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf

from locmnist.boxes import INK_THRESHOLD
from locmnist.config import Config

TEST_SEED = 20_240_607  # the one fixed seed of the published test split


def _ink_box(images: tf.Tensor, threshold: float) -> tf.Tensor:
    """Pixel-edge ink boxes (B, 4) = (x0, y0, x1, y1) of (B, H, W) images in 0..1."""
    ink = images >= threshold
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    rows, cols = tf.reduce_any(ink, axis=2), tf.reduce_any(ink, axis=1)  # (B, H), (B, W)

    def first_last(mask, n):
        idx = tf.range(n, dtype=tf.int32)[None, :]
        big = tf.fill(tf.shape(mask), n)
        first = tf.reduce_min(tf.where(mask, idx, big), axis=1)
        last = tf.reduce_max(tf.where(mask, idx, -tf.ones_like(big)), axis=1)
        return first, last + 1

    x0, x1 = first_last(cols, w)
    y0, y1 = first_last(rows, h)
    return tf.cast(tf.stack([x0, y0, x1, y1], axis=1), tf.float32)


def _adjust_thickness(x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """x (B, 28, 28, 1) in 0..1; u (B,) uniform picks thin / as is / thick / thicker."""
    thin = tf.clip_by_value((x - 0.45) * 2.2, 0.0, 1.0)            # keep only stroke cores
    thick = tf.nn.max_pool2d(x, 2, 1, "SAME")                       # +1 px
    thicker = tf.nn.max_pool2d(x, 3, 1, "SAME")                     # +2 px
    pick = lambda lo, hi: tf.cast((u >= lo) & (u < hi), tf.float32)[:, None, None, None]
    return pick(0, .2) * thin + pick(.2, .55) * x + pick(.55, .85) * thick + pick(.85, 1.01) * thicker


@tf.function(reduce_retracing=True)
def _synthesize_standard(images, seed, canvas_size, min_h, max_h, max_rot, max_shear, thickness):
    b = tf.shape(images)[0]
    rnd = lambda i, lo=0.0, hi=1.0: tf.random.stateless_uniform(
        [b], seed=tf.stack([seed[0], seed[1] * 8 + i]), minval=lo, maxval=hi)
    x = tf.cast(images, tf.float32)[..., None] / 255.0             # (B, 28, 28, 1)
    if thickness:
        x = _adjust_thickness(x, rnd(0))
    src = _ink_box(x[..., 0], INK_THRESHOLD)                         # (B, 4) in source pixels
    src_w = tf.maximum(src[:, 2] - src[:, 0], 1.0)
    src_h = tf.maximum(src[:, 3] - src[:, 1], 1.0)
    src_cx, src_cy = (src[:, 0] + src[:, 2]) / 2, (src[:, 1] + src[:, 3]) / 2

    # Forward linear map A = scale * rotation @ shear, applied about the ink centre.
    theta = rnd(1, -max_rot, max_rot) * (math.pi / 180)
    shear = rnd(2, -max_shear, max_shear)
    scale = rnd(3, min_h, max_h) / src_h
    c, s = tf.cos(theta), tf.sin(theta)
    a00, a01 = c, c * shear - s
    a10, a11 = s, s * shear + c
    # Extent of the transformed source ink box, grown by half a source pixel per side
    # (bilinear sampling spreads ink that far); shrink the digit if it would not fit.
    ext_w = scale * (tf.abs(a00) * (src_w + 1) + tf.abs(a01) * (src_h + 1))
    ext_h = scale * (tf.abs(a10) * (src_w + 1) + tf.abs(a11) * (src_h + 1))
    room = tf.cast(canvas_size, tf.float32) - 2.0
    fit = tf.minimum(1.0, room / tf.maximum(ext_w, ext_h))
    scale, ext_w, ext_h = scale * fit, ext_w * fit, ext_h * fit
    # Centre uniformly where the whole extent stays inside the canvas (1 px margin).
    cx = 1.0 + ext_w / 2 + rnd(4) * (room - ext_w)
    cy = 1.0 + ext_h / 2 + rnd(5) * (room - ext_h)

    # Inverse map for the warp: output pixel index -> source pixel index.
    # Pixel i's centre is at edge coordinate i + 0.5 in both images.
    det = scale * scale * (a00 * a11 - a01 * a10)
    i00, i01 = scale * a11 / det, -scale * a01 / det
    i10, i11 = -scale * a10 / det, scale * a00 / det
    ox, oy = 0.5 - cx, 0.5 - cy
    t0 = i00 * ox + i01 * oy + src_cx - 0.5
    t1 = i10 * ox + i11 * oy + src_cy - 0.5
    zeros = tf.zeros_like(t0)
    transforms = tf.stack([i00, i01, t0, i10, i11, t1, zeros, zeros], axis=1)
    canvas = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.stack([canvas_size, canvas_size]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")  # (B, 75, 75, 1)
    box = _ink_box(canvas[..., 0], INK_THRESHOLD) / tf.cast(canvas_size, tf.float32)
    return canvas, box


@tf.function(reduce_retracing=True)
def _synthesize_seed(images, seed, canvas_size):
    b = tf.shape(images)[0]
    x = tf.cast(images, tf.float32)[..., None] / 255.0
    off = tf.random.stateless_uniform([b, 2], seed=seed, minval=0, maxval=48, dtype=tf.int32)
    off = tf.cast(off, tf.float32)                                   # (B, 2) = (x, y)
    ones, zeros = tf.ones([b]), tf.zeros([b])
    transforms = tf.stack([ones, zeros, -off[:, 0], zeros, ones, -off[:, 1], zeros, zeros], 1)
    canvas = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.stack([canvas_size, canvas_size]),
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")
    box = tf.concat([off, off + 28.0], axis=1) / tf.cast(canvas_size, tf.float32)
    return canvas, box


def synthesize(images, seed, cfg: Config):
    """Canvases (B, 75, 75, 1) float32 in 0..1 and normalized boxes (B, 4).

    ``images``: (B, 28, 28) uint8 digits; ``seed``: two ints (stateless RNG).
    Works eagerly or inside ``tf.data``.
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    images = tf.convert_to_tensor(images)
    if cfg.data == "seed":
        return _synthesize_seed(images, seed, cfg.canvas_size)
    return _synthesize_standard(images, seed, cfg.canvas_size, float(cfg.min_height),
                                float(cfg.max_height), float(cfg.max_rotation_deg),
                                float(cfg.max_shear), bool(cfg.thickness))


def synthesize_numpy(images: np.ndarray, cfg: Config, seed: int = 0, batch_size: int = 1000):
    """Eager helper: (canvases float32 (N,75,75,1), boxes (N,4)) as numpy arrays."""
    canvases, boxes = [], []
    for i in range(0, len(images), batch_size):
        c, b = synthesize(images[i:i + batch_size], (seed, i // batch_size), cfg)
        canvases.append(c.numpy())
        boxes.append(b.numpy())
    if not canvases:
        n = cfg.canvas_size
        return np.zeros((0, n, n, 1), np.float32), np.zeros((0, 4), np.float32)
    return np.concatenate(canvases), np.concatenate(boxes)


def test_split_config(cfg: Config) -> Config:
    """The synthesis settings of the published test split for a data mode.

    Every model is evaluated on the same canvases whatever its training config:
    only the data mode (standard or seed) selects which split.
    """
    return Config(data=cfg.data)


@functools.lru_cache(maxsize=2)
def _test_split(data: str, mnist_path: str | None):
    from locmnist.data import load_mnist

    mnist = load_mnist(mnist_path)
    cfg = Config(data=data)
    canvases, boxes = synthesize_numpy(mnist.x_test, cfg, seed=TEST_SEED)
    # Stored as uint8 like any image, so the split is exact and costs 56 MB, not 225.
    canvases_u8 = np.rint(canvases * 255).astype(np.uint8)
    for a in (canvases_u8, boxes):
        a.setflags(write=False)
    return canvases_u8, boxes, mnist.y_test.astype(np.int64)


def test_split(data: str = "standard", mnist_path: str | None = None):
    """The fixed, seeded test split: 10,000 canvases from the MNIST test digits.

    Returns (canvases uint8 (10000, 75, 75, 1), boxes (10000, 4), labels (10000,)).
    """
    if data not in ("standard", "seed"):
        raise ValueError(f"unknown data mode {data!r}")
    return _test_split(data, mnist_path)
