"""Reader: any input predict() takes, blank and hostile ones included; boxes in input pixels."""
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from locmnist.boxes import tight_box
from locmnist.calibration import Calibration
from locmnist.preprocess import InvalidImage
from locmnist.reader import TARGET_HEIGHT, Reader, digit_height, frame_ink
from locmnist.results import Digit, Reading


@pytest.fixture(scope="module")
def reader(tiny_detector):
    return Reader.load(tiny_detector)


def number_image(size=(560, 280), mode="L"):
    """Dark strokes like a written '17' on white paper."""
    img = Image.new("L", size, 255)
    d = ImageDraw.Draw(img)
    d.line([(150, 80), (150, 200)], fill=0, width=14)
    d.line([(260, 80), (340, 80), (290, 200)], fill=0, width=14)
    return img.convert(mode)


def test_blank_inputs_read_as_no_digit(reader):
    for blank in (np.zeros((40, 90), np.uint8), Image.new("RGB", (300, 100), "white"),
                  Image.new("RGBA", (64, 64), (0, 0, 0, 0))):
        r = reader.read(blank)
        assert r.digits == () and r.text == "" and r.message
        assert r.to_dict() == {"digits": [], "text": ""}


@pytest.mark.parametrize("bad", [b"", b"<html>not an image</html>", "no/such/file.png",
                                 np.zeros((3, 3, 7))])
def test_hostile_inputs_are_clear_errors(reader, bad):
    with pytest.raises(InvalidImage):
        reader.read(bad)


@pytest.mark.parametrize("variant", ["L", "RGB", "CMYK", "I;16", "alpha-only", "jpeg-bytes",
                                     "exif-rotated"])
def test_every_input_kind_reads_with_boxes_in_input_pixels(reader, variant):
    img = number_image()
    if variant == "alpha-only":          # drawing canvases: black RGB, ink only in alpha
        a = 255 - np.asarray(img)
        img = Image.fromarray(np.dstack([np.zeros_like(a)] * 3 + [a]), "RGBA")
    elif variant == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
    elif variant in ("jpeg-bytes", "exif-rotated"):
        buf = io.BytesIO()
        exif = Image.Exif()
        if variant == "exif-rotated":     # stored sideways, EXIF says rotate back
            img = img.rotate(90, expand=True)
            exif[0x0112] = 8
        img.convert("RGB").save(buf, "JPEG", exif=exif)
        img = buf.getvalue()
    else:
        img = img.convert(variant)
    r = reader.read(img)
    assert isinstance(r, Reading) and r.image_size == (560, 280)
    for d in r.digits:
        assert isinstance(d, Digit)
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= 560 and 0 <= y0 < y1 <= 280
        assert d.box_normalized == pytest.approx((x0 / 560, y0 / 280, x1 / 560, y1 / 280))
    xs = [d.box[0] + d.box[2] for d in r.digits]
    assert xs == sorted(xs)                                   # left to right
    assert r.text == "".join(str(d.label) for d in r.digits)


def test_digits_reach_the_model_at_the_learned_height_and_map_back_exactly():
    ink = np.zeros((280, 900), np.float32)
    for k in range(6):                                        # six "digits" 120 px tall
        ink[60:180, 40 + 140 * k:110 + 140 * k] = 1.0
    ink[20:24, 20:24] = 1.0                                   # a speck does not count
    assert digit_height(ink) == 120
    x, (x0, y0, sx, sy) = frame_ink(ink)
    assert x.shape[1] > 2.5 * x.shape[0]                      # wide stays wide
    b = tight_box(x, 0.5)                                     # the speck fades out
    tall = tight_box(x[:, int(40 * sx):], 0.5)                # a digit's height in the input
    assert abs((tall[3] - tall[1]) - TARGET_HEIGHT) <= 1.5
    back = [x0 + b[0] / sx, y0 + b[1] / sy, x0 + b[2] / sx, y0 + b[3] / sy]
    assert back == pytest.approx([40, 60, 810, 180], abs=1 / sx + 0.5)


def test_reading_unpacks_as_tuples():
    d = Digit(2, 0.9, (1.0, 2.0, 3.0, 4.0), (0.1, 0.2, 0.3, 0.4))
    label, confidence, box, box_normalized = d
    r = Reading((d, d._replace(label=6)), (10, 10))
    assert r.text == "26" and r.to_dict()["digits"][1]["label"] == 6


def test_closer_look_frames_each_digit_alone_and_relabels():
    from locmnist.decoding import Detections
    from locmnist.reader import CLOSER_LOOK_INK, closer_look_inputs

    canvas = np.zeros((64, 120), np.float32)
    canvas[10:50, 20:40] = 1.0                 # the digit: 40 px tall
    canvas[10:50, 41:60] = 1.0                 # a neighbour touching its box
    box = np.array([[20, 10, 40, 50]], np.float32)
    x = closer_look_inputs(canvas, box)[0, ..., 0]
    b = tight_box(x, 0.5)
    assert abs((b[3] - b[1]) - CLOSER_LOOK_INK) <= 2      # framed as the classifier learned
    assert abs((b[0] + b[2]) / 2 - 37.5) <= 2             # centred
    assert b[2] - b[0] <= 25 + 2                          # the neighbour is masked out

    class Classifier:                                      # always very sure it is a 3
        calibration = Calibration()                        # the fallback: no veto
        def raw_outputs(self, canvases):
            probs = np.full((len(canvases), 10), 0.01, np.float32)
            probs[:, 3] = 0.91
            return probs, np.zeros((len(canvases), 4)), None

    det = Detections(box, np.array([0.8], np.float32), np.array([8]))
    reader = Reader(runner=lambda x: None, classifier=Classifier())
    looked = reader.closer_look(canvas, det)
    assert looked.labels.tolist() == [3]
    assert looked.scores[0] == pytest.approx(0.8 * 0.91)
    assert Reader(runner=lambda x: None).closer_look(canvas, det) is det


def test_closer_look_drops_what_a_fitted_digit_output_calls_not_a_digit():
    from locmnist.decoding import Detections

    canvas = np.zeros((64, 120), np.float32)
    canvas[10:50, 20:40] = 1.0
    canvas[10:50, 70:90] = 1.0
    boxes = np.array([[20, 10, 40, 50], [70, 10, 90, 50]], np.float32)

    class Classifier:                  # the first box is a digit (0.9), the second is not (0.1)
        def __init__(self, calibration):
            self.calibration = calibration

        def raw_outputs(self, canvases):
            probs = np.full((len(canvases), 10), 0.02, np.float32)
            probs[:, 5] = 0.82
            return probs, np.zeros((len(canvases), 4)), np.array([0.9, 0.1], np.float32)

    det = Detections(boxes, np.array([0.8, 0.7], np.float32), np.array([5, 1]))
    fitted = Calibration(temperature=2.0, rule="digit", threshold=0.5, fitted=True)
    looked = Reader(runner=lambda x: None, classifier=Classifier(fitted)).closer_look(canvas, det)
    assert looked.boxes.tolist() == [boxes[0].tolist()] and looked.labels.tolist() == [5]
    # the confidence is the temperature-scaled probability (T = 2 flattens 0.82)
    assert looked.scores[0] == pytest.approx(0.8 * fitted.probabilities(
        np.array([[0.02] * 5 + [0.82] + [0.02] * 4]))[0, 5], rel=1e-5)
    # an unfitted digit rule (the fallback) keeps both
    unfitted = Calibration(rule="digit", threshold=0.5, fitted=False)
    assert len(Reader(runner=lambda x: None,
                      classifier=Classifier(unfitted)).closer_look(canvas, det)) == 2
