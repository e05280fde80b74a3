"""The multi-digit detector in the app (AppTest): numbers read on the Predict page (uploads
and camera photos), detector curves on History, detector metrics on Evaluate, and a
detect-quick run from the Train page. The pages use the shipped models/detector.keras."""
import io
import json

import numpy as np
import pytest

from tests.helpers import wait_for
from tests.helpers import page, rerun_until_run_ends, wait_until_no_run_is_active

# A detect-quick run that takes seconds: the page's form sets epochs and digits; the
# server's overrides (LOCMNIST_TRAIN_OVERRIDES) make the net tiny. dense_units is a
# single-digit model's field: a detector run leaves it out.
TINY_DETECTOR = {"train_digits": 512, "val_digits": 256, "batch_size": 64,
                 "canvases_per_epoch": 640, "widths": [4, 8, 8, 8], "dense_units": 16,
                 "time_limit_s": 0}


# Every test gets its own empty runs root (the ``runs`` fixture, conftest.py).
pytestmark = pytest.mark.usefixtures("runs")


def number_image(text: str, fmt: str = "PNG", height: int = 84) -> bytes:
    """Real MNIST test digits written in a row like a number: dark ink on white paper."""
    from PIL import Image

    from locmnist.data import load_mnist

    mnist = load_mnist()
    side, gap = height, height // 6
    paper = Image.new("L", (2 * gap + len(text) * (side * 3 // 4 + gap), side + 4 * gap), 255)
    for i, ch in enumerate(text):
        index = int(np.flatnonzero(mnist.y_test == int(ch))[0])  # the first test digit ch
        digit = Image.fromarray(255 - mnist.x_test[index]).resize((side, side), Image.BICUBIC)
        # MNIST digits sit in the middle 20 of 28 px: overlap the blank margins a little.
        paper.paste(digit, (gap + i * (side * 3 // 4 + gap) - side // 8, 2 * gap),
                    Image.fromarray((mnist.x_test[index] > 0).astype(np.uint8) * 255)
                    .resize((side, side)))
    buf = io.BytesIO()
    paper.convert("RGB").save(buf, fmt)
    return buf.getvalue()


def metrics(at) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


def image_captions(at) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]


def test_an_uploaded_number_is_read_and_every_digit_boxed():
    at = page("predict").run()
    at.file_uploader(key="predict_upload").set_value([
        ("year.png", number_image("2026"), "image/png"),
        ("seven.png", number_image("7"), "image/png")]).run()
    assert not at.exception
    shown = metrics(at)
    assert [v for label, v in shown if label == "Number"] == ["—", "2026", "7"]  # [0]: canvas
    # A single digit: the detector and the single-digit model agree.
    assert [v for label, v in shown if label == "Predicted digit"][2] == "7"
    captions = image_captions(at)
    assert "Your input: 4 digits read by the detector" in captions
    assert "Your input: 1 digit read by the detector" in captions
    # The single-digit model's view stays for both, whatever its verdict (the shipped model
    # calls the whole "2026" not a digit: its captions differ).
    assert sum(c.startswith("What") and "saw (75×75)" in c for c in captions) == 2


def test_a_camera_photo_is_read_like_an_upload():
    at = page("predict").run()
    assert not at.get("camera_input")  # no webcam prompt until the visitor asks for it
    at.toggle(key="predict_camera_on").set_value(True).run()
    at.camera_input(key="predict_camera").set_value(
        ("shot.jpg", number_image("42", fmt="JPEG"), "image/jpeg")).run()
    assert not at.exception
    assert [v for label, v in metrics(at) if label == "Number"] == ["—", "42"]
    assert "Camera photo" in [t.value for t in at.text]


def test_readings_are_cached_by_content_across_reruns(monkeypatch):
    from locmnist.reader import Reader

    calls = []
    real_read = Reader.read
    monkeypatch.setattr(Reader, "read", lambda self, image: calls.append(1) or
                        real_read(self, image))
    png = number_image("31")
    at = page("predict").run()
    at.file_uploader(key="predict_upload").set_value(
        [("a.png", png, "image/png"), ("b.png", png, "image/png")]).run()
    numbers = [v for label, v in metrics(at) if label == "Number"]
    # Both copies show the one reading (a closer look may misread this 3: the previous
    # single-digit model read it as a 5).
    assert numbers[0] == "—" and numbers[1] == numbers[2] and len(numbers[1]) == 2
    at.run()  # a rerun, as after a canvas stroke
    assert not at.exception
    assert len(calls) == 1  # one read for two copies of one image and a rerun


def test_history_shows_the_shipped_detectors_own_curves():
    at = page("history").run()
    assert "Shipped detector" in at.multiselect(key="history_runs").options
    at.multiselect(key="history_runs").set_value(["Shipped default", "Shipped detector"]).run()
    assert not at.exception
    assert [s.value for s in at.subheader][:2] == ["Single-digit models", "Detectors"]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert {"Validation mAP@0.5", "Validation mAP@0.5:0.95", "Centre heatmap loss (focal)",
            "Classification accuracy"} <= set(titles)


def test_evaluate_a_detector_on_the_detection_test_split():
    from locmnist.detection_eval import evaluate_detector
    from locmnist.reader import Reader

    at = page("evaluate").run()
    at.radio(key="evaluate_task").set_value("Detector (numbers)").run()
    at.button(key="evaluate_det_run").click().run()
    assert not at.exception
    shown = dict(metrics(at))
    expected = evaluate_detector(Reader.load(), limit=500)  # what the page asked the library
    assert shown["mAP@0.5"] == f"{expected['map50']:.3f}"
    assert shown["mAP@0.5:0.95"] == f"{expected['map']:.3f}"
    assert shown["Number accuracy"] == f"{expected['number_accuracy']:.1%}"
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles == ["AP per digit", "Precision-recall at IoU 0.5 (mean over digits)"]
    gallery = image_captions(at)
    assert 0 < len(gallery) <= 12 and all("mistake" in c for c in gallery)


def test_canvas_mistakes_count_missed_wrong_and_extra_digits():
    from app_pages.evaluate import canvas_mistakes
    from locmnist.decoding import Detections

    truth = np.array([[0, 0, 10, 20], [20, 0, 30, 20]], np.float32), np.array([4, 2])
    det = lambda boxes, labels: Detections(np.array(boxes, np.float32).reshape(-1, 4),
                                           np.ones(len(labels), np.float32), np.array(labels))
    assert canvas_mistakes(*truth, det([[0, 0, 10, 20], [20, 0, 30, 20]], [4, 2])) == 0
    assert canvas_mistakes(*truth, det([[0, 0, 10, 20]], [4])) == 1              # one missed
    assert canvas_mistakes(*truth, det([[0, 0, 10, 20], [20, 0, 30, 20]], [4, 7])) == 2
    assert canvas_mistakes(*truth, det([[0, 0, 10, 20], [20, 0, 30, 20], [40, 0, 50, 9]],
                                       [4, 2, 1])) == 1                          # one extra
    assert canvas_mistakes(np.zeros((0, 4)), np.zeros(0), det([], [])) == 0      # a blank


@pytest.mark.slow
def test_train_page_tiny_detector_run_to_completion(runs, monkeypatch):
    import ui

    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", json.dumps(TINY_DETECTOR))
    at = page("train").run()
    at.selectbox(key="train_preset").set_value("detect-quick").run()
    assert any("fresh canvases per epoch" in c.value for c in at.caption)
    at.number_input(key="train_epochs_detect-quick").set_value(1)
    at.form_submit_button[0].click().run()
    assert not at.exception
    assert any(s.value.startswith("Started run") for s in at.success)
    run_id = at.session_state["train_run"]
    config = json.loads(wait_for(lambda: (runs / run_id / "config.json").exists()
                                 and (runs / run_id / "config.json").read_text(),
                                 120, "the trainer to write config.json"))
    assert (config["kind"], config["preset"], config["epochs"], config["widths"],
            config["canvases_per_epoch"]) == ("detector", "detect-quick", 1, [4, 8, 8, 8], 640)

    rerun_until_run_ends(at, run_id, 600)  # the last step scores the whole detection test split
    assert not at.exception
    assert f"Run {run_id}: completed" in [s.value for s in at.subheader], \
        [e.value for e in at.error]
    shown = dict(metrics(at))
    assert {"Test mAP@0.5", "mAP@0.5:0.95", "Number accuracy"} <= set(shown)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Validation mAP@0.5" in titles
    history = json.loads((runs / run_id / "history.json").read_text())
    assert history["epoch"] == [1] and len(history["val_map50"]) == 1
    at.button(key="train_use_model").click().run()
    assert at.session_state[ui.ACTIVE_DETECTOR] == str(runs / run_id / "model.keras")
    wait_until_no_run_is_active(runs)

    hist = page("history").run()
    assert any(run_id in o for o in hist.multiselect(key="history_runs").options)
    predict = page("predict").run()
    assert any(run_id in o for o in predict.selectbox(key="predict_detector").options)
    assert not any(run_id in o for o in predict.selectbox(key="predict_model").options)


def test_a_reshipped_reader_classifier_is_used_without_a_restart(tiny_detector, tmp_path,
                                                                monkeypatch):
    """The app caches its Reader; replacing the classifier it labels digits with (as
    ``crop_tuning --ship`` does) must load a new Reader, as a new detector does."""
    import os

    import ui
    from locmnist.model import build_model
    from locmnist.runs import MODEL_ENV
    from tests.helpers import tiny_config

    classifier = tmp_path / "classifier.keras"
    build_model(tiny_config()).save(classifier)
    monkeypatch.setenv(MODEL_ENV, str(classifier))
    first = ui.load_reader(tiny_detector)
    assert first is not None and ui.load_reader(tiny_detector) is first  # cached
    later = classifier.stat().st_mtime + 10
    os.utime(classifier, (later, later))                                  # re-shipped
    assert ui.load_reader(tiny_detector) is not first
