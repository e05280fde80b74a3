"""Evaluation on the published test split (see ``synthesis.test_split``).

Reports accuracy, box MSE, mean IoU, the share of canvases with IoU >= 0.5,
0.6 and 0.75, per-class accuracy and the confusion matrix.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from locmnist.boxes import iou

IOU_THRESHOLDS = (0.5, 0.6, 0.75)


def predict_batches(model, canvases: np.ndarray, batch_size: int = 500,
                    progress: Callable[[float], None] | None = None):
    """(probabilities (N, 10), boxes (N, 4)) for uint8 or float canvases (N, 75, 75, 1).

    ``model`` is a Keras model with named outputs, or a ``Predictor`` (anything with
    ``predict_canvas``), which also covers reference-format and TFLite models.
    """
    probs, boxes = [], []
    for i in range(0, len(canvases), batch_size):
        x = canvases[i:i + batch_size]
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        if hasattr(model, "predict_canvas"):
            p, b = model.predict_canvas(x)
        else:
            out = model(x, training=False)
            p, b = out["classification"], out["bounding_box"]
        probs.append(np.asarray(p))
        boxes.append(np.asarray(b))
        if progress:
            progress(min(1.0, (i + batch_size) / len(canvases)))
    return np.concatenate(probs), np.concatenate(boxes)


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
                   mnist_path: str | None = None, progress=None, return_details: bool = False):
    """Score a Keras model on the test split (or its first ``limit`` canvases)."""
    from locmnist.synthesis import SPLIT_VERSIONS, test_split

    canvases, boxes, labels = test_split(data, mnist_path)
    if limit:
        canvases, boxes, labels = canvases[:limit], boxes[:limit], labels[:limit]
    probs, pred_boxes = predict_batches(model, canvases, progress=progress)
    metrics = score(probs, pred_boxes, labels, boxes)
    metrics["data"] = data
    metrics["split_version"] = SPLIT_VERSIONS[data]
    if data == "styles":  # each style on its own: the MNIST digits and every variant
        from locmnist.styles import styles_split

        kinds = styles_split(mnist_path)[3][:len(labels)]
        right = probs.argmax(axis=1) == labels
        metrics["per_style_accuracy"] = {k: float(right[kinds == k].mean())
                                         for k in dict.fromkeys(kinds)}
    if return_details:
        details = {"probabilities": probs, "pred_boxes": pred_boxes, "true_boxes": boxes,
                   "labels": labels, "canvases": canvases, "iou": iou(pred_boxes, boxes)}
        return metrics, details
    return metrics
