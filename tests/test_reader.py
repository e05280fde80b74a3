"""Reader: any input predict() takes, blank and hostile ones included; boxes in input pixels."""
import io
from pathlib import Path

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
    # TensorFlow: the TFLite copy (converted per new detector) has its own test below
    return Reader.load(tiny_detector, tflite=False)


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
    ink[20:22, 20:22] = 1.0                                   # a speck does not count
    assert digit_height(ink) == 120
    x, (x0, y0, sx, sy) = frame_ink(ink)
    assert x.shape[1] > 2.5 * x.shape[0]                      # wide stays wide
    b = tight_box(x, 0.5)             # the speck fades out (2x2 px shrunk 4x: <= 0.25)
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
    from locmnist.reader import CLOSER_LOOK_INK, MASK_INSET, closer_look_inputs

    canvas = np.zeros((64, 120), np.float32)
    canvas[10:50, 20:40] = 1.0                 # the digit: 40 px tall
    canvas[10:50, 40:60] = 1.0                 # a neighbour touching its box
    canvas[10:50, 38:40] = 0.0                 # (a 2 px gap: the digit's edge is its own)
    box = np.array([[20, 10, 41, 50]], np.float32)   # the predicted box overshoots by 1 px
    x = closer_look_inputs(canvas, box)[0, ..., 0]
    b = tight_box(x, 0.5)
    scale = CLOSER_LOOK_INK / 40               # the box is framed CLOSER_LOOK_INK px tall
    # the ink kept is the box inset by MASK_INSET (1.6 px) per side, to whole pixels:
    # rows 11..48 (38 of the digit's 40) and columns 21..39
    assert MASK_INSET * 40 == pytest.approx(1.6)
    assert b[3] - b[1] == pytest.approx(38 * scale, abs=1.5)
    assert (b[1] + b[3]) / 2 == pytest.approx(37.5, abs=1)   # centred on the box
    # the digit's ink from column 21 to its gap at 38, not the neighbour's stroke at 40
    # that the overshooting box takes in
    assert b[2] - b[0] == pytest.approx((38 - 21) * scale, abs=1.5)

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
            self.digit = iter([0.9, 0.1])

        def raw_outputs(self, canvases):
            probs = np.full((len(canvases), 10), 0.02, np.float32)
            probs[:, 5] = 0.82
            digit = np.array([next(self.digit) for _ in canvases], np.float32)
            return probs, np.zeros((len(canvases), 4)), digit

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


def test_a_fitted_acceptance_picks_the_candidates_and_the_confidence():
    from locmnist.acceptance import Acceptance
    from locmnist.decoding import Detections

    canvas = np.zeros((64, 160), np.float32)
    canvas[10:50, 20:40] = 1.0                          # a digit, whole in its box
    canvas[28:32, 70:150] = 1.0                         # a long bar: its box holds a piece
    boxes = np.array([[20, 10, 40, 50], [70, 10, 90, 50]], np.float32)

    class Classifier:                                   # calls both a sure digit, a 5
        calibration = Calibration(rule="digit", threshold=0.5, fitted=True)

        def raw_outputs(self, canvases):
            probs = np.full((len(canvases), 10), 0.02, np.float32)
            probs[:, 5] = 0.82
            return probs, np.zeros((len(canvases), 4)), np.full(len(canvases), 0.99, np.float32)

    # only the ink's leak counts here: whole digit p = sigmoid(2), the bar's piece rejected
    acc = Acceptance((0.0, 0.0, -10.0, 0.0, 0.0), 2.0, 0.5, 0.12)
    reader = Reader(runner=lambda x: None, classifier=Classifier(), acceptance=acc)
    assert reader.accepting and reader.candidate_threshold == 0.12
    det = Detections(boxes, np.array([0.2, 0.9], np.float32), np.array([5, 1]))
    looked = reader.closer_look(canvas, det)
    assert looked.boxes.tolist() == [boxes[0].tolist()] and looked.labels.tolist() == [5]
    p5 = Classifier.calibration.probabilities(np.array([[0.02] * 5 + [0.82] + [0.02] * 4]))
    assert looked.scores[0] == pytest.approx(1 / (1 + np.exp(-2.0)) * p5[0, 5], rel=1e-5)
    # without a fitted digit output the acceptance does not apply: the old rule does
    plain = Reader(runner=lambda x: None, acceptance=acc)
    assert not plain.accepting and plain.candidate_threshold == plain.config.score_threshold


