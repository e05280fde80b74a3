"""preprocess: any image -> the (75, 75) model input, and boxes back (hand-worked cases;
the hostile inputs are in test_hostile_inputs.py, random ones in test_properties.py)."""
import numpy as np
import pytest
from PIL import Image

from locmnist.config import CANVAS_SIZE
from locmnist.preprocess import Prepared, array_to_image, ink_map, prepare


def bar(size, box, ink=0, paper=255):
    """A (H, W) uint8 image: ``paper`` with a rectangle of ``ink`` at pixel-edge ``box``."""
    w, h = size
    img = np.full((h, w), paper, np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = ink
    return img


def test_dark_ink_on_paper_becomes_white_ink_on_black():
    ink, reason = ink_map(array_to_image(bar((40, 40), (10, 5, 20, 35))))
    assert reason is None
    assert ink[20, 15] == 1.0 and ink[2, 2] == 0.0          # ink 1, paper 0
    light, _ = ink_map(array_to_image(bar((40, 40), (10, 5, 20, 35), ink=255, paper=0)))
    np.testing.assert_array_equal(ink, light)                # already light on dark


def test_the_model_input_contract():
    p = prepare(bar((60, 60), (20, 10, 30, 50)))
    assert p.model_input.shape == (CANVAS_SIZE, CANVAS_SIZE)
    assert p.model_input.dtype == np.float32
    assert p.model_input.min() == 0.0 and p.model_input.max() == 1.0
    assert p.blank_reason is None and p.image_size == (60, 60)


def test_a_wide_image_is_padded_to_a_centred_square_never_stretched():
    # 120 x 60 with a 40 px tall bar: 40 px of 120 is 25 px on the canvas, inside the
    # band the model learned, so the frame is the whole image padded to 120 x 120.
    p = prepare(bar((120, 60), (50, 10, 60, 50)))
    assert p.frame == (0, -30, 120)
    cols = np.flatnonzero(p.model_input.max(axis=0) > 0.5)
    rows = np.flatnonzero(p.model_input.max(axis=1) > 0.5)
    # the bar's aspect (10 x 40) survives: 75/120 of each side
    assert cols[0] == pytest.approx(50 * 75 / 120, abs=1) and cols[-1] + 1 == pytest.approx(
        60 * 75 / 120, abs=1)
    assert rows[0] == pytest.approx(40 * 75 / 120, abs=1) and rows[-1] + 1 == pytest.approx(
        80 * 75 / 120, abs=1)


def test_boxes_map_back_to_input_pixels_by_hand():
    p = Prepared(np.zeros((75, 75), np.float32), (120, 60), (10.0, -20.0, 100.0), None)
    # x: 10 + 100 * (0.1, 0.5) = (20, 60); y: -20 + 100 * (0.3, 0.6) = (10, 40)
    assert p.to_input_pixels((0.1, 0.3, 0.5, 0.6)) == pytest.approx((20, 10, 60, 40))
    # outside the image is clipped to it; an inside-out box is put right way round
    assert p.to_input_pixels((0.5, 0.9, 0.0, 0.0)) == pytest.approx((10, 0, 60, 60))


def test_a_tiny_digit_in_a_big_image_is_framed_on_its_ink():
    p = prepare(bar((1000, 1000), (500, 500, 503, 512)))    # 12 px tall in 1000 px
    x0, y0, side = p.frame
    assert side == pytest.approx(12 * 75 / 46, abs=1)       # ink 46 px tall on the canvas
    assert x0 < 500 and x0 + side > 503 and y0 < 500 and y0 + side > 512


@pytest.mark.parametrize("image, reason", [
    (np.full((50, 50), 255, np.uint8), "blank or too faint"),
    (np.zeros((50, 50), np.uint8), "blank or too faint"),
])
def test_blank_images_say_why_and_give_an_empty_input(image, reason):
    p = prepare(image)
    assert reason in p.blank_reason and not p.model_input.any()


def test_transparent_strokes_are_ink_whatever_their_colour():
    rgba = np.zeros((60, 60, 4), np.uint8)
    rgba[10:50, 25:35] = (0, 0, 0, 255)                     # black strokes, alpha only
    p = prepare(Image.fromarray(rgba, "RGBA"))
    assert p.blank_reason is None and p.model_input.max() == 1.0
