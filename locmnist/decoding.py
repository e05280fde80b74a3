"""Detector outputs -> detections: written once, shared by every runtime.

Keras, SavedModel and TFLite models all give the same three raw maps (see
``locmnist.detector``); ``decode`` turns one image's maps into boxes:

1. peaks: a heatmap cell that is the maximum of its 3x3 neighbourhood (a 3x3
   max-pool, CenterNet's replacement for NMS) and at least ``threshold``;
2. the ``top_k`` highest peaks;
3. box = centre (cell + offset) and size, times the stride, in input pixels;
4. optionally, ``agnostic_iou``: a digit has one label, so a lower-scoring peak
   of another class on the same ink (IoU above it) is dropped. Reading numbers
   wants this; COCO mAP is measured without it, as the field does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from locmnist.boxes import iou
from locmnist.detector import STRIDE


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray    # (k, 4) float32 pixel edges (xmin, ymin, xmax, ymax), model input px
    scores: np.ndarray   # (k,) float32, best first
    labels: np.ndarray   # (k,) int64

    def __len__(self) -> int:
        return len(self.scores)


def peaks(heatmap: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, classes) of local maxima (3x3) >= threshold in heatmap (h, w, c)."""
    p = np.pad(heatmap, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    # The 3x3 maximum as a 3-row then a 3-column maximum: the same values (a maximum is
    # exact), 4 array passes instead of a (9, h, w, c) stack.
    rows = np.maximum(np.maximum(p[:-2], p[1:-1]), p[2:])                 # (h, w + 2, c)
    pooled = np.maximum(np.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])  # (h, w, c)
    return np.nonzero((heatmap >= pooled) & (heatmap >= threshold))


def decode(heatmap: np.ndarray, size: np.ndarray, offset: np.ndarray, threshold: float = 0.3,
           top_k: int = 100, agnostic_iou: float | None = None) -> Detections:
    """One image's maps (h, w, 10), (h, w, 2), (h, w, 2) -> Detections, best first."""
    heatmap = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0)
    ys, xs, cs = peaks(heatmap, threshold)
    scores = heatmap[ys, xs, cs]
    order = np.argsort(-scores, kind="stable")[:top_k]
    ys, xs, cs, scores = ys[order], xs[order], cs[order], scores[order]
    cx = (xs + offset[ys, xs, 0]) * STRIDE
    cy = (ys + offset[ys, xs, 1]) * STRIDE
    bw = np.maximum(size[ys, xs, 0], 0.0) * STRIDE
    bh = np.maximum(size[ys, xs, 1], 0.0) * STRIDE
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    boxes = np.nan_to_num(boxes.astype(np.float32)).reshape(-1, 4)
    det = Detections(boxes, scores.astype(np.float32), cs.astype(np.int64))
    return suppress(det, agnostic_iou) if agnostic_iou is not None else det


def suppress(det: Detections, max_iou: float) -> Detections:
    """Greedy, best first: drop a detection overlapping a better one (any class) > max_iou."""
    n = len(det)
    if n < 2:
        return det
    overlaps = iou(det.boxes[:, None], det.boxes[None, :])   # (k, k)
    keep = np.ones(n, bool)
    for i in range(n):
        if keep[i]:
            keep &= ~((np.arange(n) > i) & (overlaps[i] > max_iou))
    return Detections(det.boxes[keep], det.scores[keep], det.labels[keep])


def decode_batch(outputs: dict, **kwargs) -> list[Detections]:
    """Raw batched outputs {heatmap (N,h,w,10), size, offset} -> one Detections per image."""
    heat, size, off = (np.asarray(outputs[k]) for k in ("heatmap", "size", "offset"))
    return [decode(heat[i], size[i], off[i], **kwargs) for i in range(len(heat))]
