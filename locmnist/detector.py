"""The multi-digit detector: ``build_detector(cfg) -> keras.Model``, its targets and losses.

CenterNet-style and anchor-free: a small fully-convolutional backbone (strides
2..16) with a top-down path back to stride 4, and three heads read there. Input
(N, H, W, 1) canvases in 0..1 (ink = 1), H and W multiples of 16 (``pad16``
pads; ``locmnist.decoding`` does it for every runtime). Outputs, by name, on the
(H/4, W/4) grid:

* ``heatmap``: (N, H/4, W/4, 10) per-digit-class centre probability (sigmoid);
* ``size``:    (N, H/4, W/4, 2) box (width, height) in grid cells (4 px);
* ``offset``:  (N, H/4, W/4, 2) the centre's sub-cell position in [0, 1).

Targets (``encode_targets``) put a Gaussian peak of 1.0 at each digit's centre
cell in its class's channel, and size and offset (plus a mask) at that cell.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from locmnist.detector_config import DetectorConfig

STRIDE = 4
MULTIPLE = 16                 # input sides must be multiples of the deepest stride
OUTPUT_NAMES = ("heatmap", "size", "offset")
BN_MOMENTUM = 0.9             # as in locmnist.model: short runs need BN statistics that keep up
PRIOR = 0.1                   # initial heatmap probability: stable focal loss at the start


def _conv(x, filters, stride=1, kernel=3, name=None, dilation=1):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      dilation_rate=dilation, name=name and f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=name and f"{name}_bn")(x)
    return layers.ReLU(name=name and f"{name}_relu")(x)


def build_detector(cfg: DetectorConfig) -> keras.Model:
    """A pure function of the config: any (H, W) multiple of 16, named outputs."""
    w2, w4, w8, w16 = cfg.widths
    inputs = keras.Input((None, None, 1), name="image")
    x = _conv(inputs, w2, 2, name="stem")                        # /2
    c4 = _conv(_conv(x, w4, 2, name="down4"), w4, name="c4")     # /4
    c8 = _conv(_conv(c4, w8, 2, name="down8"), w8, name="c8")    # /8
    x = _conv(c8, w16, 2, name="down16")                         # /16: sees whole digits
    x = _conv(x, w16, name="c16a")
    c16 = _conv(x, w16, dilation=2, name="c16b")                 # wider context, same cost
    # Top-down: bring the coarse context back to stride 4, adding the finer maps.
    p8 = layers.Add(name="p8_add")([layers.UpSampling2D(2, name="p8_up")(
        _conv(c16, w8, kernel=1, name="p8_lat16")), _conv(c8, w8, kernel=1, name="p8_lat8")])
    p8 = _conv(p8, w8, name="p8")
    p4 = layers.Add(name="p4_add")([layers.UpSampling2D(2, name="p4_up")(
        _conv(p8, cfg.head_width, kernel=1, name="p4_lat8")),
        _conv(c4, cfg.head_width, kernel=1, name="p4_lat4")])
    p4 = _conv(p4, cfg.head_width, name="p4")
    h = _conv(p4, cfg.head_width, name="heat_head")
    heat = layers.Conv2D(10, 1, activation="sigmoid", name="heatmap",
                         bias_initializer=keras.initializers.Constant(
                             -math.log((1 - PRIOR) / PRIOR)))(h)
    r = _conv(p4, cfg.head_width, name="box_head")
    size = layers.Conv2D(2, 1, name="size")(r)
    offset = layers.Conv2D(2, 1, name="offset")(r)
    return keras.Model(inputs, {"heatmap": heat, "size": size, "offset": offset},
                       name="digit_detector")


# --- targets -------------------------------------------------------------------

def encode_targets(boxes: np.ndarray, labels: np.ndarray, height: int, width: int):
    """Targets for one canvas of (height, width) px with pixel boxes (n, 4), labels (n,).

    Returns heatmap (h, w, 10), size (h, w, 3) = (w, h, mask), offset (h, w, 3) =
    (dx, dy, mask) on the stride-4 grid. The Gaussian's spread follows the box
    (TTFNet's elliptical kernel), so small digits get sharp peaks.
    """
    gh, gw = height // STRIDE, width // STRIDE
    heat = np.zeros((gh, gw, 10), np.float32)
    size = np.zeros((gh, gw, 3), np.float32)
    offset = np.zeros((gh, gw, 3), np.float32)
    ys, xs = np.arange(gh, dtype=np.float32)[:, None], np.arange(gw, dtype=np.float32)[None, :]
    for (x0, y0, x1, y1), lab in zip(np.asarray(boxes, np.float32), labels):
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        bw, bh = (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
        i, j = min(int(cx), gw - 1), min(int(cy), gh - 1)
        sx, sy = max(0.54 * bw / 6, 0.3), max(0.54 * bh / 6, 0.3)
        g = np.exp(-((xs - i) ** 2) / (2 * sx * sx) - ((ys - j) ** 2) / (2 * sy * sy))
        np.maximum(heat[..., lab], g, out=heat[..., lab])
        heat[j, i, lab] = 1.0
        size[j, i] = (bw, bh, 1.0)
        offset[j, i] = (cx - i, cy - j, 1.0)
    return heat, size, offset


def encode_batch(scenes) -> tuple[np.ndarray, dict]:
    """(canvases (B, H, W, 1), targets dict) for a list of same-size ``Scene``s."""
    canvases = np.stack([s.canvas for s in scenes])[..., None].astype(np.float32)
    h, w = canvases.shape[1:3]
    enc = [encode_targets(s.boxes, s.labels, h, w) for s in scenes]
    return canvases, {name: np.stack([e[k] for e in enc]) for k, name in enumerate(OUTPUT_NAMES)}


# --- losses --------------------------------------------------------------------

def focal_loss(y_true, y_pred):
    """CenterNet's penalty-reduced focal loss, summed and divided by the digits in the batch."""
    pred = ops.clip(y_pred, 1e-4, 1 - 1e-4)
    pos = ops.cast(y_true >= 1.0 - 1e-4, "float32")
    pos_loss = ops.log(pred) * ops.square(1 - pred) * pos
    neg_loss = ops.log(1 - pred) * ops.square(pred) * ops.power(1 - y_true, 4) * (1 - pos)
    return -(ops.sum(pos_loss) + ops.sum(neg_loss)) / ops.maximum(ops.sum(pos), 1.0)


def masked_l1(y_true, y_pred):
    """L1 at digit centres only: y_true (..., 3) = (2 targets, mask)."""
    mask = y_true[..., 2:3]
    return ops.sum(ops.abs(y_true[..., :2] - y_pred) * mask) / ops.maximum(ops.sum(mask), 1.0)


def compile_detector(model: keras.Model, cfg: DetectorConfig, learning_rate) -> keras.Model:
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=1e-4,
                                                   clipnorm=5.0),
                  loss={"heatmap": focal_loss, "size": masked_l1, "offset": masked_l1},
                  loss_weights={"heatmap": 1.0, "size": cfg.size_loss_weight,
                                "offset": cfg.offset_loss_weight})
    return model


def pad16(canvases: np.ndarray) -> np.ndarray:
    """Zero-pad (N, H, W, 1) at the bottom and right to multiples of 16 (no-op if already)."""
    h, w = canvases.shape[1:3]
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    if ph or pw:
        canvases = np.pad(canvases, ((0, 0), (0, ph), (0, pw), (0, 0)))
    return canvases


def is_detector(model) -> bool:
    """Whether a Keras model has the detector's named outputs."""
    out = getattr(model, "output", None)
    return isinstance(out, dict) and set(out) == set(OUTPUT_NAMES)
