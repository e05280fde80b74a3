import numpy as np
import pytest

from locmnist.boxes import draw_boxes, inside_share, iou, tight_box


@pytest.mark.parametrize("a, b, expected", [
    ((0, 0, 2, 2), (0, 0, 2, 2), 1.0),             # identical
    ((0, 0, 2, 2), (1, 1, 3, 3), 1 / 7),           # overlap 1, union 4 + 4 - 1
    ((0, 0, 2, 2), (2, 0, 4, 2), 0.0),             # touching edges
    ((0, 0, 4, 4), (1, 1, 3, 3), 4 / 16),          # one inside the other
    ((0, 0, 1, 1), (0.5, 0, 1.5, 1), 0.5 / 1.5),   # half shifted
    ((2, 2, 0, 0), (0, 0, 2, 2), 1.0),             # inside-out box is sorted first
    ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),             # empty union
])
def test_iou_hand_worked(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)


def test_iou_broadcasts():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
    assert iou(a, (0, 0, 2, 2)).tolist() == pytest.approx([1.0, 0.25])


def test_tight_box_uses_pixel_edges():
    img = np.zeros((10, 12))
    img[3:6, 4:9] = 1.0          # rows 3..5, columns 4..8
    assert tight_box(img).tolist() == [4, 3, 9, 6]
    assert tight_box(np.zeros((5, 5))) is None


def test_draw_boxes_colours_and_size():
    canvas = np.zeros((75, 75), np.float32)
    img = draw_boxes(canvas, predicted=(0.1, 0.1, 0.5, 0.5), true=(0.5, 0.5, 0.9, 0.9), scale=4)
    assert img.size == (300, 300) and img.mode == "RGB"
    a = np.asarray(img)
    assert (a[:, :, 0] > 200).any() and (a[:, :, 1] > 150).any()
    assert tuple(a[40, 30]) == (255, 40, 40)         # the red predicted box's left edge at x=30


def test_inside_share_is_the_share_of_each_box_inside_each_other_box():
    a = np.array([[0, 0, 2, 2], [4, 4, 5, 5]])
    b = np.array([[1, 0, 3, 2], [0, 0, 10, 10], [6, 6, 7, 7]])
    np.testing.assert_allclose(inside_share(a, b), [[0.5, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert inside_share(a, np.zeros((0, 4))).shape == (2, 0)
