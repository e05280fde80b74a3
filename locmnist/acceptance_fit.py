"""Fitting the reader's ``Acceptance`` (``locmnist.acceptance``) on validation scenes.

    python -m locmnist.acceptance_fit [--detector models/detector.keras] [--model ...]

Validation scenes only (``scenes.detection_validation_split``: digits both shipped
models held out, other seeds, training fonts), never the test split. For each
candidate peak floor in ``MIN_PEAKS``:

1. every candidate (peak >= floor, one label per digit) gets its features; it is a
   digit when it is the first, by peak, to cover a true digit at IoU >= 0.5 (so
   duplicates, fragments and anything on a canvas with no digit are not);
2. a logistic regression (IRLS, a light L2) gives the weights;
3. every threshold is scored by the reading metrics of issue 10, and the pair
   (floor, threshold) kept is the one whose worst metric stands highest above its
   target (then the second worst, ...), so no one target is bought with another.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from locmnist.acceptance import Acceptance, features, file_sha256, inside_better, ink_features
from locmnist.boxes import iou
from locmnist.decoding import Detections
from locmnist.detection_eval import reading_metrics, select

MIN_PEAKS = (0.1, 0.15, 0.2)
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.025), 3)
TARGETS = {"number_accuracy": 0.95, "single_digit_one_right": 0.99, "negatives_clean": 0.95}
L2 = 1e-2


def candidates(reader, scenes, raw, min_peak: float) -> dict:
    """Per candidate: features (N, 4), is-a-digit (N,), canvas index, detection,
    classifier label and its probability; candidates of one canvas are contiguous."""
    from locmnist.reader import AGNOSTIC_IOU, closer_look_inputs

    dets, xs, ys, canvas_of, inks = [], [], [], [], []
    for i, d in enumerate(raw):
        det = select(d, min_peak, AGNOSTIC_IOU)
        dets.append(det)
        if not len(det):
            continue
        canvas = scenes.canvases[i][..., 0].astype(np.float32) / 255.0
        xs.append(closer_look_inputs(canvas, det.boxes))
        inks.append(np.stack([*ink_features(canvas, det.boxes),
                              inside_better(det.boxes, det.scores)], axis=1))
        gt = scenes.boxes[i]
        overlaps = iou(det.boxes[:, None], gt[None]) if len(gt) else np.zeros((len(det), 0))
        taken = set()
        for j in range(len(det)):      # best peak first: a second box on a digit is no digit
            g = int(overlaps[j].argmax()) if len(gt) else -1
            hit = g >= 0 and overlaps[j, g] >= 0.5 and g not in taken
            if hit:
                taken.add(g)
            ys.append(hit)
        canvas_of += [i] * len(det)
    x = np.concatenate(xs) if xs else np.zeros((0, 75, 75, 1), np.float32)
    outs = [reader.classifier.raw_outputs(x[k:k + 512]) for k in range(0, len(x), 512)]
    cal = reader.classifier.calibration
    probs = cal.probabilities(np.concatenate([o[0] for o in outs]))
    digit = np.concatenate([o[2] for o in outs])
    peak = np.concatenate([d.scores for d in dets])
    ink = np.concatenate(inks)
    return {"x": features(peak, digit, *ink.T), "y": np.array(ys, bool),
            "canvas": np.array(canvas_of, int), "dets": dets, "labels": probs.argmax(1),
            "p_label": probs.max(1), "digit": digit, "inside": ink[:, 2]}


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 50):
    """(weights, bias) of a logistic regression by Newton's method (IRLS)."""
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(a.shape[1])
    reg = l2 * np.eye(a.shape[1])
    reg[-1, -1] = 0.0                                    # the bias is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-a @ w))
        grad = a.T @ (p - y) + reg @ w
        hess = (a * (p * (1 - p))[:, None]).T @ a + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return tuple(float(v) for v in w[:-1]), float(w[-1])


def readings_at(table: dict, acc: Acceptance, prob: np.ndarray, canvases) -> list[Detections]:
    """What the reader would read on each of ``canvases`` (N, H, W, 1) uint8 with ``acc``
    (its threshold; ``prob``: its probabilities of every candidate), settled as the
    reader settles them (``Acceptance.settle``)."""
    out, start = [], 0
    for i, det in enumerate(table["dets"]):
        k = slice(start, start + len(det))
        start += len(det)
        keep, p = acc.settle(canvases[i][..., 0].astype(np.float32) / 255.0, det.boxes,
                             det.scores, table["digit"][k], table["inside"][k], prob[k],
                             prob[k] >= acc.threshold)
        out.append(Detections(det.boxes[keep], (p * table["p_label"][k])[keep],
                              table["labels"][k][keep]))
    return out


def margins(metrics: dict) -> tuple[float, ...]:
    """How far each reading metric stands above its target (negative: below), worst
    first: tuples compare worst margin first, then the next."""
    return tuple(sorted(metrics[k] - t for k, t in TARGETS.items()))


def fit(reader, scenes, raw, detector_sha256: str = "", classifier_sha256: str = "",
        log=print) -> Acceptance:
    best = None
    for min_peak in MIN_PEAKS:
        table = candidates(reader, scenes, raw, min_peak)
        weights, bias = fit_logistic(table["x"], table["y"])
        prob = Acceptance(weights, bias, 0.5, min_peak).probability(table["x"])
        for t in THRESHOLDS:
            acc = Acceptance(weights, bias, float(t), min_peak)
            m = reading_metrics(scenes, readings_at(table, acc, prob, scenes.canvases))
            log(f"min_peak {min_peak:.2f} threshold {t:.3f}: numbers {m['number_accuracy']:.4f} "
                f"single {m['single_digit_one_right']:.4f} negatives {m['negatives_clean']:.4f}")
            if best is None or margins(m) > best[0]:
                best = (margins(m), Acceptance(weights, bias, float(t), min_peak, detector_sha256,
                                               classifier_sha256, {k: m[k] for k in TARGETS}))
    return best[1]


def main(argv=None) -> int:
    from locmnist.reader import Reader
    from locmnist.runs import default_detector_path, sidecar
    from locmnist.scenes import detection_validation_split

    ap = argparse.ArgumentParser(prog="python -m locmnist.acceptance_fit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector", default=None, help="detector .keras (default: the shipped one)")
    ap.add_argument("--model", default="default", help="single-digit model for the closer look")
    ap.add_argument("--mnist", default=None)
    args = ap.parse_args(argv)
    path = args.detector or default_detector_path()
    reader = Reader.load(path, classifier=args.model, tflite=False)   # batches only
    cal = reader.classifier.calibration
    if cal.rule != "digit" or not cal.fitted:
        ap.error("the single-digit model needs a fitted 'digit' output (python -m locmnist "
                 "calibrate): it is one of the acceptance's features")
    scenes = detection_validation_split(args.mnist)
    raw = reader.detect_canvases(scenes.canvases, threshold=min(MIN_PEAKS))
    from dataclasses import replace

    from locmnist.runs import model_file

    source = model_file(reader.classifier.source)
    acc = fit(reader, scenes, raw, file_sha256(path),
              file_sha256(source) if source.is_file() else "",
              log=lambda s: print(s, file=sys.stderr))
    acc = replace(acc, validation={**acc.validation, "scenes": len(scenes),
                                   "classifier": source.name, "note": "validation split"})
    acc.save(sidecar(path, "acceptance"))
    print(f"{sidecar(path, 'acceptance')}: min_peak {acc.min_peak} threshold {acc.threshold} "
          f"weights {acc.weights} bias {acc.bias:.3f} validation {acc.validation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
