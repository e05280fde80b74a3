"""The two-head CNN: ``build_model(cfg) -> keras.Model``, its losses and metrics.

Inputs are (N, 75, 75, 1) canvases in 0..1. Outputs, by name:

* ``classification``: softmax over the 10 digits, (N, 10);
* ``bounding_box``: the normalized box (xmin, ymin, xmax, ymax), (N, 4);
* ``digit`` (when ``cfg.digit_head``): sigmoid, is there a digit at all, (N, 1).
  Trained on canvases from ``locmnist.negatives``; the other two losses are
  masked on those (sample weight 0), so digits train exactly as before.

Losses, metrics and training targets are dicts keyed by those names.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from locmnist.config import INPUT_SHAPE, Config

DIGIT = "digit"  # the optional third output
# Keras' default 0.99 lags behind fast-moving weights in short runs (the 60 s quick
# preset, the app's Train page): validation then looks far worse than training.
BN_MOMENTUM = 0.9


def build_model(cfg: Config) -> keras.Model:
    """A pure function of the config; the same config always gives the same graph."""
    if cfg.arch == "seed":
        return seed_cnn((cfg.canvas_size, cfg.canvas_size, 1))
    return _build_default(cfg)


def seed_cnn(input_shape: tuple = INPUT_SHAPE, list_outputs: bool = False) -> keras.Model:
    """The reference notebook's CNN, layer for layer (426,638 parameters on 75x75).

    ``list_outputs``: outputs as the list [classification, bounding_box], the way the
    notebook built it (the format of reference models users bring); by name otherwise.
    """
    inputs = keras.Input(input_shape, name="image")
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
    outputs = [cls, box] if list_outputs else {"classification": cls, "bounding_box": box}
    return keras.Model(inputs, outputs, name="seed_cnn")


@keras.saving.register_keras_serializable(package="locmnist")
class BoxCrop(layers.Layer):
    """Resample the square around a box to (size, size): the model's "closer look".

    Inputs: canvases (N, H, W, 1) and normalized boxes (N, 4) = (xmin, ymin, xmax,
    ymax). The crop is the square of side ``margin * max(box width, box height)``
    centred on the box, so the digit keeps its aspect ratio and lands at the same
    scale whatever its size on the canvas (MNIST itself is a 20 px digit centred in
    28 px: margin 1.4). Outside the canvas is black.

    Resampling is a separable tent filter written as two batched matmuls, so it
    runs anywhere (TFLite included) and anti-aliases when shrinking: the tent is as
    wide as one output pixel in source pixels. No gradient flows into the box: the
    box head is trained by its own loss to hug the ink, not to please the classifier.
    """

    def __init__(self, size: int = 28, margin: float = 1.4, **kwargs):
        super().__init__(**kwargs)
        self.size, self.margin = int(size), float(margin)

    def _weights(self, centre, side, n: int):
        """(N, size, n) resampling matrix along one axis; centre, side (N,) normalized."""
        j = ops.arange(self.size, dtype="float32")[None, :, None] + 0.5     # output pixels
        r = ops.arange(n, dtype="float32")[None, None, :] + 0.5             # source pixels
        start = (centre - side / 2)[:, None, None] * n                       # in source px
        step = (side * n / self.size)[:, None, None]                         # source px / output px
        width = ops.maximum(step, 1.0)
        d = start + j * step - r                                             # (N, size, n)
        tent = ops.maximum(0.0, 1.0 - ops.abs(d) / width)
        # Rows sum to 1, so ink keeps its brightness; a row wholly off the canvas is 0.
        return tent / ops.maximum(ops.sum(tent, axis=-1, keepdims=True), 1e-6)

    def call(self, images, boxes):
        boxes = ops.stop_gradient(ops.cast(boxes, "float32"))
        x0, x1 = ops.minimum(boxes[:, 0], boxes[:, 2]), ops.maximum(boxes[:, 0], boxes[:, 2])
        y0, y1 = ops.minimum(boxes[:, 1], boxes[:, 3]), ops.maximum(boxes[:, 1], boxes[:, 3])
        h, w = images.shape[1], images.shape[2]
        # A floor of 8 canvas pixels keeps a collapsed box from zooming into noise.
        side = ops.maximum(ops.maximum(x1 - x0, y1 - y0) * self.margin, 8.0 / max(h, w))
        wy = self._weights((y0 + y1) / 2, side, h)                           # (N, size, H)
        wx = self._weights((x0 + x1) / 2, side, w)                           # (N, size, W)
        img = ops.cast(images[..., 0], "float32")                            # (N, H, W)
        crop = ops.matmul(ops.matmul(wy, img), ops.transpose(wx, (0, 2, 1)))  # (N, size, size)
        return ops.cast(crop[..., None], self.compute_dtype)

    def compute_output_shape(self, images_shape, boxes_shape):
        return (images_shape[0], self.size, self.size, 1)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "margin": self.margin}


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, name: str = ""):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _dense_bn(x, units: int, dropout: float, name: str, dropout_name: str | None = None):
    x = layers.Dense(units, use_bias=False, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=dropout_name or f"{name}_dropout")(x)


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
    # "dropout": the layer name that models saved before the closer look carry.
    where = _dense_bn(where, cfg.dense_units, cfg.dropout, "shared", dropout_name="dropout")
    # What: global pooling is translation invariant, so the class need not be
    # relearned for every position of the digit.
    what = layers.GlobalMaxPooling2D(name="global_pool")(x)
    features = layers.Concatenate(name="what_and_where")([what, where])
    box = layers.Dense(4, activation="sigmoid", name="bounding_box")(where)
    if cfg.crop_size:
        features = layers.Concatenate(name="with_closer_look")(
            [features, _closer_look(inputs, box, cfg)])
    cls = layers.Dense(10, activation="softmax", name="classification")(features)
    outputs = {"classification": cls, "bounding_box": box}
    if cfg.digit_head:
        # Reads the same features as the classifier: the closer look sees whether the
        # thing in the box has a digit's strokes, the backbone sees the whole canvas.
        outputs[DIGIT] = layers.Dense(1, activation="sigmoid", name=DIGIT)(features)
    return keras.Model(inputs, outputs, name="locmnist_cnn")


def _closer_look(inputs, box, cfg: Config):
    """Classify the digit again from a crop at the predicted box, scale-normalized.

    Digits span 15-70 px on the canvas; the crop brings every one to the same
    size, as in MNIST itself, so this small CNN need not learn each digit at every
    scale. The backbone's features stay in the classifier too, for when the box is off.
    """
    c0, c1, c2 = cfg.crop_widths
    g = BoxCrop(cfg.crop_size, name="glimpse")(inputs, box)        # (N, 28, 28, 1)
    g = _conv_bn(g, c0, name="g1")
    g = layers.MaxPooling2D(2, padding="same", name="g_pool1")(g)  # (N, 14, 14, c0)
    g = _conv_bn(g, c1, name="g2")
    g = _conv_bn(g, c1, name="g3")
    g = layers.MaxPooling2D(2, padding="same", name="g_pool2")(g)  # (N, 7, 7, c1)
    g = _conv_bn(g, c2, name="g4")
    g = layers.MaxPooling2D(2, padding="same", name="g_pool3")(g)  # (N, 4, 4, c2)
    # The digit is centred in the crop, so where a stroke is carries meaning: flatten.
    g = layers.Flatten(name="g_flatten")(g)
    return _dense_bn(g, cfg.dense_units, cfg.dropout, "g")


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


def compile_model(model: keras.Model, cfg: Config, learning_rate,
                  classification_loss="categorical_crossentropy",
                  classification_accuracy="accuracy") -> keras.Model:
    """Adam, the class and box losses (and the digit output's), weighted metrics.

    Fine-tuning passes its own classification loss and the accuracy that reads its
    packed targets (``locmnist.distill``); everything else is the same.
    """
    box_loss = giou_l1_loss if cfg.box_loss == "giou_l1" else "mse"
    loss = {"classification": classification_loss, "bounding_box": box_loss}
    weights = {"classification": 1.0, "bounding_box": cfg.box_loss_weight}
    metrics = {"classification": [classification_accuracy], "bounding_box": ["mse", iou]}
    if DIGIT in model.output:
        loss[DIGIT], weights[DIGIT], metrics[DIGIT] = "binary_crossentropy", 1.0, ["accuracy"]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        # Weighted, like the losses: a no-digit canvas has weight 0 for the class and the
        # box (see training.with_negatives), so it must not count as a wrong digit in the
        # accuracy and IoU curves (unweighted, they read ~0.89 for a 99% model).
        loss=loss, loss_weights=weights, weighted_metrics=metrics,
        jit_compile=cfg.jit_compile,
        steps_per_execution=cfg.steps_per_execution,
    )
    return model
