"""Canvas synthesis: MNIST digits placed on a 75x75 black canvas, with box targets.

Everything is batched TensorFlow ops, seeded with stateless RNG so a (seed,
batch index) pair always gives the same canvases, and fast enough to feed
training from ``tf.data`` on one core. A standard canvas costs a small warp at
source resolution (rotation and shear, in a 30x30 frame: one XLA-fused kernel
with the thickness and the weights) and two batched matmuls with tent weights
that scale and place it (as ``BoxCrop`` in ``locmnist.model``), not a
projective warp of the whole 75x75 canvas: ~2x faster on one core.

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

from locmnist import styles
from locmnist.boxes import INK_THRESHOLD
from locmnist.config import Config

TEST_SEED = 20_240_607  # the one fixed seed of the published test split
# Bumped whenever the synthesis changes a published split's canvases: numbers from two
# versions are never compared. standard 1: a projective warp of the whole canvas;
# standard 2: a source-resolution warp + separable matmul resampling. The seed split
# (the reference's paste) has not changed.
SPLIT_VERSIONS = {"standard": 2, "seed": 1, "styles": 1}
RAW_STREAM = 7_919  # seed offset of the raw-paste choice and positions (see _mix_raw)
FRAME = 30  # side of the source-resolution frame that rotation and shear are applied in


def _ink_box(images: tf.Tensor, threshold: float) -> tf.Tensor:
    """Pixel-edge ink boxes (B, 4) = (x0, y0, x1, y1) of (B, H, W) images in 0..1."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    # A row holds ink where its maximum does: two max reductions, then compares on the
    # (B, H) and (B, W) maxima only (thresholding every pixel first cost ~2x on a CPU).
    rows = tf.reduce_max(images, axis=2) >= threshold                  # (B, H)
    cols = tf.reduce_max(images, axis=1) >= threshold                  # (B, W)

    def first_last(mask, n):
        idx = tf.range(n, dtype=tf.int32)[None, :]
        big = tf.fill(tf.shape(mask), n)
        first = tf.reduce_min(tf.where(mask, idx, big), axis=1)
        last = tf.reduce_max(tf.where(mask, idx, -tf.ones_like(big)), axis=1)
        return first, last + 1

    x0, x1 = first_last(cols, w)
    y0, y1 = first_last(rows, h)
    return tf.cast(tf.stack([x0, y0, x1, y1], axis=1), tf.float32)


def _adjust_thickness(x: tf.Tensor, u: tf.Tensor, wide=None) -> tf.Tensor:
    """x (B, H, W) in 0..1; u (B,) uniform picks thin / as is / thick / thicker;
    where ``wide`` (B,) bool is set, the pen is 3 px wider (a 4x4 max filter).

    Thickening is a 2x2 or 3x3 max filter written as maxima of shifted slices:
    TensorFlow's max_pool on one channel costs ~5x more on a CPU.
    """
    p = tf.pad(x, [[0, 0], [1, 1], [1, 1]])
    h, w = x.shape[1], x.shape[2]
    rows2 = tf.maximum(p[:, 1:h + 1], p[:, 2:h + 2])                # rows y, y+1
    thick = tf.maximum(rows2[:, :, 1:w + 1], rows2[:, :, 2:w + 2])  # +1 px
    rows3 = tf.maximum(rows2, p[:, 0:h])                             # rows y-1..y+1
    thicker = tf.maximum(tf.maximum(rows3[:, :, 0:w], rows3[:, :, 1:w + 1]),
                         rows3[:, :, 2:w + 2])                       # +2 px
    thin = tf.clip_by_value((x - 0.45) * 2.2, 0.0, 1.0)             # keep only stroke cores
    pick = lambda lo, hi: tf.cast((u >= lo) & (u < hi), tf.float32)[:, None, None]
    out = pick(0, .2) * thin + pick(.2, .55) * x + pick(.55, .85) * thick + pick(.85, 1.01) * thicker
    if wide is not None:
        shifted = tf.pad(thicker, [[0, 0], [0, 1], [0, 1]])                # +1 px right/down
        widest = tf.maximum(tf.maximum(thicker, shifted[:, 1:, 1:]),
                            tf.maximum(shifted[:, 1:, :-1], shifted[:, :-1, 1:]))
        out = tf.where(wide[:, None, None], widest, out)
    return out


