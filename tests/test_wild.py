import numpy as np

from locmnist.boxes import iou
from locmnist.wild import KINDS, wild_set


def test_wild_set_is_seeded_and_boxes_hold_the_ink():
    a = list(wild_set(per_kind=6, seed=5))
    b = list(wild_set(per_kind=6, seed=5))
    assert [x.kind for x in a] == [k for k in KINDS for _ in range(6)]
    for x, y in zip(a, b):
        assert x.label == y.label and x.box == y.box
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
        w, h = x.image.size
        x0, y0, x1, y1 = x.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert iou(a[0].box, a[1].box) < 1.0   # not the same image over and over
