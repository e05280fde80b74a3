"""Every page of the Streamlit app under AppTest (no browser; see test_e2e_browser.py)."""
import json
import os
import time

import pytest
from streamlit.testing.v1 import AppTest

from locmnist import jobs
from locmnist.runs import CANCEL, CONFIG, HISTORY, JOB, METRICS, MODEL, STATUS
from tests.helpers import APP_TIMEOUT as TIMEOUT
from tests.helpers import (REPO, mnist_test_png, page, rerun_until_run_ends,
                           wait_until_no_run_is_active)

# Training settings the page's form does not show: a tiny net on few digits (seconds).
TINY_NET = {"train_digits": 512, "val_digits": 256, "batch_size": 64, "widths": [4, 8, 8, 8],
            "dense_units": 16, "time_limit_s": 0}


# Every test gets its own empty runs root (the ``runs`` fixture, conftest.py).
pytestmark = pytest.mark.usefixtures("runs")


def test_app_entry_renders_the_predict_page():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Predict"
    assert [m.label for m in at.metric] == ["Number", "Predicted digit"]  # the empty canvas


@pytest.mark.parametrize("name", ["predict", "train", "history", "evaluate"])
def test_every_page_renders(name):
    at = page(name).run()
    assert not at.exception
    assert at.title[0].value == name.capitalize()


def test_upload_shows_the_predicted_digit_and_per_file_errors():
    at = page("predict").run()
    (first, first_label), (second, second_label) = mnist_test_png(0), mnist_test_png(1)
    at.file_uploader(key="predict_upload").set_value([
        ("first.png", first, "image/png"), ("broken.png", b"definitely not a png", "image/png"),
        ("second.png", second, "image/png")]).run()
    assert not at.exception
    values = [m.value for m in at.metric if m.label == "Predicted digit"]
    assert values == ["—", str(first_label), str(second_label)]  # [0]: the empty canvas
    assert any(e.value.startswith("broken\\.png: not a supported image") for e in at.error)
    # Each digit: every digit boxed by the detector, the single-digit box, the 75x75 view.
    assert len(at.get("image")) == 6


def test_upload_floods_are_capped_and_reruns_reuse_predictions(monkeypatch):
    """Issue 12 finding 7: a file cap per rerun; a rerun does not decode or predict again."""
    import locmnist.preprocess

    monkeypatch.setenv("LOCMNIST_MAX_UPLOAD_FILES", "3")
    decoded = []
    real_open = locmnist.preprocess.open_image
    monkeypatch.setattr(locmnist.preprocess, "open_image",
                        lambda data: decoded.append(1) or real_open(data))
    png, label = mnist_test_png(0)
    at = page("predict").run()
    at.file_uploader(key="predict_upload").set_value(
        [(f"{i}.png", png, "image/png") for i in range(8)]).run()
    assert not at.exception
    assert any("first 3 of your 8 images" in w.value for w in at.warning)
    values = [m.value for m in at.metric if m.label == "Predicted digit"]
    assert values == ["—"] + [str(label)] * 3
    assert len(decoded) == 1          # three copies of one image: one decode, by content hash
    at.run()                           # a rerun, as after a canvas stroke
    assert len(decoded) == 1
    assert [m.value for m in at.metric if m.label == "Predicted digit"] == values


def test_a_file_name_cannot_inject_markdown():
    at = page("predict").run()
    at.file_uploader(key="predict_upload").upload("[win](http://evil.example).png", b"no").run()
    assert not at.exception
    assert at.error[0].value.startswith("\\[win\\]\\(http://evil\\.example\\)\\.png: ")


def test_an_invalid_uploaded_model_is_a_clear_error(tmp_path):
    at = page("predict").run()
    at.selectbox(key="predict_model").set_value("__upload__").run()
    at.file_uploader(key="predict_model_upload").upload("evil.keras", b"PK\x03\x04 junk").run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("evil\\.keras "), errors  # markdown-escaped
    assert [m.value for m in at.metric] == ["—", "—"]  # the empty canvas: nothing predicted


def test_a_crafted_huge_model_upload_is_refused_before_it_is_saved(tmp_path, monkeypatch):
    """Issue 12 finding 2/6: a few-KB .keras asking for 4.5 GB of weights."""
    import tempfile

    import keras

    from tests.corpus import craft

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    inputs = keras.Input((75, 75, 1))
    x = keras.layers.Flatten()(inputs)
    keras.Model(inputs, [keras.layers.Dense(10, activation="softmax")(x),
                         keras.layers.Dense(4)(x)]).save(tmp_path / "small.keras")
    big = craft(tmp_path / "small.keras", tmp_path / "big.keras",
                lambda cfg: cfg["config"]["layers"][-1]["config"].update(units=200_000))
    at = page("predict").run()
    at.selectbox(key="predict_model").set_value("__upload__").run()
    at.file_uploader(key="predict_model_upload").upload("big.keras", big.read_bytes()).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "units 200,000" in errors[0], errors
    assert not (tmp_path / "locmnist-uploads").exists()  # refused from memory: nothing written


