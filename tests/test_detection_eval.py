"""COCO metrics through pycocotools on hand-worked cases, and the reading metrics."""
import numpy as np
import pytest

from locmnist.decoding import Detections
from locmnist.detection_eval import (coco_metrics, read_metrics, read_text, reading_metrics,
                                     select)
from locmnist.scenes import SceneSet


def det(boxes, scores, labels):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.array(labels, np.int64))


GT_BOXES = [np.array([[10, 10, 30, 40], [50, 10, 70, 40]], np.float32)]
GT_LABELS = [np.array([1, 2])]


def test_perfect_detections_score_one():
    m = coco_metrics(GT_BOXES, GT_LABELS, [det(GT_BOXES[0], [0.9, 0.8], [1, 2])])
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)
    assert m["ap_per_class"]["1"] == pytest.approx(1.0)
    assert m["ap_per_class"]["2"] == pytest.approx(1.0)


def test_a_loose_box_counts_at_low_iou_thresholds_only():
    # Class 2's box is 20 x 30 against 20 x 30 shifted by 5 px in x:
    # IoU = 15*30 / (2*600 - 450) = 0.6, a match at 0.50, 0.55 and 0.60 of the ten thresholds.
    m = coco_metrics(GT_BOXES, GT_LABELS, [det([[10, 10, 30, 40], [55, 10, 75, 40]],
                                               [0.9, 0.8], [1, 2])])
    assert m["map50"] == pytest.approx(1.0)
    assert m["ap_per_class"]["2"] == pytest.approx(0.3)
    assert m["map"] == pytest.approx((1.0 + 0.3) / 2)


def test_a_confident_false_positive_halves_precision():
    # A wrong "1" ranked above the right one: precision 1/2 at the only recall point.
    m = coco_metrics(GT_BOXES, GT_LABELS, [det([[80, 80, 90, 90], [10, 10, 30, 40],
                                                [50, 10, 70, 40]], [0.95, 0.9, 0.8], [1, 1, 2])])
    assert m["ap_per_class"]["1"] == pytest.approx(0.5)
    assert m["ap_per_class"]["2"] == pytest.approx(1.0)


def test_no_detection_scores_zero():
    m = coco_metrics(GT_BOXES, GT_LABELS, [det([], [], [])])
    assert m["map"] == 0.0 and m["map50"] == 0.0


def scene_set():
    boxes = [np.array([[40, 5, 50, 20], [10, 5, 20, 20]], np.float32),   # row "37"
             np.array([[10, 10, 20, 30]], np.float32),                     # single 4
             np.zeros((0, 4), np.float32)]                                 # negative
    labels = [np.array([7, 3]), np.array([4]), np.zeros(0, np.int64)]
    return SceneSet(np.zeros((3, 32, 64, 1), np.uint8), boxes, labels,
                    np.array(["row", "single", "negative"]))


def test_reading_metrics_on_hand_made_readings():
    s = scene_set()
    assert s.text(0) == "37"
    good = [det([[40, 5, 50, 20], [10, 5, 20, 20]], [.9, .9], [7, 3]),
            det([[10, 10, 20, 30]], [.9], [4]), det([], [], [])]
    m = reading_metrics(s, good)
    assert m["number_accuracy"] == 1.0 and m["single_digit_one_right"] == 1.0
    assert m["negatives_clean"] == 1.0 and m["false_detection_rate"] == 0.0
    bad = [det([[40, 5, 50, 20]], [.9], [7]),                              # a digit missed
           det([[10, 10, 20, 30], [40, 10, 50, 30]], [.9, .5], [4, 4]),   # one too many
           det([[1, 1, 9, 9]], [.4], [1])]                                 # a false detection
    m = reading_metrics(s, bad)
    assert m["number_accuracy"] == 0.0 and m["single_digit_one_right"] == 0.0
    assert m["negatives_clean"] == 0.0 and m["false_detection_rate"] == 1.0


def test_read_metrics_score_what_read_returns_for_each_canvas():
    """The through-read rows: each canvas goes to ``Reader.read`` as an image (H, W), and
    its Reading's digits (boxes in the canvas's pixels) are scored like the others."""
    from locmnist.results import Digit, Reading

    s = scene_set()
    answers = iter([                      # right number, one digit too many, a false 1
        (Digit(3, .9, (10, 5, 20, 20), ()), Digit(7, .8, (40, 5, 50, 20), ())),
        (Digit(4, .9, (10, 10, 20, 30), ()), Digit(1, .5, (40, 10, 50, 30), ())),
        (Digit(1, .6, (1, 1, 9, 9), ()),)])
    seen = []

    class Fake:
        def read(self, image):
            seen.append(np.shape(image))
            return Reading(next(answers), (64, 32))

    m = read_metrics(Fake(), s)
    assert seen == [(32, 64)] * 3
    assert m == {"read_number_accuracy": 1.0, "read_single_digit_one_right": 0.0,
                 "read_negatives_clean": 0.0}


def test_select_applies_the_reading_threshold_and_one_label_per_digit():
    d = det([[10, 10, 20, 30], [10, 10, 20, 30], [40, 10, 50, 30]], [0.8, 0.6, 0.2], [4, 9, 1])
    assert read_text(select(d, 0.3, 0.5)) == "4"
    assert sorted(select(d, 0.1, None).labels.tolist()) == [1, 4, 9]