def _tent_weights(start, step, n_out: int, n_in: int):
    """(B, n_out, n_in) resampling matrix: output pixel j samples the input at
    ``start + (j + 0.5) * step`` (input pixel units, edges at integers) with a tent
    as wide as one output pixel (anti-aliasing when shrinking), as in BoxCrop."""
    j = tf.range(n_out, dtype=tf.float32)[None, :, None] + 0.5
    r = tf.range(n_in, dtype=tf.float32)[None, None, :] + 0.5
    step = step[:, None, None]
    width = tf.maximum(step, 1.0)
    d = start[:, None, None] + j * step - r
    return tf.maximum(0.0, 1.0 - tf.abs(d) / width) / width      # rows sum to ~1


def _warp_bilinear(x, t, disp=None):
    """(B, FRAME, FRAME): x (B, H, W) sampled bilinearly at source pixel index
    (t0 j + t1 i + t2, t3 j + t4 i + t5) + disp[:, i, j] for frame pixel (i, j);
    zero outside. ``disp``: optional (B, F, F, 2) elastic displacement (x, y)."""
    h, w = x.shape[1], x.shape[2]
    xp = tf.reshape(tf.pad(x, [[0, 0], [1, 2], [1, 2]]), [-1, (h + 3) * (w + 3)])
    k = tf.range(FRAME, dtype=tf.float32)
    jj, ii = k[None, None, :], k[None, :, None]
    t = t[:, :, None, None]
    sx = t[:, 0] * jj + t[:, 1] * ii + t[:, 2] + 1.0                  # in the padded image
    sy = t[:, 3] * jj + t[:, 4] * ii + t[:, 5] + 1.0
    if disp is not None:
        sx, sy = sx + disp[..., 0], sy + disp[..., 1]
    sx = tf.clip_by_value(sx, 0.0, w + 1.0)                           # the border is zero
    sy = tf.clip_by_value(sy, 0.0, h + 1.0)
    x0, y0 = tf.floor(sx), tf.floor(sy)
    fx, fy = sx - x0, sy - y0
    i0 = tf.cast(y0, tf.int32) * (w + 3) + tf.cast(x0, tf.int32)     # (B, F, F)
    g = lambda off: tf.gather(xp, i0 + off, batch_dims=1)
    top = g(0) + fx * (g(1) - g(0))
    bottom = g(w + 3) + fx * (g(w + 4) - g(w + 3))
    return top + fy * (bottom - top)


def _elastic_field(seed, b, amplitude: float, grid: int = 4):
    """(B, F, F, 2) smooth displacement, at most ``amplitude`` px anywhere: a
    uniform random (grid x grid) field, bilinearly upsampled (two small matmuls)."""
    coarse = tf.random.stateless_uniform([b, 2, grid, grid], seed=seed,
                                         minval=-amplitude, maxval=amplitude)
    pos = (tf.range(FRAME, dtype=tf.float32) + 0.5) * (grid - 1) / FRAME   # in grid units
    up = tf.maximum(0.0, 1.0 - tf.abs(pos[:, None] - tf.range(grid, dtype=tf.float32)))
    field = tf.einsum("ik,bckl,jl->bijc", up, coarse, up)           # (B, F, F, 2)
    return field


