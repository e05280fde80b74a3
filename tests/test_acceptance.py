"""The reader's fitted acceptance: its features on hand-made canvases, the logistic
score, the fit, and the file that ties it to one detector."""
import json

import numpy as np
import pytest

from locmnist.acceptance import (FEATURES, Acceptance, features, file_sha256, for_detector,
                                 inside_better, ink_features)
from locmnist.acceptance_fit import fit_logistic, margins, readings_at
from locmnist.decoding import Detections


def test_ink_features_tell_a_whole_digit_from_a_fragment_of_a_longer_stroke():
    canvas = np.zeros((40, 100), np.float32)
    canvas[5:25, 5:15] = 1.0                      # a digit: all its ink in box 0
    canvas[10:12, 40:90] = 1.0                    # a long stroke; box 1 holds 10 px of 50
    canvas[30:35, 60:64] = 1.0                    # a speck no box covers (20 px)
    boxes = np.array([[5, 5, 15, 25], [40, 8, 50, 14]], np.float32)
    leak, uncovered = ink_features(canvas, boxes)
    assert leak[0] == 0.0
    assert leak[1] == pytest.approx(80 / 20)      # 40 px x 2 rows outside, per 10 x 2 inside
    total = 200 + 100 + 20
    assert uncovered.tolist() == pytest.approx([(80 + 20) / total] * 2)


def test_inside_counts_only_boxes_with_a_higher_peak():
    boxes = np.array([[0, 0, 20, 40], [5, 20, 15, 40], [60, 0, 80, 40]], np.float32)
    assert inside_better(boxes, np.array([0.9, 0.5, 0.7])).tolist() == [0.0, 1.0, 0.0]
    # the same small box, now the better peak: its big neighbour is half inside nothing
    assert inside_better(boxes, np.array([0.4, 0.9, 0.7]))[1] == 0.0


def test_probability_is_the_logistic_of_the_weighted_features():
    acc = Acceptance((1.0, 0.5, -2.0, -10.0, -3.0), 0.25, 0.5, 0.15)
    x = features([0.5, 0.8], [0.5, 0.9], [0.0, 1.0], [0.0, 0.1], [0.0, 1.0])
    assert x.shape == (2, len(FEATURES))
    z0 = 0.25                                          # logit(0.5) = 0, log1p(0) = 0
    z1 = np.log(4) + 0.5 * np.log(9) - 2 * np.log(2) - 1.0 - 3.0 + 0.25
    assert acc.probability(x) == pytest.approx(1 / (1 + np.exp(-np.array([z0, z1]))))


def test_possible_is_false_only_where_no_digit_output_could_be_accepted():
    """The reader skips the crops of candidates ``possible`` rules out: that must never
    drop one some ``digit`` output would have accepted, for either sign of its weight."""
    rng = np.random.default_rng(0)
    n = 400
    peak, leak = rng.uniform(0.1, 1, n), rng.exponential(0.5, n)
    uncovered, inside = np.full(n, rng.uniform(0, 0.2)), rng.uniform(0, 1, n) * (rng.random(n) < .3)
    digits = np.concatenate([[0.0, 1e-6, 1e-4], rng.uniform(0, 1, 50), [1 - 1e-4, 1.0]])
    for w_digit in (0.63, -0.5):
        acc = Acceptance((2.3, w_digit, -3.2, -40.0, -4.3), -0.7, 0.525, 0.15)
        ok = acc.possible(peak, leak, uncovered, inside)
        accepted = np.zeros(n, bool)
        for d in digits:
            p = acc.probability(features(peak, np.full(n, d), leak, uncovered, inside))
            accepted |= (p >= acc.threshold) & (peak >= acc.min_peak)
        assert not (accepted & ~ok).any()       # never rules out an acceptable one
        assert (ok & ~accepted).sum() == 0      # and is tight: the ends are reached
        assert 0 < ok.sum() < n                 # both kinds occur in this sample


def _v_and_a_digit():
    """A canvas (40, 100): a V whose two strokes meet at the bottom (candidates 0 and 1,
    a box on each stroke), and a separate digit-like blob (candidate 2)."""
    canvas = np.zeros((40, 100), np.float32)
    for y in range(5, 35):                         # two diagonals meeting at (20, 34)
        dx = (34 - y) // 2
        canvas[y, 20 - dx - 1:20 - dx + 1] = 1.0
        canvas[y, 20 + dx - 1:20 + dx + 1] = 1.0
    canvas[5:35, 60:72] = 1.0
    boxes = np.array([[3, 4, 20, 35], [20, 4, 37, 35], [60, 5, 72, 35]], np.float32)
    return canvas, boxes


