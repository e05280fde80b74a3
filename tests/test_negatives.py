import numpy as np
import pytest

from locmnist import negatives as ng
from locmnist.negatives import KINDS, negative_test_split, negatives

DRAWN = ("font_letter", "stroke_letter", "shape", "scribble")


def test_shape_range_and_dtype():
    x = negatives(64, (0, 1))
    assert x.shape == (64, 75, 75) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_any_canvas_size_for_the_detector():
    x = negatives(12, 3, size=(90, 200))
    assert x.shape == (12, 90, 200)
    assert negatives(0, 3).shape == (0, 75, 75)


def test_seeded_like_the_digit_synthesis():
    a, b = negatives(20, (7, 3)), negatives(20, (7, 3))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, negatives(20, (7, 4)))


def test_every_kind_occurs_in_a_batch():
    _, kinds = negatives(400, 11, return_kinds=True)
    counts = np.bincount(kinds, minlength=len(KINDS))
    assert (counts > 0).all(), dict(zip(KINDS, counts))


@pytest.mark.parametrize("kind", DRAWN)
def test_drawn_kinds_have_ink_at_digit_sizes(kind):
    x = negatives(60, 5, kinds=(kind,))
    heights = []
    for canvas in x:
        assert canvas.max() == pytest.approx(1.0)            # ink peaks at 1, as after prepare
        rows = np.flatnonzero((canvas >= 0.3).any(axis=1))
        heights.append(rows[-1] - rows[0] + 1)
        assert (canvas >= 0.3).mean() < 0.6                   # a drawing, not a filled canvas
    heights = np.array(heights)
    assert heights.min() >= 5 and heights.max() <= 75
    assert heights.min() < 30 and heights.max() > 45          # small and large both occur


def test_noise_is_strong_and_blank_is_faint():
    noise = negatives(40, 2, kinds=("noise",))
    assert (noise.std(axis=(1, 2)) > 0.15).mean() > 0.7      # mostly strong, whole-canvas noise
    blank = negatives(40, 2, kinds=("blank",))
    assert blank.max() <= 0.15
    assert (blank.max(axis=(1, 2)) == 0).any() and (blank.max(axis=(1, 2)) > 0).any()


def test_textures_cover_the_canvas():
    tex = negatives(30, 4, kinds=("texture",))
    ink = (tex >= 0.5).mean(axis=(1, 2))
    assert (ink > 0.05).all()


def test_letters_exclude_digit_lookalikes():
    assert not set("OoQDIli|ZzSsGbBgq0123456789") & set(ng.LETTERS)
    assert not set("OoIlZzSs0123456789") & set(ng.STROKE_LETTERS)


def test_fonts_split_into_train_and_held_out_test():
    train, test = ng.fonts_for("train"), ng.fonts_for("test")
    assert train and test
    assert not set(train) & set(test)
    if len(ng.font_files()) >= 3:                               # a machine with fonts
        assert any(f for f in test)
    with pytest.raises(ValueError):
        ng.fonts_for("val")


def test_font_letters_differ_between_font_splits():
    a = negatives(30, 9, kinds=("font_letter",), fonts="train")
    b = negatives(30, 9, kinds=("font_letter",), fonts="test")
    assert not np.array_equal(a, b)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown kinds"):
        negatives(4, 0, kinds=("digits",))
    with pytest.raises(ValueError, match="8x8"):
        negatives(4, 0, size=(4, 75))


def test_negative_test_split_is_fixed_balanced_and_read_only():
    canvases, kinds = negative_test_split()
    assert canvases.shape == (ng.TEST_SIZE, 75, 75, 1) and canvases.dtype == np.uint8
    assert np.array_equal(np.bincount(kinds), np.full(len(KINDS), ng.TEST_SIZE // len(KINDS)))
    assert not canvases.flags.writeable
    # Rebuilt from its seed it is the same split; the training stream never yields it.
    per_kind = ng.TEST_SIZE // len(KINDS)
    again = negatives(per_kind, (ng.TEST_SEED, 0), fonts="test", kinds=(KINDS[0],))
    assert np.array_equal(np.rint(again * 255).astype(np.uint8), canvases[:per_kind, ..., 0])
    assert not np.array_equal(negatives(per_kind, (0, 0), kinds=(KINDS[0],)), again)


def test_styled_digits_are_labelled_boxed_digits_in_the_negatives_style():
    from locmnist.boxes import INK_THRESHOLD

    x, labels, boxes = ng.styled_digits(60, (2, 0))
    assert x.shape == (60, 75, 75) and labels.shape == (60,) and boxes.shape == (60, 4)
    assert set(labels.tolist()) == set(range(10))
    for canvas, box in zip(x, boxes):
        x0, y0, x1, y1 = np.rint(box * 75).astype(int)
        ink = canvas >= INK_THRESHOLD
        assert ink[y0:y1, x0:x1].sum() == ink.sum() > 0            # the box holds all the ink
        assert ink[y0, x0:x1].any() and ink[y1 - 1, x0:x1].any()  # and is tight
    a, la, _ = ng.styled_digits(8, (2, 1))
    b, lb, _ = ng.styled_digits(8, (2, 1))
    assert np.array_equal(a, b) and np.array_equal(la, lb)


def test_every_digit_has_stroke_templates():
    assert sorted(ng.DIGIT_STROKES) == list(range(10))
