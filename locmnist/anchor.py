"""L2-SP for fine-tuning: a penalty pulling the trained weights back toward the starting ones.

Plain weight decay pulls weights toward zero, which for a model that already reads
MNIST means toward forgetting it. L2-SP (Li, Grandvalet & Davoust 2018, "Explicit
Inductive Bias for Transfer Learning with Convolutional Networks") pulls them toward
the starting point instead: ``weight x sum((w - w_start)^2)`` over the weights
fine-tuning changes. It pins the weights the corrections do not need, where
distillation (``locmnist.distill``) pins outputs on the replayed digits only.

How, in plain Keras: each trained variable gets a ``TowardStart`` regularizer of its
own (``variable.regularizer``; Keras adds it to the loss through ``model.losses``).
It is set on the variables, not on the layers' ``kernel_regularizer`` options, so the
saved model's layer configs stay those of the starting model: the penalty is part of
fine-tuning, not of the model, and a fine-tuned file loads and fine-tunes again like
any other.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="locmnist")
class TowardStart(keras.regularizers.Regularizer):
    """``weight x sum((x - start)^2)``: L2 toward ``start``, the variable's starting value."""

    def __init__(self, weight: float, start):
        self.weight = float(weight)
        self.start = np.asarray(start, np.float32)

    def __call__(self, x):
        return self.weight * ops.sum(ops.square(x - ops.cast(self.start, x.dtype)))

    def get_config(self):
        return {"weight": self.weight, "start": self.start.tolist()}


def anchor_to_start(model: keras.Model, weight: float) -> int:
    """Give every trainable variable of ``model`` a ``TowardStart`` at its current value
    (call it after setting which layers train, before compiling); ``weight`` 0 removes
    them. Returns how many variables are anchored."""
    anchored = 0
    for v in model.trainable_weights:
        v.regularizer = TowardStart(weight, ops.convert_to_numpy(v)) if weight else None
        anchored += bool(weight)
    return anchored