def test_settle_drops_a_stroke_that_leaks_once_its_neighbour_is_rejected():
    """Against every candidate's box the V's strokes cover each other's ink, so the
    stronger stroke passes; once the weaker is rejected it leaks into ink no accepted
    box covers, and settling rejects it too. The lone blob is untouched."""
    canvas, boxes = _v_and_a_digit()
    peak, digit, inside = np.array([0.8, 0.3, 0.8]), np.array([0.9, 0.05, 0.9]), np.zeros(3)
    acc = Acceptance((2.0, 1.0, -6.0, -20.0, -4.0), 0.0, 0.5, 0.15)
    prob = acc.probability(features(peak, digit, *ink_features(canvas, boxes), inside))
    keep = prob >= acc.threshold
    assert keep.tolist() == [True, False, True]    # the first decision takes one stroke
    settled, p = acc.settle(canvas, boxes, peak, digit, inside, prob, keep)
    assert settled.tolist() == [False, False, True]
    leak, uncovered = ink_features(canvas, boxes[[0, 2]])
    assert leak[0] > 0.5 and leak[1] == 0.0        # why: the stroke's other half is bare
    # The blob's probability is its last round's: against its own box alone.
    want = acc.probability(features(peak[2:], digit[2:], *ink_features(canvas, boxes[2:]),
                                    inside[2:]))
    assert p[2] == pytest.approx(want[0]) and want[0] >= acc.threshold


def test_settle_keeps_a_decision_that_accepted_every_candidate_or_none():
    canvas, boxes = _v_and_a_digit()
    acc = Acceptance((2.0, 1.0, -6.0, -20.0, -4.0), 0.0, 0.5, 0.15)
    prob = np.array([0.9, 0.8, 0.7])
    for keep in (np.ones(3, bool), np.zeros(3, bool)):
        settled, p = acc.settle(canvas, boxes, [0.8] * 3, [0.9] * 3, np.zeros(3), prob, keep)
        assert settled.tolist() == keep.tolist() and p.tolist() == prob.tolist()


def test_the_fit_scores_readings_settled_as_the_reader_settles_them():
    """``acceptance_fit.readings_at`` picks the threshold from what the reader would read:
    on the V beside a blob, the blob alone, with its settled probability."""
    canvas, boxes = _v_and_a_digit()
    peak, digit, inside = np.array([0.8, 0.3, 0.8]), np.array([0.9, 0.05, 0.9]), np.zeros(3)
    acc = Acceptance((2.0, 1.0, -6.0, -20.0, -4.0), 0.0, 0.5, 0.15)
    prob = acc.probability(features(peak, digit, *ink_features(canvas, boxes), inside))
    table = {"dets": [Detections(boxes, peak.astype(np.float32), np.array([1, 1, 8]))],
             "digit": digit, "inside": inside, "p_label": np.full(3, 0.5),
             "labels": np.array([1, 1, 8])}
    canvases = (canvas * 255).astype(np.uint8)[None, ..., None]
    (reading,) = readings_at(table, acc, prob, canvases)
    assert reading.labels.tolist() == [8]
    _, settled = acc.settle(canvas, boxes, peak, digit, inside, prob, prob >= 0.5)
    assert reading.scores[0] == pytest.approx(settled[2] * 0.5)


def test_fit_logistic_finds_the_separating_direction():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] - 2 * x[:, 1] + 0.3 * rng.normal(size=400)) > 0.5
    (w0, w1), bias = fit_logistic(x, y, l2=1e-3)
    assert w0 > 0 and w1 < 0 and bias < 0
    assert w1 / w0 == pytest.approx(-2.0, rel=0.2)


def test_margins_rank_the_worst_target_first():
    good = {"number_accuracy": 0.96, "single_digit_one_right": 0.995, "negatives_clean": 0.96}
    lopsided = {"number_accuracy": 0.99, "single_digit_one_right": 0.999,
                "negatives_clean": 0.949}
    assert margins(good)[0] == pytest.approx(0.005)
    assert margins(good) > margins(lopsided)           # no target bought with another


def test_the_file_applies_only_to_the_detector_it_was_fitted_for(tmp_path):
    model, classifier = tmp_path / "det.keras", tmp_path / "digits.keras"
    model.write_bytes(b"weights")
    classifier.write_bytes(b"classifier weights")
    acc = Acceptance((1.0, 2.0, 3.0, 4.0, 5.0), -1.0, 0.4, 0.12, file_sha256(model),
                     file_sha256(classifier), {"number_accuracy": 0.96})
    acc.save(tmp_path / "det.acceptance.json")
    assert json.loads((tmp_path / "det.acceptance.json").read_text())["features"] == list(FEATURES)
    assert for_detector(model) == acc == for_detector(model, classifier)
    classifier.write_bytes(b"a retrained single-digit model")
    assert for_detector(model, classifier) is None
    model.write_bytes(b"retrained weights")           # a new detector, the old file beside it
    assert for_detector(model) is None
    assert for_detector(tmp_path / "other.keras") is None
    with pytest.raises(ValueError):
        Acceptance((1.0, 2.0), 0.0, 0.5, 0.1)


@pytest.mark.parametrize("text", ["{", "[1]", '{"features": ["peak"]}', "{}",
                                  '{"features": ["peak", "digit", "leak", "uncovered", "inside"],'
                                  ' "weights": [1, 2], "bias": 0, "threshold": 0.5,'
                                  ' "min_peak": 0.1}'])
def test_an_unreadable_file_leaves_the_plain_rule_instead_of_breaking_the_reader(tmp_path, text):
    model = tmp_path / "det.keras"
    model.write_bytes(b"weights")
    (tmp_path / "det.acceptance.json").write_text(text)
    assert for_detector(model) is None
