import numpy as np
import pytest

from locmnist import styles
from locmnist.boxes import tight_box
from locmnist.config import Config
from locmnist.synthesis import styles_split
from locmnist.training import add_style_variants


@pytest.mark.parametrize("style", list(styles.STYLES))
def test_each_style_renders_like_an_mnist_digit(style):
    rng = np.random.default_rng(0)
    for _ in range(20):
        img = styles.render(style, rng)
        assert img.shape == (28, 28) and img.dtype == np.uint8
        x0, y0, x1, y1 = tight_box(img / 255.0)
        assert max(x1 - x0, y1 - y0) in range(17, 23)      # fitted in 20x20, as MNIST is
        assert 11 <= (x0 + x1) / 2 <= 17 and 11 <= (y0 + y1) / 2 <= 17   # centred
        assert img.max() == 255


def test_variants_are_seeded_balanced_and_labelled():
    a, la, ka = styles.variants(70, seed=1)
    b, lb, kb = styles.variants(70, seed=1)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, styles.variants(70, seed=2)[0])
    assert set(ka) == set(styles.STYLES) and all((ka == k).sum() == 10 for k in styles.STYLES)
    assert all(styles.STYLES[k] == lab for k, lab in zip(ka, la))


def test_test_variants_come_from_another_stream():
    train = styles.variants(50, seed=0, split="train")[0]
    test = styles.variants(50, seed=0, split="test")[0]
    assert not any(np.array_equal(t, u) for t in train for u in test)


def test_crossed_seven_has_its_bar():
    """The cross is drawn: a 7's middle rows hold a second, horizontal run of ink."""
    rng = np.random.default_rng(0)
    crossed = [styles.render("crossed_7", rng) for _ in range(20)]
    widest_middle_run = [(img[10:18] > 128).sum(axis=1).max() for img in crossed]
    assert min(widest_middle_run) >= 6        # a plain 7's stem is 2-4 px wide there


def test_training_mix_adds_the_configured_share():
    x = np.zeros((200, 28, 28), np.uint8)
    y = np.zeros(200, np.uint8)
    mx, my = add_style_variants(x, y, Config(styles_fraction=0.1))
    assert len(mx) == len(my) == 220 and set(my[200:]) <= set(styles.STYLES.values())
    same = add_style_variants(x, y, Config(styles_fraction=0.0))
    assert same[0] is x


def test_styles_split(mnist):
    canvases, boxes, labels, kinds = styles_split()
    n = len(mnist.x_test) + styles.TEST_VARIANTS
    assert canvases.shape == (n, 75, 75, 1) and canvases.dtype == np.uint8
    assert np.array_equal(labels[:len(mnist.x_test)], mnist.y_test)
    assert (kinds == "mnist").sum() == len(mnist.x_test)
    for k, digit in styles.STYLES.items():
        assert (labels[kinds == k] == digit).all() and (kinds == k).sum() == 500
    # Boxes come from the float canvases; storing them as uint8 moves ink by at most
    # one rounding step at the threshold, so a box edge by at most one pixel.
    for canvas, box in zip(canvases[-200:], boxes[-200:]):
        assert np.abs(tight_box(canvas / 255.0) / 75 - box).max() <= 1 / 75 + 1e-6


def test_variants_boxes_are_tight_and_hold_all_ink():
    from locmnist.boxes import INK_THRESHOLD
    from locmnist.synthesis import synthesize_numpy

    images, _, _ = styles.variants(140, seed=5, split="test")
    canvases, boxes = synthesize_numpy(images, styles.styles_split_config(), seed=9)
    for canvas, box in zip(canvases, boxes):
        x0, y0, x1, y1 = np.rint(box * 75).astype(int)
        ink = canvas[..., 0] >= INK_THRESHOLD
        assert ink[y0:y1, x0:x1].sum() == ink.sum() > 0
        assert np.allclose(tight_box(canvas) / 75, box)
