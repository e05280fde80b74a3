import numpy as np
import pytest

from locmnist.boxes import INK_THRESHOLD, tight_box
from locmnist.config import Config
from locmnist import synthesis
from locmnist.synthesis import synthesize, synthesize_numpy


# The standard split's settings, and the styles split's: aspect ratios +-40%,
# elastic distortion, wider pens (locmnist.styles).
@pytest.fixture(scope="module", params=["standard", "styles"])
def batch(mnist, request):
    from locmnist.styles import styles_split_config

    cfg = Config() if request.param == "standard" else styles_split_config()
    canvases, boxes = synthesize_numpy(mnist.x_test[:600], cfg, seed=3, batch_size=300)
    return cfg, canvases, boxes


def test_shapes_and_ranges(batch):
    _, canvases, boxes = batch
    assert canvases.shape == (600, 75, 75, 1) and boxes.shape == (600, 4)
    assert canvases.min() >= 0 and canvases.max() <= 1
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_box_is_tight_and_holds_all_ink(batch):
    _, canvases, boxes = batch
    for canvas, box in zip(canvases, boxes):
        x0, y0, x1, y1 = np.rint(box * 75).astype(int)
        ink = canvas[..., 0] >= INK_THRESHOLD
        assert ink[y0:y1, x0:x1].sum() == ink.sum()                    # all ink inside
        assert ink[y0, x0:x1].any() and ink[y1 - 1, x0:x1].any()     # tight: ink on every edge
        assert ink[y0:y1, x0].any() and ink[y0:y1, x1 - 1].any()
        assert np.allclose(tight_box(canvas) / 75, box)


def test_digit_fully_inside_and_sizes_span_the_range(batch):
    cfg, canvases, boxes = batch
    assert (canvases[:, 0].max() < INK_THRESHOLD) and (canvases[:, -1].max() < INK_THRESHOLD)
    assert (canvases[:, :, 0].max() < INK_THRESHOLD) and (canvases[:, :, -1].max() < INK_THRESHOLD)
    heights = (boxes[:, 3] - boxes[:, 1]) * 75
    assert heights.min() >= cfg.min_height - 3 and heights.max() <= cfg.max_height + 3
    assert heights.min() < 22 and heights.max() > 55            # small and large digits both occur
    centres = (boxes[:, 0] + boxes[:, 2]) / 2
    assert centres.min() < 0.3 and centres.max() > 0.7           # placed all over the canvas


def test_seeded_and_fresh(mnist):
    cfg = Config()
    a, _ = synthesize(mnist.x_test[:32], (1, 5), cfg)
    b, _ = synthesize(mnist.x_test[:32], (1, 5), cfg)
    c, _ = synthesize(mnist.x_test[:32], (1, 6), cfg)
    assert np.array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())


def test_seed_mode_is_the_reference_paste(mnist):
    cfg = Config(data="seed")
    canvases, boxes = synthesize_numpy(mnist.x_test[:50], cfg, seed=0)
    for digit, canvas, box in zip(mnist.x_test[:50], canvases, boxes):
        x0, y0, x1, y1 = np.rint(box * 75).astype(int)
        assert (x1 - x0, y1 - y0) == (28, 28) and 0 <= x0 <= 47 and 0 <= y0 <= 47
        assert np.allclose(canvas[y0:y1, x0:x1, 0], digit / 255.0)   # exact paste
        assert canvas.sum() == pytest.approx(digit.sum() / 255.0, rel=1e-5)


def test_test_split_is_fixed(mnist):
    canvases, boxes, labels = synthesis.test_split("standard")
    assert canvases.shape == (10000, 75, 75, 1) and canvases.dtype == np.uint8
    assert np.array_equal(labels, mnist.y_test)
    again = synthesis.test_split("standard")
    assert again[0] is canvases                      # built once per process
    fresh, fresh_boxes = synthesize_numpy(mnist.x_test[:1000], Config(), seed=20_240_607)
    assert np.array_equal(np.rint(fresh * 255).astype(np.uint8), canvases[:1000])
    assert np.allclose(fresh_boxes, boxes[:1000])


def test_aspect_jitter_squeezes_and_stretches(mnist):
    """The same digits with the same seed, with and without aspect jitter: widths
    relative to heights change by factors spread over about [0.6, 1.4]."""
    ratio = {}
    for jitter in (0.0, 0.4):
        _, boxes = synthesize_numpy(mnist.x_test[:400], Config(aspect_jitter=jitter), seed=4)
        ratio[jitter] = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])
    change = ratio[0.4] / ratio[0.0]
    lo, hi = np.percentile(change, [5, 95])
    assert lo < 0.75 and hi > 1.25
    assert np.median(np.abs(change - 1)) > 0.1          # most digits changed, not a few


def test_test_split_ignores_new_training_settings():
    """The published split is pinned: training-only settings never change it."""
    cfg = synthesis.test_split_config(Config(aspect_jitter=0.3, elastic=2.0, wide_pens=0.5,
                                             raw_fraction=0.5))
    assert (cfg.aspect_jitter, cfg.elastic, cfg.wide_pens, cfg.raw_fraction) == (0, 0, 0, 0)


def test_raw_fraction_pastes_digits_as_they_are(mnist):
    """A share of the digits is the reference's pixel-crisp paste, with a tight ink box;
    the others are the resampled canvases of the same seed, unchanged."""
    digits = mnist.x_test[:400]
    soft, soft_boxes = synthesize_numpy(digits, Config(), seed=5, batch_size=200)
    mixed, boxes = synthesize_numpy(digits, Config(raw_fraction=0.3), seed=5, batch_size=200)
    raw = [i for i in range(len(digits)) if not np.array_equal(mixed[i], soft[i])]
    assert 0.2 < len(raw) / len(digits) < 0.4
    kept = np.setdiff1d(np.arange(len(digits)), raw)
    assert np.allclose(boxes[kept], soft_boxes[kept])
    for i in raw:
        canvas = mixed[i, ..., 0]
        ys, xs = np.nonzero(canvas > 0)
        y0, x0 = ys.min(), xs.min()
        digit = digits[i] / 255.0
        dy, dx = np.nonzero(digit > 0)
        # the whole digit, pixel for pixel, at a whole-pixel offset: nothing resampled
        oy, ox = y0 - dy.min(), x0 - dx.min()
        assert np.allclose(canvas[oy:oy + 28, ox:ox + 28], digit)
        assert canvas.sum() == pytest.approx(digit.sum(), rel=1e-5)
        assert np.allclose(boxes[i] * 75, tight_box(canvas, INK_THRESHOLD), atol=1e-4)
    again, _ = synthesize_numpy(digits, Config(raw_fraction=0.3), seed=5, batch_size=200)
    assert np.array_equal(again, mixed)                                  # seeded
