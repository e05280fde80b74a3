"""Decoding hand-made detector maps: peaks, boxes, thresholds, one label per digit."""
import numpy as np

from locmnist.decoding import decode, decode_batch
from locmnist.detector import encode_targets


def maps(h=10, w=12):
    return (np.zeros((h, w, 10), np.float32), np.zeros((h, w, 2), np.float32),
            np.zeros((h, w, 2), np.float32))


def test_two_peaks_give_two_exact_boxes_best_first():
    heat, size, off = maps()
    heat[2, 3, 7] = 0.9
    heat[2, 4, 7] = 0.6           # a shoulder next to the peak: not a second detection
    heat[6, 9, 1] = 0.8
    size[2, 3] = (4.0, 5.0)       # 16 x 20 px
    off[2, 3] = (0.5, 0.25)
    size[6, 9] = (2.0, 3.0)
    off[6, 9] = (0.0, 0.0)
    d = decode(heat, size, off, threshold=0.3)
    assert d.labels.tolist() == [7, 1]
    np.testing.assert_allclose(d.scores, [0.9, 0.8])
    # centre (3.5, 2.25) cells = (14, 9) px; 16 x 20 px around it
    np.testing.assert_allclose(d.boxes[0], [6, -1, 22, 19])
    np.testing.assert_allclose(d.boxes[1], [32, 18, 40, 30])


def test_threshold_and_top_k():
    heat, size, off = maps()
    for k, (y, x) in enumerate([(1, 1), (1, 5), (1, 9), (5, 1), (5, 5)]):
        heat[y, x, k] = 0.2 + 0.15 * k
    assert len(decode(heat, size, off, threshold=0.3)) == 4
    d = decode(heat, size, off, threshold=0.0, top_k=2)
    assert d.labels.tolist() == [4, 3]
    assert len(decode(*maps(), threshold=0.05)) == 0


def test_one_label_per_digit_when_asked():
    heat, size, off = maps()
    heat[4, 4, 4] = 0.7           # the same ink scored as a 4 and as a 9
    heat[4, 4, 9] = 0.5
    size[4, 4] = (3.0, 4.0)
    assert sorted(decode(heat, size, off, threshold=0.3).labels.tolist()) == [4, 9]
    d = decode(heat, size, off, threshold=0.3, agnostic_iou=0.5)
    assert d.labels.tolist() == [4]


def test_nan_maps_give_no_detection():
    heat, size, off = maps()
    heat[:] = np.nan
    assert len(decode(heat, size, off)) == 0


def test_targets_decode_back_to_their_boxes():
    boxes = np.array([[10, 12, 31, 49], [50, 20, 66, 44]], np.float32)
    heat, size, off = encode_targets(boxes, np.array([3, 8]), 64, 96)
    assert heat.shape == (16, 24, 10) and heat.max() == 1.0
    d = decode_batch({"heatmap": heat[None], "size": size[None, ..., :2],
                      "offset": off[None, ..., :2]}, threshold=0.99)[0]
    order = np.argsort(d.boxes[:, 0])
    np.testing.assert_allclose(d.boxes[order], boxes, atol=1e-4)
    assert d.labels[order].tolist() == [3, 8]
