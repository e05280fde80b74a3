"""The correction loop in the app (AppTest): "Wrong? It's a …" on the Predict page, and
"Fine-tune on corrections" on the Train page."""
import io
import json
import pytest

from locmnist.corrections import DB_NAME, CorrectionStore
from locmnist.runs import HISTORY, MODEL
from tests.helpers import mnist_test_png, page, rerun_until_run_ends


# Every test gets its own empty runs root (the ``runs`` fixture, conftest.py).
pytestmark = pytest.mark.usefixtures("runs")


def by_label(widgets, label):
    [w] = [w for w in widgets if w.label == label]
    return w


def save_button(at):
    return by_label(at.button, "Save the correction")


def test_wrong_answer_control_records_image_label_and_edited_box(runs):
    png, _ = mnist_test_png(0)
    at = page("predict").run()
    at.file_uploader(key="predict_upload").set_value([("seven.png", png, "image/png")]).run()
    assert not at.exception
    assert "Wrong? It's a …" in [e.label for e in at.expander]
    save_button(at).click().run()                      # no digit picked yet: nothing stored
    assert any("Pick the right digit" in w.value for w in at.warning)
    assert not (runs / DB_NAME).exists() or CorrectionStore(runs / DB_NAME).count() == 0

    model_box = [by_label(at.number_input, k).value for k in ("xmin", "ymin", "xmax", "ymax")]
    by_label(at.selectbox, "The right digit").set_value(3)
    by_label(at.number_input, "xmin").set_value(0.25)  # the person adjusts the box
    save_button(at).click().run()
    assert not at.exception
    assert any(s.value.startswith("Saved correction #1 (a 3). 1 stored") for s in at.success)
    [c] = CorrectionStore(runs / DB_NAME).corrections()
    assert (c.label, c.source) == (3, "uploaded") and c.model.startswith("default.keras:")
    assert c.box == pytest.approx((0.25, *model_box[1:]), abs=1e-6)
    assert c.png.startswith(b"\x89PNG")


def test_a_broken_store_is_an_error_on_the_page_not_a_crash(runs):
    runs.mkdir(parents=True)
    (runs / DB_NAME).write_bytes(b"not sqlite" * 1000)
    png, _ = mnist_test_png(0)
    at = page("predict").run()
    at.file_uploader(key="predict_upload").set_value([("seven.png", png, "image/png")]).run()
    by_label(at.selectbox, "The right digit").set_value(1)
    save_button(at).click().run()
    assert not at.exception
    assert any("not saved" in e.value and "not a corrections database" in e.value
               for e in at.error)


def _correct_a_rejected_drawing(png: bytes, ink: float = 0.0) -> None:
    """The Predict page's control under a "Not a digit" answer (any model's); ``ink`` fills
    what the model saw, so two calls can stand for two different drawings."""
    import numpy as np

    import ui
    from locmnist.results import NOT_A_DIGIT, Prediction

    rejected = Prediction(None, 0.4, (0.1,) * 10, None, None, None,
                          np.full((75, 75), ink, np.float32), (200, 160), NOT_A_DIGIT, 0.1)
    ui.correction_control(rejected, png, "models/default.keras", key="canvas", source="drawn")


def test_a_not_a_digit_answer_can_be_corrected_with_the_whole_image_as_box(runs):
    """A digit the model refuses is the first thing a user wants to correct; with no box
    from the model, the box starts as the whole image (fine-tuning finds the ink in it)."""
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    png, _ = mnist_test_png(2)
    at = AppTest.from_function(_correct_a_rejected_drawing, args=(Image.open(io.BytesIO(png)),),
                               default_timeout=60).run()
    assert not at.exception
    assert [by_label(at.number_input, k).value for k in ("xmin", "ymin", "xmax", "ymax")] == \
        [0.0, 0.0, 1.0, 1.0]
    assert any("(the whole image)" in c.value for c in at.caption)
    by_label(at.selectbox, "The right digit").set_value(1)
    save_button(at).click().run()
    assert any(s.value.startswith("Saved correction #1 (a 1)") for s in at.success)
    [c] = CorrectionStore(runs / DB_NAME).corrections()
    assert (c.label, c.box, c.source) == (1, (0.0, 0.0, 1.0, 1.0), "drawn")
    # Another refused drawing has the same whole-image box, but is a new form: its own keys.
    other = AppTest.from_function(_correct_a_rejected_drawing,
                                  args=(Image.open(io.BytesIO(png)), 0.5), default_timeout=60)
    assert by_label(other.run().selectbox, "The right digit").key != \
        by_label(at.selectbox, "The right digit").key


