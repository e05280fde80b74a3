"""Detection metrics on the published detection test split (``scenes.detection_test_split``).

mAP comes from pycocotools' ``COCOeval``, the field's standard (boxes in pixel
edges, all sizes, up to 100 detections per image); nothing here re-implements
it; mAP is the detector's alone. Besides mAP@0.5, mAP@0.5:0.95 and AP per digit
class, measured on the reader's candidates (one label per digit) after its closer
look and, where fitted, its acceptance (what ``Reader.read`` reports):

* ``number_accuracy``: row canvases of 2-5 digits whose digits, left to right,
  give exactly the true string;
* ``single_digit_one_right``: single-digit canvases with exactly one detection,
  of the right digit, at IoU >= 0.5;
* ``negatives_clean``: canvases with no digit that get no detection
  (``false_detection_rate`` = 1 - it).

Those three score the reader's steps on each canvas as it is. ``Reader.read`` first
frames any image so its digits reach the detector ``reader.TARGET_HEIGHT`` px tall;
``through_read`` also scores that whole path, each canvas given to ``read`` as an
image (``read_number_accuracy``, ``read_single_digit_one_right``,
``read_negatives_clean``). Strokes that are not digits, framed at digit height, look
more like digits than they do at their own size: negatives score lower there.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from locmnist.boxes import iou
from locmnist.decoding import Detections


def _to_coco(gt_boxes, gt_labels, detections):
    """(COCO ground truth, list of result dicts) for per-image arrays."""
    from pycocotools.coco import COCO

    images, anns, results = [], [], []
    for i, (boxes, labels, det) in enumerate(zip(gt_boxes, gt_labels, detections)):
        images.append({"id": i, "width": 1, "height": 1})
        for b, lab in zip(np.asarray(boxes, np.float64), labels):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(lab),
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, s, lab in zip(np.asarray(det.boxes, np.float64), det.scores, det.labels):
            results.append({"image_id": i, "category_id": int(lab), "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c, "name": str(c)} for c in range(10)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt, results


def coco_metrics(gt_boxes, gt_labels, detections) -> dict:
    """COCOeval bbox metrics: map (0.5:0.95), map50, map75, AP per class and the
    precision-recall curve at IoU 0.5 (101 recall points, mean over classes)."""
    from pycocotools.cocoeval import COCOeval

    gt, results = _to_coco(gt_boxes, gt_labels, detections)
    empty = {"map": 0.0, "map50": 0.0, "map75": 0.0,
             "ap_per_class": {str(c): 0.0 for c in range(10)},
             "ap50_per_class": {str(c): 0.0 for c in range(10)},
             "pr_curve": {"recall": np.linspace(0, 1, 101).tolist(), "precision": [0.0] * 101}}
    if not results or not gt.dataset["annotations"]:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: (IoU thresholds 10, recall points 101, classes, area ranges, max dets)
    prec = ev.eval["precision"][:, :, :, 0, -1]

    def mean_valid(a):
        a = a[a > -1]
        return float(a.mean()) if a.size else 0.0

    pr = prec[0]                                   # IoU 0.5: (101, classes)
    pr_mean = [mean_valid(pr[r]) for r in range(pr.shape[0])]
    return {"map": float(ev.stats[0]), "map50": float(ev.stats[1]), "map75": float(ev.stats[2]),
            "ap_per_class": {str(c): mean_valid(prec[:, :, k]) for k, c in
                             enumerate(ev.params.catIds)},
            "ap50_per_class": {str(c): mean_valid(prec[0, :, k]) for k, c in
                               enumerate(ev.params.catIds)},
            "pr_curve": {"recall": ev.params.recThrs.tolist(), "precision": pr_mean}}


def coco_map(scenes, detections) -> dict:
    """``coco_metrics`` over a SceneSet's canvases that hold digits."""
    pos = [i for i, k in enumerate(scenes.kinds) if k != "negative"]
    return coco_metrics([scenes.boxes[i] for i in pos], [scenes.labels[i] for i in pos],
                        [detections[i] for i in pos])


