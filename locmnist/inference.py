"""Inference, the public API: ``Predictor.load(path).predict(image) -> Prediction``.

Single images never go through ``model.predict`` (tens of ms of per-call
overhead): a ``tf.function`` with a fixed (1, 75, 75, 1) signature is traced
once at load time and is safe to call from many threads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locmnist.preprocess import InvalidImage, Prepared, prepare

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models" / "default.keras"
ENV_MODEL = "LOCMNIST_MODEL"


@dataclass(frozen=True)
class Prediction:
    """One image's result. Boxes follow the convention in ``locmnist.boxes``."""
    label: int | None                  # the digit, or None when there is no digit
    confidence: float                  # probability of ``label`` (0.0 when None)
    probabilities: tuple[float, ...]   # 10 values (all 0.0 when there is no digit)
    box: tuple[float, float, float, float] | None             # input image pixels
    box_normalized: tuple[float, float, float, float] | None  # box / input (W, H)
    model_box: tuple[float, float, float, float] | None       # normalized, on model_input
    model_input: np.ndarray = field(repr=False)               # (75, 75) float32, ink = 1
    image_size: tuple[int, int] = (0, 0)                      # input (width, height)
    message: str = ""                  # why there is no digit, for display

    def to_dict(self) -> dict:
        """JSON-ready fields (the CLI's ``predict --json`` schema, minus ``file``)."""
        r = lambda t: None if t is None else [round(float(v), 4) for v in t]
        return {"label": self.label, "confidence": round(self.confidence, 6),
                "probabilities": [round(p, 6) for p in self.probabilities],
                "box": r(self.box), "box_normalized": r(self.box_normalized)}


class Predictor:
    """A loaded model plus its config; ``predict`` is thread-safe."""

    def __init__(self, model, config=None, source: str = "<in memory>"):
        import tensorflow as tf

        from locmnist.model_files import output_roles

        self.model, self.config, self.source = model, config, source
        cls_key, box_key = output_roles(model)

        # One graph for every batch size: calls never retrace, so concurrent callers
        # only ever run the same finished graph (TF executes it thread-safely).
        # Wrapping the model object itself (not a closure) gives each Predictor its
        # own tracing statistics: loading several models raises no retracing warning.
        forward = tf.function(model, input_signature=[tf.TensorSpec([None, 75, 75, 1],
                                                                    tf.float32)])
        self._keys = (cls_key, box_key)
        self._forward = forward
        forward(tf.zeros([1, 75, 75, 1]))  # trace now, not in a user's first request

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Predictor":
        """Load a model file (.keras, legacy .h5, or an exported .tflite) or a run directory.

        ``None`` loads ``$LOCMNIST_MODEL`` if set, else the shipped ``models/default.keras``.
        Raises ``locmnist.model_files.InvalidModel`` with a clear message otherwise.
        """
        from locmnist.model_files import load_model_file

        path = Path(path or os.environ.get(ENV_MODEL) or DEFAULT_MODEL)
        if path.suffix.lower() == ".tflite":  # an export: same API, TFLite runtime
            from locmnist.tflite_runtime import TFLitePredictor

            return TFLitePredictor.load(path)
        model, config = load_model_file(path)
        return cls(model, config, str(path))

    def predict_canvas(self, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw model outputs for ready canvases (N, 75, 75[, 1]) in 0..1: (probs, boxes)."""
        x = np.asarray(canvases, dtype=np.float32).reshape(-1, 75, 75, 1)
        out = self._forward(x)  # a dict (named outputs) or a list, as the model returns
        probs, boxes = out[self._keys[0]], out[self._keys[1]]
        return probs.numpy(), boxes.numpy()

    def predict(self, image) -> Prediction:
        """Predict the digit and its box in ``image`` (path, bytes, file, PIL or numpy).

        Raises ``InvalidImage`` (a ValueError) with a message fit for users.
        """
        prep = prepare(image)
        if prep.blank_reason:
            return Prediction(None, 0.0, (0.0,) * 10, None, None, None, prep.model_input,
                              prep.image_size, prep.blank_reason)
        probs, boxes = self.predict_canvas(prep.model_input)
        return self._result(prep, probs[0], boxes[0])

    @staticmethod
    def _result(prep: Prepared, probs: np.ndarray, model_box: np.ndarray) -> Prediction:
        if not (np.isfinite(probs).all() and np.isfinite(model_box).all()):
            # A broken user model (NaN weights): report it, never emit NaN as a guess.
            return Prediction(None, 0.0, (0.0,) * 10, None, None, None, prep.model_input,
                              prep.image_size, "the model gave no valid output (NaN)")
        model_box = tuple(float(v) for v in np.clip(model_box, 0.0, 1.0))
        box = prep.to_input_pixels(model_box)
        w, h = prep.image_size
        label = int(np.argmax(probs))
        return Prediction(label, float(probs[label]), tuple(float(p) for p in probs), box,
                          (box[0] / w, box[1] / h, box[2] / w, box[3] / h), model_box,
                          prep.model_input, prep.image_size, "")


__all__ = ["Predictor", "Prediction", "InvalidImage"]
