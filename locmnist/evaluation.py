"""Evaluation on the published test split (see ``synthesis.test_split``).

Reports accuracy, box MSE, mean IoU, the share of canvases with IoU >= 0.5,
0.6 and 0.75, per-class accuracy and the confusion matrix; and, with the
model's calibration (``locmnist.calibration``), the expected calibration error
``ece`` (15 bins), the share of digits wrongly rejected, the accuracy on the
digits accepted, the share of the negative test split rejected
(``reject_rate_negatives``, see ``locmnist.negatives``), the reliability bins
and the rejection trade-off curve.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from locmnist.boxes import iou

IOU_THRESHOLDS = (0.5, 0.6, 0.75)


def model_outputs(model, canvases: np.ndarray, batch_size: int = 500,
                  progress: Callable[[float], None] | None = None):
    """(probabilities (N, 10), boxes (N, 4), digit scores (N,) or None) for uint8 or
    float canvases (N, 75, 75, 1).

    ``model`` is a Keras model with named outputs, or a ``Predictor`` (anything with
    ``raw_outputs``), which also covers reference-format and TFLite models.
    """
    if not hasattr(model, "raw_outputs"):
        from locmnist.inference import Predictor

        # Through one traced graph: a Keras model called eagerly keeps every layer's
        # output alive until the call ends (~750 MB more for 500 canvases).
        model = Predictor(model)
    probs, boxes, digits = [], [], []
    for i in range(0, len(canvases), batch_size):
        x = canvases[i:i + batch_size]
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        p, b, d = model.raw_outputs(x)
        probs.append(np.asarray(p))
        boxes.append(np.asarray(b))
        digits.append(None if d is None else np.asarray(d).reshape(-1))
        if progress:
            progress(min(1.0, (i + batch_size) / len(canvases)))
    if not probs:
        return np.zeros((0, 10), np.float32), np.zeros((0, 4), np.float32), None
    digit = None if digits[0] is None else np.concatenate(digits)
    return np.concatenate(probs), np.concatenate(boxes), digit


def predict_batches(model, canvases: np.ndarray, batch_size: int = 500,
                    progress: Callable[[float], None] | None = None):
    """(probabilities (N, 10), boxes (N, 4)): ``model_outputs`` without the digit score."""
    probs, boxes, _ = model_outputs(model, canvases, batch_size, progress)
    return probs, boxes


def rejection_metrics(calibration, probs: np.ndarray, digit, labels: np.ndarray,
                      neg_probs: np.ndarray, neg_digit, neg_kinds: np.ndarray | None = None) -> dict:
    """Calibration and "not a digit" metrics from raw outputs on digits and negatives."""
    from locmnist.calibration import ece, reliability, tradeoff
    from locmnist.negatives import KINDS

    cal = calibration.probabilities(probs)
    correct = cal.argmax(1) == labels
    there = calibration.accept(cal, digit)          # the rule: is there a digit at all
    accepted = there & calibration.confident(cal)   # and sure enough which one
    neg_cal = calibration.probabilities(neg_probs)
    neg_there = calibration.accept(neg_cal, neg_digit)
    neg_rejected = ~(neg_there & calibration.confident(neg_cal))
    out = {
        "ece": ece(cal.max(1), correct),
        "ece_uncalibrated": ece(probs.max(1), probs.argmax(1) == labels),
        "digits_rejected": float(1 - accepted.mean()),
        "digits_unsure": float((there & ~accepted).mean()),
        "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else 0.0,
        "reject_rate_negatives": float(neg_rejected.mean()),
        "n_negatives": int(len(neg_probs)),
        "reject_rule": calibration.rule, "reject_threshold": calibration.threshold,
        "min_confidence": calibration.min_confidence,
        "temperature": calibration.temperature, "calibrated": calibration.fitted,
        "reliability": reliability(cal.max(1), correct),
        "tradeoff": tradeoff(calibration.scores(cal, digit), correct,
                             calibration.scores(neg_cal, neg_digit)),
        # The "not sure" floor on the calibrated top probability, the rule at its threshold
        # (a canvas the rule rejects scores -1: rejected at every floor).
        "confidence_tradeoff": tradeoff(np.where(there, cal.max(1), -1.0), correct,
                                        np.where(neg_there, neg_cal.max(1), -1.0),
                                        thresholds=np.linspace(0.0, 0.9, 19)),
    }
    if neg_kinds is not None:
        out["reject_rate_negatives_by_kind"] = {
            k: float(neg_rejected[neg_kinds == i].mean()) for i, k in enumerate(KINDS)
            if (neg_kinds == i).any()}
    return out


def score(probs: np.ndarray, pred_boxes: np.ndarray, labels: np.ndarray,
          true_boxes: np.ndarray) -> dict:
    """Metrics dict from predictions and targets (all numpy)."""
    pred = probs.argmax(axis=1)
    ious = iou(pred_boxes, true_boxes)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {str(c): float(confusion[c, c] / max(1, confusion[c].sum())) for c in range(10)}
    out = {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()),
        "box_mse": float(((pred_boxes - true_boxes) ** 2).mean()),
        "iou_mean": float(ious.mean()),
    }
    for t in IOU_THRESHOLDS:
        out[f"iou_ge_{t}"] = float((ious >= t).mean())
    out["per_class_accuracy"] = per_class
    out["confusion_matrix"] = confusion.tolist()
    return out


def evaluate_model(model, data: str = "standard", limit: int | None = None,
                   mnist_path: str | None = None, progress=None, return_details: bool = False,
                   negatives: bool = True):
    """Score a model (Keras or ``Predictor``) on the test split (or its first ``limit``
    canvases) and, with ``negatives``, on the negative test split."""
    from locmnist.calibration import Calibration
    from locmnist.negatives import negative_test_split
    from locmnist.synthesis import SPLIT_VERSIONS, test_split

    canvases, boxes, labels = test_split(data, mnist_path)
    if limit:
        canvases, boxes, labels = canvases[:limit], boxes[:limit], labels[:limit]
    probs, pred_boxes, digit = model_outputs(model, canvases, progress=progress)
    metrics = score(probs, pred_boxes, labels, boxes)
    metrics["data"] = data
    metrics["split_version"] = SPLIT_VERSIONS[data]
    if data == "styles":  # each style on its own: the MNIST digits and every variant
        from locmnist.synthesis import styles_split

        kinds = styles_split(mnist_path)[3][:len(labels)]
        right = probs.argmax(axis=1) == labels
        metrics["per_style_accuracy"] = {k: float(right[kinds == k].mean())
                                         for k in dict.fromkeys(kinds)}
    if negatives:
        calibration = getattr(model, "calibration", None) or Calibration.fallback(digit is not None)
        neg, neg_kinds = negative_test_split()
        if limit:  # every kind, not only the first
            step = max(1, len(neg) // limit)
            neg, neg_kinds = neg[::step][:limit], neg_kinds[::step][:limit]
        neg_probs, _, neg_digit = model_outputs(model, neg)
        metrics.update(rejection_metrics(calibration, probs, digit, labels, neg_probs, neg_digit,
                                         neg_kinds))
    if return_details:
        details = {"probabilities": probs, "pred_boxes": pred_boxes, "true_boxes": boxes,
                   "labels": labels, "canvases": canvases, "iou": iou(pred_boxes, boxes),
                   "digit": digit}
        return metrics, details
    return metrics
