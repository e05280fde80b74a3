"""Knowledge distillation for fine-tuning: keep the starting model's answers on replayed digits.

Hard labels alone let a fine-tuned model drift on the digits it replays: any
output that still puts the right class on top costs nothing, so the high learning
rate that learns a new style also reshapes everything else, and canvases outside
the replayed ones (the test split) pay for it. Distillation (Hinton et al. 2015;
"Learning without Forgetting", Li & Hoiem 2016) asks for more: on every replayed
canvas the starting model reads right, match its whole output distribution,
softened by a temperature so the small probabilities (which digits it found
alike) count too.

How, in plain Keras: the frozen starting model (the *teacher*) runs in the tf.data
pipeline on the replayed part of each batch (``mixed_batches``), and the
classification target becomes ``[one-hot label, teacher's softened probabilities]``
(N, 20); ``DistillationLoss`` reads both halves and ``label_accuracy`` the first.
On the corrections, and on any canvas the teacher misreads, the second half is
zeros: the label alone decides. The trained model stays the plain functional model,
saved and loaded like any other.

Measured (README, "Learning from corrections"): distillation alone moves along the
same trade-off as a lower learning rate (less forgotten, less of the new style
learned); with the backbone frozen and the corrections a larger share of each batch
at a lower learning rate it gave the best trade-off found.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

NUM_CLASSES = 10
EPS = 1e-7


def soften(probs, temperature: float):
    """Softmax probabilities at temperature 1 -> the same logits' softmax at ``temperature``
    (log p differs from the logits by a per-row constant, which the softmax ignores)."""
    return ops.softmax(ops.log(ops.clip(probs, EPS, 1.0)) / temperature, axis=-1)


def mixed_batches(replay: tuple, corrections: tuple, cfg, share: float,
                  teacher: keras.Model | None, temperature: float) -> tf.data.Dataset:
    """Training batches: ``round(share * batch)`` canvases of corrections, the rest replayed
    digits (with their styled digits and negatives, ``locmnist.training.make_dataset``);
    each stream reshuffled and freshly synthesized. The classification target is packed:
    [one-hot label, the teacher's soft targets] (N, 20), the soft half zeros on the
    corrections and on any canvas the teacher misreads (there the label alone decides).

    The corrections are a stream of their own so that they are known: the teacher must not
    hold them back, even the ones it reads right, as it reads the new style unsure."""
    from locmnist.training import make_dataset

    n_corr = min(cfg.batch_size - 1, max(1, round(share * cfg.batch_size)))
    rep = make_dataset(*replay, cfg.replace(batch_size=cfg.batch_size - n_corr))
    # negative_fraction 0: the corrections' stream is only the corrections.
    cor = make_dataset(*corrections, cfg.replace(batch_size=n_corr, negative_fraction=0.0,
                                                 seed=cfg.seed + 1))
    if teacher is not None:
        teacher.trainable = False

    def merge(rep_batch, cor_batch):
        (x, y, *w), (cx, cy) = rep_batch, cor_batch
        hard = tf.cast(y["classification"], tf.float32)
        soft = tf.zeros_like(hard)
        if teacher is not None:
            probs = teacher(x, training=False)["classification"]
            # Negatives have an all-zero target: no label for the teacher to be right about.
            right = (tf.argmax(probs, -1) == tf.argmax(hard, -1)) & (tf.reduce_max(hard, -1) > 0)
            soft = tf.cast(right, tf.float32)[:, None] * soften(probs, temperature)
        chard = tf.cast(cy["classification"], tf.float32)
        packed = tf.concat([tf.concat([hard, soft], -1),
                            tf.concat([chard, tf.zeros_like(chard)], -1)], 0)
        packed.set_shape([None, 2 * NUM_CLASSES])
        ones = tf.ones([n_corr], tf.float32)
        targets = {"classification": packed,
                   "bounding_box": tf.concat([tf.cast(y["bounding_box"], tf.float32),
                                              tf.cast(cy["bounding_box"], tf.float32)], 0)}
        if "digit" in y:  # a model with the digit output: corrections are digits
            targets["digit"] = tf.concat([y["digit"], ones[:, None]], 0)
        x = tf.concat([x, tf.cast(cx, x.dtype)], 0)
        if not w:
            return x, targets
        return x, targets, {k: tf.concat([v, ones], 0) for k, v in w[0].items()}

    return tf.data.Dataset.zip(rep, cor).map(merge, num_parallel_calls=1, deterministic=True)


def without_teacher(targets):
    """Validation targets (N, 10) -> (N, 20): no soft half, so val_loss is the plain
    cross-entropy, comparable with any other run's."""
    return np.concatenate([targets, np.zeros_like(targets)], axis=-1)


@keras.saving.register_keras_serializable(package="locmnist")
class DistillationLoss(keras.losses.Loss):
    """Cross-entropy with the label + ``weight`` x T^2 x KL(teacher_T || student_T).

    T^2 keeps the distillation gradient's size independent of T (Hinton et al.).
    ``prior_shift``: log(training class frequencies / the starting model's), added to
    the log-probabilities in the cross-entropy (logit adjustment, Menon et al. 2021):
    corrections repeated to 40% of an epoch make their label several times as common
    as in MNIST, and plain cross-entropy learns that prior, i.e. to answer that label
    more often everywhere; adjusted, the model's own output keeps MNIST's prior."""

    def __init__(self, weight: float = 1.0, temperature: float = 2.0, prior_shift=None,
                 name="distillation", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight, self.temperature = float(weight), float(temperature)
        self.prior_shift = [0.0] * NUM_CLASSES if prior_shift is None else [
            float(v) for v in prior_shift]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        hard, soft = y_true[:, :NUM_CLASSES], y_true[:, NUM_CLASSES:]
        log_p = ops.log(ops.clip(y_pred, EPS, 1.0))
        shift = ops.cast(ops.convert_to_tensor(self.prior_shift), y_pred.dtype)
        ce = -ops.sum(hard * ops.log_softmax(log_p + shift, axis=-1), axis=-1)
        log_q = ops.log_softmax(log_p / self.temperature, axis=-1)
        kl = ops.sum(soft * (ops.log(ops.clip(soft, EPS, 1.0)) - log_q), axis=-1)
        return ce + self.weight * self.temperature ** 2 * kl

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "temperature": self.temperature,
                "prior_shift": self.prior_shift}


def prior_shift(replay_labels, correction_labels, share: float) -> list[float]:
    """log(class frequencies of the mixed batches / of the replayed digits), per class."""
    freq = lambda y: np.bincount(y, minlength=NUM_CLASSES) / max(1, len(y))
    before = freq(replay_labels)
    after = (1 - share) * before + share * freq(correction_labels)
    return np.log(np.maximum(after, 1e-6) / np.maximum(before, 1e-6)).tolist()


@keras.saving.register_keras_serializable(package="locmnist")
def label_accuracy(y_true, y_pred):
    """Accuracy against the one-hot half of the packed targets."""
    return ops.cast(ops.equal(ops.argmax(y_true[:, :NUM_CLASSES], -1), ops.argmax(y_pred, -1)),
                    "float32")


def compile_distilled(model: keras.Model, cfg, learning_rate, weight: float,
                      temperature: float, shift=None) -> keras.Model:
    """``locmnist.model.compile_model`` with the distillation loss on the classification
    (and the accuracy it reads from the packed targets); box and digit outputs as there."""
    from locmnist.model import compile_model

    return compile_model(model, cfg, learning_rate,
                         classification_loss=DistillationLoss(weight, temperature, shift),
                         classification_accuracy=keras.metrics.MeanMetricWrapper(
                             label_accuracy, "accuracy"))
