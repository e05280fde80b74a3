"""The correction loop in the app (AppTest): "Wrong? It's a …" on the Predict page, and
"Fine-tune on corrections" on the Train page."""
import json
import time

import pytest

from locmnist.corrections import DB_NAME, CorrectionStore
from locmnist.runs import HISTORY, MODEL
from tests.helpers import mnist_test_png, needs_model, page


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCMNIST_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("LOCMNIST_TRAIN_OVERRIDES", raising=False)
    return tmp_path / "runs"


def by_label(widgets, label):
    [w] = [w for w in widgets if w.label == label]
    return w


def save_button(at):
    return by_label(at.button, "Save the correction")


@needs_model
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


@needs_model
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


TINY_FINETUNE = {"epochs": 2, "replay_digits": 128, "batch_size": 64, "val_digits": 64,
                 "test_limit": 100}


@needs_model
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
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(1.0)
        at.run()
        if any(s.value.endswith((": completed", ": failed", ": cancelled", "incomplete"))
               for s in at.subheader):
            break
    assert not at.exception
    assert f"Run {run_id}: completed" in [s.value for s in at.subheader], \
        [e.value for e in at.error]
    [table] = [m.value for m in at.markdown if m.value.startswith("| accuracy on | before")]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["| held-out corrections (n=2)", "| test split (n=100)"]
    assert all(r[1].endswith("%") and r[2].endswith("%** |") for r in rows)
    history = json.loads((runs / run_id / HISTORY).read_text())
    assert history["epoch"] == [1, 2]
    at.button(key="train_use_model").click().run()
    assert at.session_state["active_model"] == str(runs / run_id / MODEL)