@tf.function(reduce_retracing=True, jit_compile=True)
def _frame_stage(images, seed, canvas_size, min_h, max_h, max_rot, max_shear, thickness,
                 aspect_jitter, elastic, wide_pens):
    b = tf.shape(images)[0]
    n = canvas_size
    rnd = lambda i, lo=0.0, hi=1.0: tf.random.stateless_uniform(
        [b], seed=tf.stack([seed[0], seed[1] * 8 + i]), minval=lo, maxval=hi)
    x = tf.cast(images, tf.float32) / 255.0                          # (B, 28, 28)
    if thickness:
        x = _adjust_thickness(x, rnd(0), (rnd(6) < wide_pens) if wide_pens else None)
    src = _ink_box(x, INK_THRESHOLD)                                 # (B, 4) in source pixels
    src_w = tf.maximum(src[:, 2] - src[:, 0], 1.0)
    src_h = tf.maximum(src[:, 3] - src[:, 1], 1.0)
    src_cx, src_cy = (src[:, 0] + src[:, 2]) / 2, (src[:, 1] + src[:, 3]) / 2

    # 1. Rotation and shear at source resolution: M = rotation @ shear about the ink
    # centre, warped into a FRAME x FRAME image centred on the ink (a small warp:
    # 1,156 pixels instead of the canvas' 5,625).
    theta = rnd(1, -max_rot, max_rot) * (math.pi / 180)
    shear = rnd(2, -max_shear, max_shear)
    c, s = tf.cos(theta), tf.sin(theta)
    a00, a01 = c, c * shear - s
    a10, a11 = s, s * shear + c
    # Extent of the transformed ink box, grown by half a pixel per side (bilinear
    # sampling spreads ink that far); shrink it in the frame if it would not fit.
    # An elastic displacement moves ink by at most `elastic` px each way.
    ext_w = tf.abs(a00) * (src_w + 1) + tf.abs(a01) * (src_h + 1) + 2 * elastic
    ext_h = tf.abs(a10) * (src_w + 1) + tf.abs(a11) * (src_h + 1) + 2 * elastic
    pre = tf.minimum(1.0, (FRAME - 2.0) / tf.maximum(ext_w, ext_h))
    ext_w, ext_h = ext_w * pre, ext_h * pre
    det = pre * pre * (a00 * a11 - a01 * a10)
    i00, i01 = pre * a11 / det, -pre * a01 / det
    i10, i11 = -pre * a10 / det, pre * a00 / det
    o = 0.5 - FRAME / 2                                               # frame pixel 0 centre
    t0 = i00 * o + i01 * o + src_cx - 0.5
    t1 = i10 * o + i11 * o + src_cy - 0.5
    disp = None
    if elastic:
        disp = _elastic_field(tf.stack([seed[0], seed[1] * 8 + 7]), b, elastic)
    frame = _warp_bilinear(x, tf.stack([i00, i01, t0, i10, i11, t1], axis=1), disp)  # (B, F, F)

    # 2. Scale and place on the canvas, separably: two batched matmuls with tent
    # weights, as BoxCrop does. The ink (ext_w x ext_h frame pixels around the frame
    # centre) gets an ink height in [min_h, max_h], shrunk if it would not fit.
    scale = rnd(3, min_h, max_h) / (src_h * pre)
    # Squeeze or stretch the width: aspect ratios outside MNIST's normalization.
    aspect = 1.0 + rnd(7, -aspect_jitter, aspect_jitter) if aspect_jitter else 1.0
    room = tf.cast(n, tf.float32) - 2.0
    # The canvas tent spreads ink up to one more frame pixel each side.
    ext_w, ext_h = ext_w + 2.0, ext_h + 2.0
    scale = scale * tf.minimum(1.0, room / (scale * tf.maximum(aspect * ext_w, ext_h)))
    cw, ch = scale * aspect * ext_w, scale * ext_h
    cx = 1.0 + cw / 2 + rnd(4) * (room - cw)                          # ink centre on the canvas
    cy = 1.0 + ch / 2 + rnd(5) * (room - ch)
    step_x, step_y = 1.0 / (scale * aspect), 1.0 / scale              # frame px per canvas px
    wx = _tent_weights(FRAME / 2 - cx * step_x, step_x, n, FRAME)    # (B, 75, FRAME)
    wy = _tent_weights(FRAME / 2 - cy * step_y, step_y, n, FRAME)
    return frame, wx, wy


@tf.function(reduce_retracing=True, jit_compile=True)
def _clip_and_box(canvas):
    """(clipped canvas (B, n, n, 1), normalized tight ink box (B, 4)), in one pass."""
    canvas = tf.minimum(canvas, 1.0)
    box = _ink_box(canvas, INK_THRESHOLD) / tf.cast(tf.shape(canvas)[1], tf.float32)
    return canvas[..., None], box


