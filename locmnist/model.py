"""The two-head CNN: ``build_model(cfg) -> keras.Model``, its losses and metrics.

Inputs are (N, 75, 75, 1) canvases in 0..1. Outputs, by name:

* ``classification``: softmax over the 10 digits, (N, 10);
* ``bounding_box``: the normalized box (xmin, ymin, xmax, ymax), (N, 4).

Losses, metrics and training targets are dicts keyed by those two names.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from locmnist.config import Config

OUTPUT_NAMES = ("classification", "bounding_box")
# Keras' default 0.99 lags behind fast-moving weights in short runs (the 60 s quick
# preset, the app's Train page): validation then looks far worse than training.
BN_MOMENTUM = 0.9


def build_model(cfg: Config) -> keras.Model:
    """A pure function of the config; the same config always gives the same graph."""
    if cfg.arch == "seed":
        return _build_seed(cfg)
    return _build_default(cfg)


def _build_seed(cfg: Config) -> keras.Model:
    """The reference notebook's CNN, layer for layer (426,638 parameters)."""
    inputs = keras.Input((cfg.canvas_size, cfg.canvas_size, 1), name="image")
    x = layers.Conv2D(16, 3, activation="relu")(inputs)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    cls = layers.Dense(10, activation="softmax", name="classification")(x)
    box = layers.Dense(4, name="bounding_box")(x)
    return keras.Model(inputs, {"classification": cls, "bounding_box": box}, name="seed_cnn")


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _build_default(cfg: Config) -> keras.Model:
    """Our design: two strided convs, BN conv stages, a spatial flatten for the box.

    Measured on 2 CPU cores, resolution is what costs: two stride-2 convs bring
    75x75 to 19x19 cheaply (a 3x3/stride-2 pair still sees every pixel, so 15 px
    digits keep their strokes), and the real work happens at 19x19 and 10x10.
    Flattening the last 5x5 map (instead of global pooling) keeps *where*
    features are, which the box head needs. Box coordinates pass a sigmoid, so
    they are bounded to the canvas.
    """
    w0, w1, w2, w3 = cfg.widths
    inputs = keras.Input((cfg.canvas_size, cfg.canvas_size, 1), name="image")
    x = _conv_bn(inputs, w0, strides=2, name="stem")                # (N, 38, 38, w0)
    x = _conv_bn(x, w1, strides=2, name="down")                     # (N, 19, 19, w1)
    x = _conv_bn(x, w2, name="s2")
    x = layers.MaxPooling2D(2, padding="same", name="pool2")(x)     # (N, 10, 10, w2)
    x = _conv_bn(x, w3, name="s3")
    x = layers.MaxPooling2D(2, padding="same", name="pool3")(x)     # (N, 5, 5, w3)
    x = _conv_bn(x, w3, name="s4")                                  # sees the largest digits
    # Where: the flattened map feeds a dense layer that both heads share.
    where = layers.Flatten(name="flatten")(x)
    where = layers.Dense(cfg.dense_units, use_bias=False, name="shared_dense")(where)
    where = layers.BatchNormalization(momentum=BN_MOMENTUM, name="shared_bn")(where)
    where = layers.ReLU(name="shared_relu")(where)
    where = layers.Dropout(cfg.dropout, name="dropout")(where)
    # What: global pooling is translation invariant, so the class need not be
    # relearned for every position of the digit.
    what = layers.GlobalMaxPooling2D(name="global_pool")(x)
    features = layers.Concatenate(name="what_and_where")([what, where])
    cls = layers.Dense(10, activation="softmax", name="classification")(features)
    box = layers.Dense(4, activation="sigmoid", name="bounding_box")(where)
    return keras.Model(inputs, {"classification": cls, "bounding_box": box}, name="locmnist_cnn")


# --- box losses and metrics -------------------------------------------------

def _iou_terms(y_true, y_pred):
    """Per-sample (iou, enclosing-box area, union) for (N, 4) normalized boxes."""
    y_true = ops.cast(y_true, y_pred.dtype)
    tx0, ty0, tx1, ty1 = (y_true[:, i] for i in range(4))
    # Sorted predicted coordinates: an inside-out prediction still has a real area.
    px0, px1 = ops.minimum(y_pred[:, 0], y_pred[:, 2]), ops.maximum(y_pred[:, 0], y_pred[:, 2])
    py0, py1 = ops.minimum(y_pred[:, 1], y_pred[:, 3]), ops.maximum(y_pred[:, 1], y_pred[:, 3])
    iw = ops.maximum(ops.minimum(tx1, px1) - ops.maximum(tx0, px0), 0.0)
    ih = ops.maximum(ops.minimum(ty1, py1) - ops.maximum(ty0, py0), 0.0)
    inter = iw * ih
    union = (tx1 - tx0) * (ty1 - ty0) + (px1 - px0) * (py1 - py0) - inter
    iou = inter / ops.maximum(union, 1e-7)
    enclose = (ops.maximum(tx1, px1) - ops.minimum(tx0, px0)) * (
        ops.maximum(ty1, py1) - ops.minimum(ty0, py0))
    return iou, enclose, union


@keras.saving.register_keras_serializable(package="locmnist")
def iou(y_true, y_pred):
    """Per-sample IoU of normalized (xmin, ymin, xmax, ymax) boxes."""
    return _iou_terms(y_true, y_pred)[0]


@keras.saving.register_keras_serializable(package="locmnist")
def giou_l1_loss(y_true, y_pred):
    """(1 - GIoU) + 5 * L1: GIoU aligns training with the IoU we report, L1 gives
    a steady gradient early on when boxes do not overlap yet."""
    i, enclose, union = _iou_terms(y_true, y_pred)
    giou = i - (enclose - union) / ops.maximum(enclose, 1e-7)
    l1 = ops.mean(ops.abs(ops.cast(y_true, y_pred.dtype) - y_pred), axis=-1)
    return (1.0 - giou) + 5.0 * l1


def compile_model(model: keras.Model, cfg: Config, learning_rate) -> keras.Model:
    box_loss = giou_l1_loss if cfg.box_loss == "giou_l1" else "mse"
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={"classification": "categorical_crossentropy", "bounding_box": box_loss},
        loss_weights={"classification": 1.0, "bounding_box": cfg.box_loss_weight},
        metrics={"classification": ["accuracy"], "bounding_box": ["mse", iou]},
        jit_compile=cfg.jit_compile,
        steps_per_execution=cfg.steps_per_execution,
    )
    return model
