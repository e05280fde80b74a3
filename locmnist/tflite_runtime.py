"""Running an exported ``.tflite`` model with the same API as ``Predictor``.

``TFLitePredictor.load(path).predict(image) -> Prediction``: the same
preprocessing and result mapping (``locmnist.results.predict_image``) as the
Keras predictor, so only the model runtime differs. A TFLite interpreter is not
thread-safe, hence the lock.
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import numpy as np

from locmnist.calibration import Calibration, load_for
from locmnist.config import INPUT_SHAPE
from locmnist.model_files import InvalidModel
from locmnist.results import Prediction, predict_image

MAX_TFLITE_BYTES = 50 * 1024 * 1024
SIGNATURE = "serving_default"
# XNNPACK threads per interpreter. Left unset, TFLite runs these small models on one
# core; two threads take the detector on a number from 4.2 to 2.4 ms and a digit from
# 0.75 to 0.53 ms on a 2-core machine. Beyond 4, a 1 ms call gains nothing. The cores
# this process may run on, not the host's (a container's CPU set can be smaller).
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
THREADS = max(1, min(4, _CORES or 1))
# Batches up to this size (a number's digits, read one crop each) run on an interpreter
# of their own, allocated for that size once: one interpreter resized between sizes
# reallocates on every change, and 4 crops one by one cost ~1.3x one batch of 4.
SMALL_BATCH = 8


def _interpreter(model_content: bytes, source: str):
    """(interpreter, its serving signature runner); ``InvalidModel`` if unusable."""
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter warns that LiteRT replaces it
        warnings.simplefilter("ignore")
        try:
            interpreter = tf.lite.Interpreter(model_content=model_content, num_threads=THREADS)
            return interpreter, interpreter.get_signature_runner(SIGNATURE)
        except (ValueError, RuntimeError) as e:
            raise InvalidModel(f"{Path(source).name} is not a usable TFLite model: "
                               f"{str(e).splitlines()[0][:200]}") from None


class TFLitePredictor:
    """A TFLite model exported by ``python -m locmnist export --format tflite``."""

    model = None      # no Keras model behind it
    config = None

    def __init__(self, model_content: bytes, source: str = "<in memory>"):
        self.source = source
        interpreter, runner = _interpreter(model_content, source)
        outputs = set(interpreter.get_signature_list()[SIGNATURE]["outputs"])
        if outputs - {"digit"} != {"classification", "bounding_box"}:
            raise InvalidModel(f"{Path(source).name}: expected outputs classification and "
                               f"bounding_box, found {sorted(outputs)}")
        self._has_digit = "digit" in outputs
        self.calibration = Calibration.fallback(self._has_digit)
        self._interpreter, self._runner = interpreter, runner
        self._content = model_content
        self._small = {}   # batch size (2..SMALL_BATCH) -> signature runner allocated for it
        self._lock = threading.Lock()
        self.predict_canvas(np.zeros((1, *INPUT_SHAPE), np.float32))  # allocate now

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TFLitePredictor":
        p = Path(path)
        if not p.is_file():
            raise InvalidModel(f"no model file at {p}")
        if p.stat().st_size > MAX_TFLITE_BYTES:
            raise InvalidModel(f"{p.name} is larger than {MAX_TFLITE_BYTES // 2**20} MB")
        lite = cls(p.read_bytes(), str(p))
        lite.calibration = load_for(p, lite._has_digit)  # x.calibration.json beside it, if any
        return lite

    def raw_outputs(self, canvases: np.ndarray):
        """Raw outputs for ready canvases (N, 75, 75[, 1]) in 0..1: (probs, boxes, digit or None)."""
        x = np.ascontiguousarray(canvases, dtype=np.float32).reshape(-1, *INPUT_SHAPE)
        with self._lock:  # a runner resizes its input only when the batch size changes
            out = self._runner_for(len(x))(image=x)
            digit = np.array(out["digit"]).reshape(-1) if self._has_digit else None
            return np.array(out["classification"]), np.array(out["bounding_box"]), digit

    def _runner_for(self, n: int):
        """The runner for a batch of ``n``: the first interpreter for one canvas and for
        large batches (resized when ``n`` changes), a small batch's own otherwise."""
        if n < 2 or n > SMALL_BATCH:
            return self._runner
        if n not in self._small:
            self._small[n] = _interpreter(self._content, self.source)[1]
        return self._small[n]

    def predict_canvas(self, canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs for ready canvases (N, 75, 75[, 1]) in 0..1: (probs, boxes)."""
        probs, boxes, _ = self.raw_outputs(canvases)
        return probs, boxes

    def predict(self, image) -> Prediction:
        """Predict the digit and its box in ``image``, exactly as ``Predictor.predict`` does."""
        return predict_image(self.raw_outputs, image, self.calibration)


def tflite_maps_runner(path: str | os.PathLike):
    """A detector's ``.tflite`` export as ``f(x (N, H, W, 1)) -> {heatmap, size, offset}``
    (see ``maps_runner``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidModel(f"no model file at {p}")
    if p.stat().st_size > MAX_TFLITE_BYTES:
        raise InvalidModel(f"{p.name} is larger than {MAX_TFLITE_BYTES // 2**20} MB")
    return maps_runner(p.read_bytes(), str(p))


def maps_runner(model_content: bytes, source: str = "<in memory>"):
    """A detector's TFLite model as ``f(x (N, H, W, 1)) -> {heatmap, size, offset}``.

    The input's spatial size is dynamic: the signature runner resizes the input and
    reallocates only when the shape differs from the previous call's (~1 ms for the
    detector, its packed XNNPACK weights kept); the same shape again costs nothing.
    Thread-safe (one lock, as for ``TFLitePredictor``).
    """
    from locmnist.detector import OUTPUT_NAMES

    name = Path(source).name
    interpreter, runner = _interpreter(model_content, source)
    if set(interpreter.get_signature_list()[SIGNATURE]["outputs"]) != set(OUTPUT_NAMES):
        raise InvalidModel(f"{name}: expected the detector's outputs {', '.join(OUTPUT_NAMES)}")
    lock = threading.Lock()

    def run(x):
        with lock:
            out = runner(image=np.ascontiguousarray(x, dtype=np.float32))
            return {k: np.array(out[k]) for k in OUTPUT_NAMES}

    return run