def test_evaluate_a_sample_of_the_test_split():
    at = page("evaluate").run()
    at.select_slider(key="evaluate_n").set_value(500).run()
    at.button(key="evaluate_run").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Accuracy"].rstrip("%")) > 80
    assert float(metrics["Mean IoU"]) > 0.5
    assert len(at.get("image")) == 12  # the worst-predictions gallery
    # "Not a digit" on the negative test split, and the calibration plots.
    for label in ("Negatives rejected", "Digits wrongly rejected", "Accuracy on accepted",
                  "ECE (15 bins)"):
        assert metrics[label].endswith("%"), label
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Reliability: accuracy against confidence" in titles
    assert "Rejection trade-off" in titles
    assert '"Not sure" trade-off (the digit rule at its threshold)' in titles
    at.run()  # the result stays across reruns, for the model and size it was computed for
    assert {m.label: m.value for m in at.metric} == metrics
    at.select_slider(key="evaluate_n").set_value(1000).run()
    assert "Accuracy" not in {m.label for m in at.metric}


def test_not_a_digit_is_shown_with_the_probabilities_greyed(tmp_path, monkeypatch):
    """A model whose saved threshold no input reaches: the page says "Not a digit"."""
    from locmnist.calibration import Calibration, sidecar_path
    from locmnist.model import build_model
    from tests.helpers import tiny_config

    path = tmp_path / "picky.keras"
    build_model(tiny_config()).save(path)
    Calibration(rule="digit", threshold=1.5, fitted=True).save(sidecar_path(path))
    monkeypatch.setenv("LOCMNIST_MODEL", str(path))
    at = page("predict").run()
    png, _ = mnist_test_png(0)
    at.file_uploader(key="predict_upload").set_value([("digit.png", png, "image/png")]).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert [m.value for m in at.metric if m.label == "Predicted digit"] == ["—", "Not a digit"]
    assert "Best digit guess" in metrics
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = [c for c in charts if c["layout"]["title"]["text"].startswith("Probabilities")]
    assert len(bars) == 1 and bars[0]["layout"]["title"]["text"] == "Probabilities (no digit chosen)"
    assert set(bars[0]["data"][0]["marker"]["color"]) == {"#C8C8C8"}   # greyed
    assert len(at.get("image")) == 2   # the input, and what the model saw


@pytest.mark.slow
def test_train_page_tiny_run_to_completion(runs, monkeypatch):
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", json.dumps(TINY_NET))
    at = page("train").run()
    at.number_input(key="train_epochs_quick").set_value(2)
    at.form_submit_button[0].click().run()
    assert not at.exception
    assert any(s.value.startswith("Started run") for s in at.success)
    run_id = at.session_state["train_run"]

    other_tab = page("train").run()
    assert any(run_id in i.value for i in other_tab.info)  # told, and watching it
    other_tab.form_submit_button[0].click().run()
    assert any("already in progress" in w.value for w in other_tab.warning)

    rerun_until_run_ends(at, run_id, 150)
    assert not at.exception
    assert f"Run {run_id}: completed" in [h.value for h in at.subheader], [
        e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    saved = json.loads((runs / run_id / METRICS).read_text())
    assert metrics["Test accuracy"] == f"{saved['accuracy']:.2%}"   # what the run measured
    history = json.loads((runs / run_id / HISTORY).read_text())
    assert history["epoch"] == [1, 2]
    at.button(key="train_use_model").click().run()
    assert at.session_state["active_model"] == str(runs / run_id / MODEL)

    wait_until_no_run_is_active(runs)  # the trainer exits (freeing the lock) after "completed"
    refreshed = page("train").run()  # a refresh is a new session: the last run is still shown
    assert f"Run {run_id}: completed" in [h.value for h in refreshed.subheader]
    assert any("latest run on this server" in c.value for c in refreshed.caption)

    hist = page("history").run()
    assert not hist.exception
    # Shown at once beside the shipped default, to compare without a click.
    assert hist.multiselect(key="history_runs").value == ["Shipped default",
                                                          f"{run_id} (completed)"]


def test_the_users_green_box_is_not_read_as_ink():
    import numpy as np
    from PIL import Image, ImageDraw

    from app_pages.predict import USER_BOX_COLOR, without_user_boxes

    img = Image.new("RGBA", (280, 280), "white")
    draw = ImageDraw.Draw(img)
    draw.line([(70, 60), (210, 60), (120, 235)], fill="black", width=18)
    ink_only = np.asarray(img).copy()
    draw.rectangle([40, 30, 240, 260], outline=USER_BOX_COLOR, width=3)
    cleaned = without_user_boxes(np.asarray(img))
    assert (cleaned[30, 100:200, :3] == 255).all()  # the box's top edge is gone
    # The strokes are untouched wherever the box does not cross them.
    assert (cleaned[100:200, 100:200] == ink_only[100:200, 100:200]).all()


def test_without_any_model_the_pages_say_so(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCMNIST_MODEL", str(tmp_path / "missing.keras"))
    for name in ("predict", "evaluate"):
        at = page(name).run()
        assert not at.exception
        assert any("No model yet" in w.value for w in at.warning)


@pytest.mark.slow
def test_the_cancel_button_stops_a_run(runs, monkeypatch):

    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", json.dumps(
        {"epochs": 50, "train_digits": 4096, "batch_size": 64, "time_limit_s": 0}))
    at = page("train").run()
    at.form_submit_button[0].click().run()
    run_id = at.session_state["train_run"]
    # Another visitor watches the run but cannot cancel it (issue 12 finding 4),
    # nor see the server's overrides.
    other = page("train").run()
    assert not [b for b in other.button if b.key == "train_cancel"]
    assert any("only they can cancel" in c.value for c in other.caption)
    assert not any("LOCMNIST_TRAIN_OVERRIDES" in c.value for c in other.caption)
    at.button(key="train_cancel").click().run()
    assert (runs / run_id / CANCEL).exists()
    wait_until_no_run_is_active(runs)
    at.run()
    assert not at.exception
    assert f"Run {run_id}: cancelled" in [h.value for h in at.subheader]
    assert jobs.active_run_id(runs) is None