def select(det: Detections, threshold: float, agnostic_iou: float | None) -> Detections:
    """What ``decode`` would have kept at a higher threshold, one label per digit."""
    from locmnist.decoding import suppress

    keep = det.scores >= threshold
    det = Detections(det.boxes[keep], det.scores[keep], det.labels[keep])
    return suppress(det, agnostic_iou) if agnostic_iou is not None else det


def read_text(det: Detections) -> str:
    order = np.argsort(det.boxes[:, 0] + det.boxes[:, 2], kind="stable")
    return "".join(str(int(det.labels[i])) for i in order)


def reading_metrics(scenes, readings: list[Detections]) -> dict:
    """Number accuracy, single-digit and negative rates from reading-level detections."""
    kinds = np.asarray(scenes.kinds)
    n_digits = np.array([len(b) for b in scenes.labels])
    rows = np.flatnonzero((kinds == "row") & (n_digits >= 2) & (n_digits <= 5))
    singles = np.flatnonzero(kinds == "single")
    negs = np.flatnonzero(kinds == "negative")
    right = [read_text(readings[i]) == scenes.text(i) for i in rows]

    def one_right(i):
        d = readings[i]
        return (len(d) == 1 and int(d.labels[0]) == int(scenes.labels[i][0])
                and float(iou(d.boxes[0], scenes.boxes[i][0])) >= 0.5)

    clean = [len(readings[i]) == 0 for i in negs]
    rate = lambda v: float(np.mean(v)) if len(v) else None
    return {"number_accuracy": rate(right), "numbers": int(len(rows)),
            "single_digit_one_right": rate([one_right(i) for i in singles]),
            "single_digit_canvases": int(len(singles)),
            "negatives_clean": rate(clean), "negative_canvases": int(len(negs)),
            "false_detection_rate": None if not len(clean) else 1.0 - rate(clean)}


READ_METRICS = ("number_accuracy", "single_digit_one_right", "negatives_clean")


def read_metrics(reader, scenes) -> dict:
    """``reading_metrics`` of ``Reader.read`` on every canvas of ``scenes``, each given to
    it as an image (framing included), as ``read_<metric>``."""
    readings = []
    for canvas in scenes.canvases:
        digits = reader.read(canvas[..., 0]).digits
        readings.append(Detections(np.array([d.box for d in digits], np.float32).reshape(-1, 4),
                                   np.array([d.confidence for d in digits], np.float32),
                                   np.array([d.label for d in digits], np.int64)))
    m = reading_metrics(scenes, readings)
    return {f"read_{k}": m[k] for k in READ_METRICS}


def evaluate_detector(reader, scenes=None, limit: int | None = None,
                      mnist_path: str | None = None, progress=None,
                      return_details: bool = False, through_read: bool = False):
    """Every metric above for a ``Reader`` on the detection test split (or ``scenes``).

    ``limit``: an evenly spread subset of that many canvases (all kinds kept).
    ``through_read``: add ``read_metrics`` (one ``read`` per canvas: slower).
    """
    from locmnist.reader import AGNOSTIC_IOU
    from locmnist.scenes import detection_test_split, subset

    scenes = scenes if scenes is not None else detection_test_split(mnist_path)
    if limit and limit < len(scenes):
        scenes = subset(scenes, np.linspace(0, len(scenes) - 1, limit).round().astype(int))
    raw = reader.detect_canvases(scenes.canvases, threshold=0.05, progress=progress)
    readings = [reader.closer_look(c, select(d, reader.candidate_threshold, AGNOSTIC_IOU))
                for c, d in zip(scenes.canvases, raw)]
    metrics = coco_map(scenes, raw)
    metrics.update(reading_metrics(scenes, readings))
    if through_read:
        metrics.update(read_metrics(reader, scenes))
    metrics["n_canvases"] = int(len(scenes))
    metrics["n_digits"] = int(sum(len(b) for b in scenes.labels))
    metrics["score_threshold"] = float(reader.config.score_threshold)
    metrics["acceptance"] = None if not reader.accepting else {
        "min_peak": reader.acceptance.min_peak, "threshold": reader.acceptance.threshold}
    metrics["closer_look"] = None if reader.classifier is None else reader.classifier.source
    if return_details:
        return metrics, {"scenes": scenes, "raw": raw, "readings": readings}
    return metrics