def test_candidates_the_acceptance_rejects_anyway_are_not_classified():
    """A candidate rejected whatever the ``digit`` output says (here its ink leaks far out
    of its box) costs no crop, and the reading is the one that classifying it gives."""
    from locmnist.acceptance import Acceptance
    from locmnist.decoding import Detections

    canvas = np.zeros((64, 200), np.float32)
    canvas[10:50, 20:40] = 1.0                          # a digit, whole in its box
    canvas[10:50, 70:90] = 1.0                          # another one
    canvas[28:32, 120:195] = 1.0                        # a long bar: its box holds a piece
    boxes = np.array([[20, 10, 40, 50], [70, 10, 90, 50], [120, 10, 140, 50]], np.float32)

    class Classifier:                                   # sure of a 5, whatever it sees
        calibration = Calibration(rule="digit", threshold=0.5, fitted=True)

        def __init__(self):
            self.crops = 0

        def raw_outputs(self, canvases):
            self.crops += len(canvases)
            probs = np.full((len(canvases), 10), 0.02, np.float32)
            probs[:, 5] = 0.82
            return probs, np.zeros((len(canvases), 4)), np.full(len(canvases), 0.99, np.float32)

    acc = Acceptance((1.0, 1.0, -10.0, 0.0, 0.0), 0.0, 0.5, 0.12)
    det = Detections(boxes, np.array([0.6, 0.5, 0.9], np.float32), np.array([5, 5, 1]))
    fast = Reader(runner=lambda x: None, classifier=Classifier(), acceptance=acc)
    looked = fast.closer_look(canvas, det)
    assert fast.classifier.crops == 2                   # the bar's piece was never framed
    assert looked.boxes.tolist() == boxes[:2].tolist() and looked.labels.tolist() == [5, 5]

    class Always(Acceptance):                           # the same rule, every crop looked at
        def possible(self, peak, *rest):
            return np.ones(len(peak), bool)

    full = Reader(runner=lambda x: None, classifier=Classifier(),
                  acceptance=Always(*[getattr(acc, f) for f in ("weights", "bias", "threshold",
                                                                  "min_peak")]))
    everything = full.closer_look(canvas, det)
    assert full.classifier.crops == 3
    assert everything.boxes.tolist() == looked.boxes.tolist()
    assert everything.labels.tolist() == looked.labels.tolist()
    np.testing.assert_array_equal(everything.scores, looked.scores)
    # nothing possible at all: no crop, no digit
    none = Reader(runner=lambda x: None, classifier=Classifier(),
                  acceptance=Acceptance((1.0, 1.0, -10.0, 0.0, 0.0), -30.0, 0.5, 0.12))
    assert len(none.closer_look(canvas, det)) == 0 and none.classifier.crops == 0


def test_only_inputs_up_to_single_max_pixels_go_through_the_single_canvas_runtime():
    """Its interpreter keeps the largest input's buffers: larger ones go to TensorFlow."""
    from locmnist.reader import SINGLE_MAX_PIXELS

    def maps_of(calls, name):
        def run(x):
            calls.append((name, x.shape[1:3]))
            h, w = x.shape[1] // 4, x.shape[2] // 4
            return {"heatmap": np.zeros((1, h, w, 10), np.float32),
                    "size": np.zeros((1, h, w, 2), np.float32),
                    "offset": np.zeros((1, h, w, 2), np.float32)}
        return run

    calls = []
    reader = Reader(runner=maps_of(calls, "tf"))
    reader._single = maps_of(calls, "lite")
    side = int(np.sqrt(SINGLE_MAX_PIXELS)) // 16 * 16
    for shape in ((64, 96), (side, side), (side + 16, side)):
        assert len(reader.read_canvas(np.zeros(shape, np.float32))) == 0
    assert calls == [("lite", (64, 96)), ("lite", (side, side)), ("tf", (side + 16, side))]


def test_read_goes_through_the_detectors_tflite_copy_with_the_same_reading(
        tiny_detector, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCMNIST_CACHE", str(tmp_path / "cache"))
    lite = Reader.load(tiny_detector, classifier=None)
    assert lite._single is not None
    assert len(list((tmp_path / "cache" / "tflite").glob("*.tflite"))) == 1
    plain = Reader.load(tiny_detector, classifier=None, tflite=False)
    assert plain._single is None
    x = np.random.default_rng(2).random((1, 64, 112, 1), dtype=np.float32)
    want, got = plain.raw_outputs(x), lite._single(x)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)
    for _ in range(2):                      # a second shape, then the first one again
        for size in ((560, 280), (300, 200)):
            a, b = lite.read(number_image(size)), plain.read(number_image(size))
            assert a.text == b.text
            assert [d.box for d in a.digits] == pytest.approx([d.box for d in b.digits],
                                                              abs=1e-3)
    # Shared by threads (Streamlit sessions): one interpreter, resized between shapes
    # under its lock, gives each caller the reading of its own image.
    from concurrent.futures import ThreadPoolExecutor

    images = [number_image(size) for size in ((560, 280), (300, 200), (420, 160))] * 4
    want = [lite.read(img).to_dict() for img in images]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda img: lite.read(img).to_dict(), images)) == want
    xs = [np.random.default_rng(k).random((1, 16 * (2 + k % 3), 16 * (3 + k % 4), 1),
                                          dtype=np.float32) for k in range(12)]
    want = [lite._single(x)["heatmap"] for x in xs]     # the tiny detector reads little:
    with ThreadPoolExecutor(4) as pool:                 # its maps must match too
        for got, w in zip(pool.map(lambda x: lite._single(x)["heatmap"], xs), want):
            np.testing.assert_array_equal(got, w)