@tf.function(reduce_retracing=True)
def _synthesize_standard(images, seed, canvas_size, min_h, max_h, max_rot, max_shear, thickness,
                         aspect_jitter, elastic, wide_pens):
    frame, wx, wy = _frame_stage(images, seed, canvas_size, min_h, max_h, max_rot, max_shear,
                                 thickness, aspect_jitter, elastic, wide_pens)
    # oneDNN's batched matmul is ~1.5x faster than XLA's here, so it stays outside.
    canvas = tf.matmul(tf.matmul(wy, frame), wx, transpose_b=True)   # (B, 75, 75)
    return _clip_and_box(canvas)


def _paste(images, off, canvas_size):
    """(B, n, n, 1): each 28x28 digit (B, 28, 28) uint8 pasted as it is at its whole-pixel
    offset off (B, 2) = (x, y) float32 (the reference's paste: nothing resampled)."""
    b = tf.shape(images)[0]
    x = tf.cast(images, tf.float32)[..., None] / 255.0
    ones, zeros = tf.ones([b]), tf.zeros([b])
    transforms = tf.stack([ones, zeros, -off[:, 0], zeros, ones, -off[:, 1], zeros, zeros], 1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.stack([canvas_size, canvas_size]),
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")


def _paste_offsets(seed, b):
    """(B, 2) whole-pixel offsets (x, y) in 0..47, as float32."""
    off = tf.random.stateless_uniform([b, 2], seed=seed, minval=0, maxval=48, dtype=tf.int32)
    return tf.cast(off, tf.float32)


@tf.function(reduce_retracing=True)
def _synthesize_seed(images, seed, canvas_size):
    off = _paste_offsets(seed, tf.shape(images)[0])
    canvas = _paste(images, off, canvas_size)
    box = tf.concat([off, off + 28.0], axis=1) / tf.cast(canvas_size, tf.float32)
    return canvas, box


@tf.function(reduce_retracing=True)
def _mix_raw(images, seed, canvas, box, canvas_size, fraction):
    """Replace ``fraction`` of the canvases (B, n, n, 1) by their digit pasted as it is
    (the reference's paste: 28x28 at a whole-pixel position, no resampling), with the
    tight ink box (B, 4) of that paste. Everything else is resampled (soft edges).

    Only the picked digits are pasted (gathered, then scattered back): pasting the
    whole batch to keep 5% of it cost more than the rest of the synthesis together.
    The draws are the same as for a whole batch, so the canvases are too."""
    raw_seed = tf.stack([seed[0] + RAW_STREAM, seed[1]])
    b = tf.shape(images)[0]
    off = _paste_offsets(raw_seed, b)
    pick = tf.random.stateless_uniform([b], seed=raw_seed + [0, 1]) < fraction
    idx = tf.where(pick)                                                  # (k, 1)
    raw = _paste(tf.gather_nd(images, idx), tf.gather_nd(off, idx), canvas_size)
    raw_box = _ink_box(raw[..., 0], INK_THRESHOLD) / tf.cast(canvas_size, tf.float32)
    return (tf.tensor_scatter_nd_update(canvas, idx, raw),
            tf.tensor_scatter_nd_update(box, idx, raw_box))


def synthesize(images, seed, cfg: Config):
    """Canvases (B, 75, 75, 1) float32 in 0..1 and normalized boxes (B, 4).

    ``images``: (B, 28, 28) uint8 digits; ``seed``: two ints (stateless RNG).
    Works eagerly or inside ``tf.data``.
    """
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    images = tf.convert_to_tensor(images)
    if cfg.data == "seed":
        return _synthesize_seed(images, seed, cfg.canvas_size)
    canvas, box = _synthesize_standard(
        images, seed, cfg.canvas_size, float(cfg.min_height), float(cfg.max_height),
        float(cfg.max_rotation_deg), float(cfg.max_shear), bool(cfg.thickness),
        float(cfg.aspect_jitter), float(cfg.elastic), float(cfg.wide_pens))
    if cfg.raw_fraction:
        canvas, box = _mix_raw(images, seed, canvas, box, cfg.canvas_size, float(cfg.raw_fraction))
    return canvas, box


def synthesize_numpy(images: np.ndarray, cfg: Config, seed: int = 0, batch_size: int = 1000,
                     uint8: bool = False):
    """Eager helper: (canvases float32 (N,75,75,1) in 0..1, or with ``uint8`` rounded to
    0..255 (N,75,75,1) uint8, and boxes (N,4)) as numpy arrays.

    ``uint8`` converts each batch as it is made, so a large split never holds its float32
    copies (10,000 canvases: 225 MB each) at once.
    """
    canvases, boxes = [], []
    for i in range(0, len(images), batch_size):
        c, b = synthesize(images[i:i + batch_size], (seed, i // batch_size), cfg)
        canvases.append(np.rint(c.numpy() * 255).astype(np.uint8) if uint8 else c.numpy())
        boxes.append(b.numpy())
    if not canvases:
        n = cfg.canvas_size
        return (np.zeros((0, n, n, 1), np.uint8 if uint8 else np.float32),
                np.zeros((0, 4), np.float32))
    return np.concatenate(canvases), np.concatenate(boxes)


def test_split_config(cfg: Config) -> Config:
    """The synthesis settings of the published test split for a data mode.

    Every model is evaluated on the same canvases whatever its training config:
    only the data mode (standard or seed) selects which split. The split's settings
    are pinned here, not taken from Config's defaults.
    """
    return Config(data=cfg.data, aspect_jitter=0.0, elastic=0.0, wide_pens=0.0)


@functools.lru_cache(maxsize=2)
def _test_split(data: str, mnist_path: str | None):
    from locmnist.data import load_mnist

    mnist = load_mnist(mnist_path)
    cfg = test_split_config(Config(data=data))
    # Stored as uint8 like any image, so the split is exact and costs 56 MB, not 225.
    canvases_u8, boxes = synthesize_numpy(mnist.x_test, cfg, seed=TEST_SEED, uint8=True)
    for a in (canvases_u8, boxes):
        a.setflags(write=False)
    return canvases_u8, boxes, mnist.y_test.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _styles_split(mnist_path: str | None):
    from locmnist.data import load_mnist

    mnist = load_mnist(mnist_path)
    vx, vy, vk = styles.variants(styles.TEST_VARIANTS, seed=0, split="test")
    images = np.concatenate([mnist.x_test, vx])
    labels = np.concatenate([mnist.y_test, vy]).astype(np.int64)
    kinds = np.concatenate([np.full(len(mnist.x_test), "mnist"), vk])
    canvases_u8, boxes = synthesize_numpy(images, styles.styles_split_config(),
                                          seed=styles.STYLES_TEST_SEED, uint8=True)
    for a in (canvases_u8, boxes, labels, kinds):
        a.setflags(write=False)
    return canvases_u8, boxes, labels, kinds


def styles_split(mnist_path: str | None = None):
    """The seeded styles split: the 10,000 MNIST test digits and 3,500 variants (500 of
    each style, drawn by ``locmnist.styles``), all with aspect changes, elastic distortion
    and wider pens.

    Returns (canvases uint8 (13500, 75, 75, 1), boxes (13500, 4), labels (13500,),
    kinds (13500,): "mnist" or the style name).
    """
    return _styles_split(mnist_path)


def test_split(data: str = "standard", mnist_path: str | None = None):
    """The fixed, seeded test split: 10,000 canvases from the MNIST test digits
    ("standard" or "seed"), or the styles split ("styles": ``styles_split``).

    Returns (canvases uint8 (N, 75, 75, 1), boxes (N, 4), labels (N,)).
    """
    if data == "styles":
        return styles_split(mnist_path)[:3]
    if data not in ("standard", "seed"):
        raise ValueError(f"unknown data mode {data!r}")
    return _test_split(data, mnist_path)
