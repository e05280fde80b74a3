"""evaluation.score, the arithmetic behind every published figure, on hand-worked cases."""
import numpy as np
import pytest

from locmnist.evaluation import predict_batches, score


def one_hot_probs(predicted):
    probs = np.full((len(predicted), 10), 0.01)
    probs[np.arange(len(predicted)), predicted] = 0.91
    return probs


# Four canvases, worked by hand (normalized boxes, pixel-edge convention):
TRUE = np.array([[0, 0, .5, .5],      # 1. predicted exactly:            IoU 1
                 [0, 0, 1, 1],        # 2. top 60% of it:                 IoU 0.6 / 1 = 0.6
                 [0, 0, .5, .5],      # 3. shifted right by half a side:  IoU .125 / .375 = 1/3
                 [0, 0, .5, .5]])     # 4. disjoint:                      IoU 0
PRED = np.array([[0, 0, .5, .5],
                 [0, 0, 1, .6],
                 [.25, 0, .75, .5],
                 [.5, .5, 1, 1]])
LABELS = np.array([0, 1, 1, 2])
PREDICTED = [0, 1, 2, 2]              # the third is wrong: 3 of 4 right


def test_score_by_hand():
    m = score(one_hot_probs(PREDICTED), PRED, LABELS, TRUE)
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["iou_mean"] == pytest.approx((1 + 0.6 + 1 / 3 + 0) / 4)
    assert m["iou_ge_0.5"] == pytest.approx(2 / 4)     # 1 and 0.6
    assert m["iou_ge_0.6"] == pytest.approx(2 / 4)     # 0.6 counts: the threshold is inclusive
    assert m["iou_ge_0.75"] == pytest.approx(1 / 4)
    # squared errors: 0; 0.4^2; 2 x 0.25^2; 4 x 0.5^2 -> 1.285 over 16 numbers
    assert m["box_mse"] == pytest.approx(1.285 / 16)
    assert m["per_class_accuracy"] == {**{str(c): 0.0 for c in range(10)},
                                       "0": 1.0, "1": 0.5, "2": 1.0}  # no 3..9: 0, not NaN
    confusion = np.array(m["confusion_matrix"])
    assert confusion.sum() == 4 and confusion[1, 2] == 1 and confusion[1, 1] == 1
    assert confusion[0, 0] == confusion[2, 2] == 1


def test_an_inside_out_box_scores_as_the_same_box():
    m = score(one_hot_probs([3]), np.array([[.5, .5, 0, 0]]), np.array([3]),
              np.array([[0, 0, .5, .5]]))
    assert m["iou_mean"] == pytest.approx(1.0) and m["accuracy"] == 1.0


class FakePredictor:
    """Records what it is given; answers class = batch position, box = the input's mean."""

    def __init__(self):
        self.batches = []

    def raw_outputs(self, x):  # as Predictor.raw_outputs: (probs, boxes, digit score or None)
        self.batches.append(x)
        probs = one_hot_probs([i % 10 for i in range(len(x))])
        return probs, np.repeat(x.mean(axis=(1, 2, 3))[:, None], 4, axis=1), None


def test_predict_batches_scales_uint8_and_keeps_order():
    canvases = np.zeros((5, 75, 75, 1), np.uint8)
    canvases[:, 0, 0, 0] = np.arange(5) * 51           # 0, 51, ..., 204
    fake, seen = FakePredictor(), []
    probs, boxes = predict_batches(fake, canvases, batch_size=2, progress=seen.append)
    assert [len(b) for b in fake.batches] == [2, 2, 1]
    assert all(b.dtype == np.float32 and b.max() <= 1.0 for b in fake.batches)
    np.testing.assert_allclose(boxes[:, 0], np.arange(5) * 51 / 255 / 75 ** 2, rtol=1e-5)
    assert probs.shape == (5, 10) and seen[-1] == 1.0
