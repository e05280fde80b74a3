"""Inference, the public API: ``Predictor.load(path).predict(image) -> Prediction``.

Single images never go through ``model.predict`` (tens of ms of per-call
overhead): a ``tf.function`` with one (None, 75, 75, 1) signature is traced
once at load time and is safe to call from many threads.

A model loaded from a file also gets a TFLite copy of itself for single images:
on a 2-core CPU, TensorFlow's graph executor and oneDNN kernels spend ~2.3 ms on
one 75x75 canvas, TFLite's fused XNNPACK kernels ~0.75 ms, for the same outputs
(checked within 1e-4 on every load; seen: 1e-7). Converting takes a few seconds,
so the copy is cached (``locmnist.tflite_copy``, shared with the number reader).
Batches (evaluation) stay on TensorFlow.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from locmnist.config import INPUT_SHAPE
from locmnist.preprocess import InvalidImage
from locmnist.results import Prediction, predict_image
from locmnist.tflite_runtime import SMALL_BATCH


class Predictor:
    """A loaded model plus its config; ``predict`` is thread-safe."""

    def __init__(self, model, config=None, source: str = "<in memory>", calibration=None):
        import tensorflow as tf

        from locmnist.calibration import Calibration
        from locmnist.model_files import digit_key, output_roles

        self.model, self.config, self.source = model, config, source
        cls_key, box_key = output_roles(model)
        self._digit_key = digit_key(model)
        # How confidences are scaled and when the answer is "not a digit".
        self.calibration = calibration or Calibration.fallback(self._digit_key is not None)

        # One graph for every batch size: calls never retrace, so concurrent callers
        # only ever run the same finished graph (TF executes it thread-safely).
        # Wrapping the model object itself (not a closure) gives each Predictor its
        # own tracing statistics: loading several models raises no retracing warning.
        forward = tf.function(model, input_signature=[tf.TensorSpec([None, *INPUT_SHAPE],
                                                                    tf.float32)])
        self._keys = (cls_key, box_key)
        self._forward = forward
        forward(tf.zeros([1, *INPUT_SHAPE]))  # trace now, not in a user's first request
        # One canvas at a time through a faster runtime with the same outputs
        # (``Predictor.load`` sets the model's TFLite copy here); None: TensorFlow.
        self._single = None

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, tflite: bool = True) -> "Predictor":
        """Load a model file (.keras, legacy .h5, or an exported .tflite) or a run directory.

        ``None`` loads ``$LOCMNIST_MODEL`` if set, else the shipped ``models/default.keras``.
        ``tflite=False`` skips the TFLite copy for single images: for batch-only use
        (evaluation), where converting a new model would only cost time and memory.
        Raises ``locmnist.model_files.InvalidModel`` with a clear message otherwise.
        """
        from locmnist.model_files import load_model_file
        from locmnist.runs import default_model_path, model_file

        path = Path(path or default_model_path())
        if path.suffix.lower() == ".tflite":  # an export: same API, TFLite runtime
            from locmnist.tflite_runtime import TFLitePredictor

            return TFLitePredictor.load(path)
        from locmnist.calibration import load_for
        from locmnist.model_files import digit_key

        model, config = load_model_file(path)
        calibration = load_for(model_file(path), digit_key(model) is not None)
        predictor = cls(model, config, str(path), calibration)
        predictor._single = _tflite_copy(predictor, model_file(path)) if tflite else None
        return predictor

    def raw_outputs(self, canvases: np.ndarray):
        """Raw model outputs for ready canvases (N, 75, 75[, 1]) in 0..1: (probs (N, 10),
        boxes (N, 4), digit scores (N,) or None for a model without the ``digit`` output)."""
        x = np.asarray(canvases, dtype=np.float32).reshape(-1, *INPUT_SHAPE)
        if self._single is not None and 1 <= len(x) <= SMALL_BATCH:
            return self._single.raw_outputs(x)
        out = self._forward(x)  # a dict (named outputs) or a list, as the model returns
        probs, boxes = out[self._keys[0]], out[self._keys[1]]
        digit = None if self._digit_key is None else out[self._digit_key].numpy().reshape(-1)
        return probs.numpy(), boxes.numpy(), digit

    def predict_canvas(self, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs for ready canvases (N, 75, 75[, 1]) in 0..1: (probs, boxes)."""
        probs, boxes, _ = self.raw_outputs(canvases)
        return probs, boxes

    def predict(self, image) -> Prediction:
        """Predict the digit and its box in ``image`` (path, bytes, file, PIL or numpy),
        or answer "not a digit" (``label`` None; see ``locmnist.calibration``).

        Raises ``InvalidImage`` (a ValueError) with a message fit for users.
        """
        return predict_image(self.raw_outputs, image, self.calibration)


def _tflite_copy(predictor: Predictor, model_file: Path):
    """The model's TFLite copy (a ``TFLitePredictor``) from the cache or converted now
    (``locmnist.tflite_copy``), or None when the model does not convert or its outputs
    differ: then single images simply stay on TensorFlow. It is only ever a faster
    runtime for the same outputs."""
    from locmnist.tflite_copy import tflite_copy
    from locmnist.tflite_runtime import TFLitePredictor

    try:
        lite = tflite_copy(predictor.model, model_file, TFLitePredictor)
        canvas = np.random.default_rng(0).random((1, *INPUT_SHAPE), dtype=np.float32)
        for ours, theirs in zip(predictor.raw_outputs(canvas), lite.raw_outputs(canvas)):
            if (ours is None) != (theirs is None) or (
                    ours is not None and not np.allclose(ours, theirs, atol=1e-4)):
                return None
        return lite
    except Exception:  # no TFLite copy (an unusual user model, a read-only cache): TensorFlow
        return None


__all__ = ["Predictor", "Prediction", "InvalidImage"]