@pytest.fixture
def deferred_downloads(monkeypatch):
    """{file name: the callable a download button runs when clicked} (AppTest never clicks)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    seen, add = {}, MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        seen[file_name] = data_callable
        return add(self, data_callable, mimetype, coordinates, file_name, **kw)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    return seen


def exported(zip_bytes, tmp_path):
    """(labels, problems) of a downloaded corrections zip, read as ``train --extra`` reads it."""
    from locmnist.labelled import load_labelled

    path = tmp_path / "download.zip"
    path.write_bytes(zip_bytes)
    examples, problems = load_labelled(path)
    return [e.label for e in examples], problems


def test_public_visitor_downloads_only_the_corrections_of_their_session(
        runs, monkeypatch, tmp_path, deferred_downloads):
    monkeypatch.setenv("LOCMNIST_MODE", "public")
    monkeypatch.setenv("LOCMNIST_ADMIN_TOKEN", "a-long-admin-token")
    store = CorrectionStore(runs / DB_NAME)
    png, _ = mnist_test_png(0)
    for label in (5, 6):                               # other visitors' corrections
        store.add(png, label, (0.1, 0.1, 0.9, 0.9))

    at = page("train").run()                           # this visitor saved none yet
    button = at.get("download_button")[0]
    assert button.label == "Download your 0 corrections (zip)" and button.proto.disabled
    assert any("only with the admin token" in c.value for c in at.caption)

    predict = page("predict").run()
    predict.file_uploader(key="predict_upload").set_value([("seven.png", png, "image/png")]).run()
    by_label(predict.selectbox, "The right digit").set_value(3)
    save_button(predict).click().run()
    assert predict.session_state["my_corrections"] == [3]

    at = page("train")
    at.session_state["my_corrections"] = predict.session_state["my_corrections"]
    at.run()
    assert not at.exception
    button = at.get("download_button")[0]
    assert button.label == "Download your 1 correction (zip)" and not button.proto.disabled
    assert exported(deferred_downloads["corrections.zip"](), tmp_path) == ([3], [])

    at.session_state["admin_token"] = "a-long-admin-token"   # the sidebar's Admin box
    at.run()
    assert at.get("download_button")[0].label == "Download all 3 corrections (zip)"
    assert exported(deferred_downloads["corrections.zip"](), tmp_path) == ([5, 6, 3], [])


def test_local_mode_downloads_every_correction(runs, monkeypatch, tmp_path, deferred_downloads):
    monkeypatch.setenv("LOCMNIST_MODE", "local")
    png, _ = mnist_test_png(1)
    store = CorrectionStore(runs / DB_NAME)
    for label in (2, 4):
        store.add(png, label, (0.1, 0.1, 0.9, 0.9))
    at = page("train").run()
    assert not at.exception
    assert at.get("download_button")[0].label == "Download all 2 corrections (zip)"
    assert exported(deferred_downloads["corrections.zip"](), tmp_path) == ([2, 4], [])


TINY_FINETUNE = {"epochs": 2, "replay_digits": 128, "batch_size": 64, "val_digits": 64,
                 "test_limit": 100}


@pytest.mark.slow
def test_finetune_on_corrections_runs_as_a_training_run(runs, monkeypatch, mnist):
    from tests.new_style import as_pngs, hollow

    monkeypatch.setenv("LOCMNIST_FINETUNE_OVERRIDES", json.dumps(TINY_FINETUNE))
    at = page("train").run()
    assert not at.exception
    assert by_label(at.button, "Fine-tune on corrections").disabled  # no corrections yet

    store = CorrectionStore(runs / DB_NAME)
    pngs, boxes = as_pngs(hollow(mnist.x_test[mnist.y_test == 1][:6]), seed=4)
    for png, box in zip(pngs, boxes):
        store.add(png, 1, tuple(float(v) for v in box))
    at = page("train").run()
    assert any(c.value.startswith("6 corrections stored") for c in at.caption)
    by_label(at.button, "Fine-tune on corrections").click().run()
    assert not at.exception
    assert any(s.value.startswith("Started fine-tuning run") for s in at.success)
    run_id = at.session_state["train_run"]
    rerun_until_run_ends(at, run_id, 240)
    assert not at.exception
    assert f"Run {run_id}: completed" in [s.value for s in at.subheader], \
        [e.value for e in at.error]
    [table] = [m.value for m in at.markdown if m.value.startswith("| accuracy on | before")]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["| held-out corrections (n=1)", "| test split (n=100)"]
    assert all(r[1].endswith("%") and r[2].endswith("%** |") for r in rows)
    history = json.loads((runs / run_id / HISTORY).read_text())
    assert history["epoch"] == [1, 2]
    at.button(key="train_use_model").click().run()
    assert at.session_state["active_model"] == str(runs / run_id / MODEL)
