"""locmnist: one CNN that classifies an MNIST digit and localizes it with a box.

Public API (imported lazily, so ``import locmnist`` stays cheap and does no work):

    from locmnist import Predictor, Config, preset, train, build_model
    p = Predictor.load()                    # the shipped default model
    result = p.predict("digit.png")         # -> Prediction(label, confidence, box, ...)

    from locmnist import Reader             # the multi-digit detector
    Reader.load().read("number.png").text   # -> "2026"
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Predictor": "locmnist.inference",
    "Prediction": "locmnist.results",
    "InvalidImage": "locmnist.preprocess",
    "InvalidModel": "locmnist.model_files",
    "Config": "locmnist.config",
    "preset": "locmnist.config",
    "build_model": "locmnist.model",
    "train": "locmnist.training",
    "Progress": "locmnist.training",
    "evaluate_model": "locmnist.evaluation",
    "load_mnist": "locmnist.data",
    "synthesize": "locmnist.synthesis",
    "test_split": "locmnist.synthesis",
    "iou": "locmnist.boxes",
    "draw_boxes": "locmnist.boxes",
    "Reader": "locmnist.reader",
    "Reading": "locmnist.results",
    "Digit": "locmnist.results",
    "DetectorConfig": "locmnist.detector_config",
    "detector_preset": "locmnist.detector_config",
    "build_detector": "locmnist.detector",
    "train_detector": "locmnist.detector_training",
    "evaluate_detector": "locmnist.detection_eval",
    "detection_test_split": "locmnist.scenes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'locmnist' has no attribute {name!r}")
