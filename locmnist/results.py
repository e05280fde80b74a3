"""What the predictors and the reader return, and the one mapping from raw outputs to it.

Both predictors (``locmnist.inference.Predictor`` on Keras, and
``locmnist.tflite_runtime.TFLitePredictor``) differ only in how they run a batch
of canvases; ``predict_image`` does the rest for both: preprocessing, the
"no digit" answer, NaN guarding, calibrated confidences and the "not a digit"
answer (``locmnist.calibration``), and boxes mapped back to the input's pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from locmnist.preprocess import Prepared, prepare

# (N, 75, 75[, 1]) float32 canvases -> ((N, 10) probabilities, (N, 4) normalized boxes,
# (N,) "is there a digit" scores or None for a model without that output)
CanvasRunner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, "np.ndarray | None"]]
NOT_A_DIGIT = "not a digit"
NOT_SURE = "not sure which digit"   # a digit, but under the calibration's confidence floor


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
    digit_score: float | None = None   # the model's "is there a digit" output, if it has one

    @property
    def rejected(self) -> bool:
        """The model looked and answered "not a digit" or "not sure which digit"; the
        digit probabilities are kept (calibrated), and ``confidence`` is the best digit's,
        for display."""
        return self.label is None and self.message in (NOT_A_DIGIT, NOT_SURE)

    @property
    def unsure(self) -> bool:
        """A digit is there, but no digit is likely enough to name (``min_confidence``)."""
        return self.label is None and self.message == NOT_SURE

    def to_dict(self) -> dict:
        """JSON-ready fields (the CLI's ``predict --json`` schema, minus ``file``)."""
        r = lambda t: None if t is None else [round(float(v), 4) for v in t]
        out = {"label": self.label, "confidence": round(self.confidence, 6),
               "probabilities": [round(p, 6) for p in self.probabilities],
               "box": r(self.box), "box_normalized": r(self.box_normalized)}
        if self.label is None:
            out["message"] = self.message
        return out


def no_digit(prep: Prepared, message: str) -> Prediction:
    return Prediction(None, 0.0, (0.0,) * 10, None, None, None, prep.model_input,
                      prep.image_size, message)


def to_prediction(prep: Prepared, probs: np.ndarray, model_box: np.ndarray,
                  digit: float | None, calibration) -> Prediction:
    """One canvas's raw outputs, probs (10,), model_box (4,) and the digit score (or None),
    as a Prediction: probabilities temperature-scaled, "not a digit" below the threshold."""
    if not (np.isfinite(probs).all() and np.isfinite(model_box).all()
            and (digit is None or np.isfinite(digit))):
        # A broken user model (NaN weights): report it, never emit NaN as a guess.
        return no_digit(prep, "the model gave no valid output (NaN)")
    probs = calibration.probabilities(probs[None])[0]
    score = None if digit is None else float(digit)
    label = int(np.argmax(probs))
    there = calibration.accept(probs[None], None if score is None else np.array([score]))[0]
    if not there or not calibration.confident(probs[None])[0]:
        # The best digit's calibrated confidence stays, for display; there is no box.
        return Prediction(None, float(probs[label]), tuple(float(p) for p in probs), None, None,
                          None, prep.model_input, prep.image_size,
                          NOT_SURE if there else NOT_A_DIGIT, score)
    model_box = tuple(float(v) for v in np.clip(model_box, 0.0, 1.0))
    box = prep.to_input_pixels(model_box)
    w, h = prep.image_size
    return Prediction(label, float(probs[label]), tuple(float(p) for p in probs), box,
                      (box[0] / w, box[1] / h, box[2] / w, box[3] / h), model_box,
                      prep.model_input, prep.image_size, "", score)


def predict_image(run_canvases: CanvasRunner, image, calibration) -> Prediction:
    """Preprocess ``image``, run the model on it unless it is blank, map the result back.

    Raises ``locmnist.preprocess.InvalidImage`` (a ValueError) with a message fit for users.
    """
    prep = prepare(image)
    if prep.blank_reason:
        return no_digit(prep, prep.blank_reason)
    probs, boxes, digit = run_canvases(prep.model_input)
    return to_prediction(prep, probs[0], boxes[0], None if digit is None else digit[0],
                         calibration)


# --- the multi-digit reader (locmnist.reader) ----------------------------------

def _rounded(t) -> list | None:
    return None if t is None else [round(float(v), 4) for v in t]


class Digit(NamedTuple):
    """One digit read by the detector; unpacks as (label, confidence, box, box_normalized)."""
    label: int
    confidence: float                              # the centre peak's height, 0..1
    box: tuple[float, float, float, float]         # input image pixels, pixel edges
    box_normalized: tuple[float, float, float, float]  # box / input (W, H)

    def to_dict(self) -> dict:
        return {"label": self.label, "confidence": round(self.confidence, 6),
                "box": _rounded(self.box), "box_normalized": _rounded(self.box_normalized)}


@dataclass(frozen=True)
class Reading:
    """The digits in one image, left to right (by box centre), and the number they spell."""
    digits: tuple[Digit, ...]
    image_size: tuple[int, int] = (0, 0)           # input (width, height)
    message: str = ""                              # why there is no digit, for display
    model_input: np.ndarray = field(default=None, repr=False)  # (H, W) what the detector saw

    @property
    def text(self) -> str:
        """The digits as a string, e.g. "2026"; "" when none was found."""
        return "".join(str(d.label) for d in self.digits)

    def to_dict(self) -> dict:
        """JSON-ready fields (``predict --json`` adds them to each line)."""
        return {"digits": [d.to_dict() for d in self.digits], "text": self.text}