def test_uploaded_models_older_than_a_day_are_pruned(tmp_path):
    import ui

    old, fresh, other = tmp_path / "a.keras", tmp_path / "b.keras", tmp_path / "notes.txt"
    for f in (old, fresh, other):
        f.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    os.utime(other, (two_days_ago, two_days_ago))
    ui._prune_uploads(tmp_path)
    assert not old.exists() and fresh.exists() and other.exists()


def test_uploaded_models_beyond_the_quota_go_oldest_first(tmp_path):
    """Issue 12 finding 6: the disk for strangers' models is bounded."""
    import ui

    files = [tmp_path / f"{i}.keras" for i in range(4)]
    for age, f in enumerate(reversed(files)):   # 0.keras is the oldest
        f.write_bytes(b"x" * 1000)
        os.utime(f, (time.time() - 60 * age, time.time() - 60 * age))
    ui._prune_uploads(tmp_path, quota_bytes=2500)
    assert [f.exists() for f in files] == [False, False, True, True]


def test_pickers_offer_finished_readable_runs_of_their_own_kind(runs):
    import ui
    from tests.helpers import make_run

    done = {"state": "completed", "pid": 1}
    for name, status, kind, model in [("loc", done, "localizer", True),
                                      ("det", done, "detector", True),
                                      ("loc-no-model", done, "localizer", False),
                                      ("loc-live", {"state": "running", "pid": 0}, "localizer",
                                       True),
                                      ("loc-unreadable", None, "localizer", True)]:
        d = make_run(runs, name, status, job={"pid": os.getpid()} if "live" in name else None)
        (d / CONFIG).write_text(json.dumps({"kind": kind} if kind == "detector" else {}))
        if status is None:
            (d / STATUS).write_text("[1]")
        if model:
            (d / MODEL).write_bytes(b"")
    assert ui.run_model_options(detectors=False) == {
        str(runs / "loc" / MODEL): "Run loc (completed)"}
    assert ui.run_model_options(detectors=True) == {
        str(runs / "det" / MODEL): "Run det (completed)"}


@pytest.mark.parametrize("name", ["predict", "train", "history", "evaluate"])
def test_every_page_renders_beside_malformed_runs(runs, name):
    """Issue 12 finding 5: one bad run directory took down every page for everyone."""
    for i, (file, text) in enumerate([(STATUS, "[1]"), (STATUS, '"x"'),
                                      (STATUS, "5"), (JOB, '{"pid": "12"}'),
                                      (HISTORY, "[1]")]):
        d = runs / f"2026010{i}-bad"
        d.mkdir(parents=True)
        if file != STATUS:
            (d / STATUS).write_text('{"state": "completed"}')
        (d / file).write_text(text)
    at = page(name).run()
    assert not at.exception
    assert at.title[0].value == name.capitalize()
    if name == "history":
        assert any("cannot be shown" in w.value and "unreadable" in w.value for w in at.warning)


def test_not_sure_is_shown_when_no_digit_reaches_the_floor(tmp_path, monkeypatch):
    """A model whose saved confidence floor no digit reaches: "Not sure", probabilities
    greyed, and the caption says why."""
    from locmnist.calibration import Calibration, sidecar_path
    from locmnist.model import build_model
    from tests.helpers import tiny_config

    path = tmp_path / "unsure.keras"
    build_model(tiny_config()).save(path)
    Calibration(rule="digit", threshold=0.0, min_confidence=1.0, fitted=True).save(
        sidecar_path(path))
    monkeypatch.setenv("LOCMNIST_MODEL", str(path))
    at = page("predict").run()
    png, _ = mnist_test_png(0)
    at.file_uploader(key="predict_upload").set_value([("digit.png", png, "image/png")]).run()
    assert not at.exception
    assert [m.value for m in at.metric if m.label == "Predicted digit"] == ["—", "Not sure"]
    assert any("cannot tell which" in c.value for c in at.caption)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = [c for c in charts if c["layout"]["title"]["text"].startswith("Probabilities")]
    assert len(bars) == 1 and set(bars[0]["data"][0]["marker"]["color"]) == {"#C8C8C8"}