@pytest.fixture(scope="module")
def shipped_reader():
    return Reader.load()


def test_the_shipped_reader_labels_with_its_tuned_classifier_and_fitted_acceptance(
        shipped_reader):
    from locmnist import runs

    assert Path(shipped_reader.classifier.source) == runs.default_classifier_path()
    assert shipped_reader.classifier.calibration.fitted and shipped_reader.accepting


# The browser test's mouse drawings (tests/test_e2e_browser.py), 18 px strokes on the app's
# 560x280 canvas: read by the shipped models without a browser. A margin of 0.3 digit
# heights in ``frame_ink`` made the detector's box on the lone 7 small, and the acceptance
# turned the 7 down (the browser test caught it).
APP_DRAWINGS = {
    "7": [[(70, 60), (210, 60), (120, 235)]],
    "4": [[(90, 50), (80, 150), (190, 150)], [(170, 50), (170, 245)]],
    "42": [[(90, 50), (80, 150), (190, 150)], [(170, 50), (170, 245)],
           [(270, 95), (290, 60), (330, 45), (375, 60), (390, 100), (370, 145), (280, 235),
            (400, 235)]],
    "": [[(75, 60), (205, 230)], [(205, 60), (75, 230)]],          # an X: no digit
}


@pytest.mark.parametrize("text", list(APP_DRAWINGS))
def test_the_shipped_reader_reads_the_browser_tests_drawings(shipped_reader, text):
    img = Image.new("RGBA", (560, 280), (255, 255, 255, 255))
    draw = ImageDraw.Draw(img)
    for points in APP_DRAWINGS[text]:
        draw.line(points, fill=(0, 0, 0, 255), width=18, joint="curve")
    assert shipped_reader.read(np.asarray(img)).text == text


def _drawn_number(digits: str, sizes, seed: int) -> np.ndarray:
    """A 560x280 RGBA drawing of the mouse-style digits of ``locmnist.wild``, side by side
    on one baseline, each ``sizes[k]`` px square."""
    from locmnist.wild import drawn

    rng = np.random.default_rng(seed)
    img = Image.new("RGBA", (560, 280), (0, 0, 0, 0))
    x = 20
    for d, s in zip(digits, sizes):
        one = drawn(int(d), rng).image
        ink = one.convert("L") if one.getextrema()[3][0] == 255 else one.getchannel("A")
        img.paste(Image.new("RGBA", (s, s), (20, 20, 20, 255)), (x, 270 - s),
                  ink.resize((s, s), Image.BOX))
        x += s
    return np.asarray(img)


# Numbers with one digit drawn in a square twice as large as the others' (its ink 1.4-2.3
# times as tall): framed for the median height alone, the detector misses the tall digit and
# the acceptance then turns the others down too (its ink is left uncovered), so each read "".
@pytest.mark.parametrize("digits,sizes,seed", [("305", (100, 200, 100), 0),
                                               ("305", (100, 200, 100), 1),
                                               ("30", (110, 230), 3)])
def test_a_digit_much_taller_than_the_others_is_read_at_its_own_scale(
        shipped_reader, monkeypatch, digits, sizes, seed):
    import locmnist.reader as reading

    image = _drawn_number(digits, sizes, seed)
    reading_ = shipped_reader.read(image)
    assert reading_.text == digits
    boxes = np.array([d.box for d in reading_.digits])
    heights = boxes[:, 3] - boxes[:, 1]
    assert heights.max() > 1.3 * heights.min()          # the boxes follow each digit's size
    monkeypatch.setattr(reading, "OFF_SCALE", np.inf)   # one scale only: the failure above
    assert shipped_reader.read(image).text == ""


def test_tall_strokes_and_coverage():
    from locmnist.reader import _covered, tall_strokes

    ink = np.zeros((60, 100), np.float32)
    ink[10:50, 10:14] = 1.0       # a stroke 40 px tall
    ink[30:50, 40:44] = 1.0       # 20 px: half as tall, kept
    ink[45:50, 70:74] = 1.0       # 5 px: a speck under 40% of the tallest, left out
    strokes = tall_strokes(ink)
    np.testing.assert_array_equal(strokes, [[10, 10, 14, 50], [40, 30, 44, 50]])
    assert digit_height(ink) == 30
    assert tall_strokes(np.zeros((8, 8))).shape == (0, 4)
    boxes = np.array([[8, 8, 16, 30], [38, 28, 46, 52]], np.float64)   # half of the first
    np.testing.assert_array_equal(_covered(strokes, boxes), [True, True])
    np.testing.assert_array_equal(_covered(strokes, boxes + [0, 12, 0, 0]), [False, True])
    assert _covered(strokes, np.zeros((0, 4))).tolist() == [False, False]
