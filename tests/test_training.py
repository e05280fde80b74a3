import json
import threading
import time

import keras
import numpy as np
import pytest

from locmnist import runs
from locmnist.data import load_mnist
from locmnist.files import read_json
from locmnist.training import train
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    seen = []
    result = train(tiny_config(epochs=3), out, progress=seen.append)
    return out, result, seen


def test_tiny_training_lowers_the_loss(tiny_run):
    _, result, _ = tiny_run
    h = result.history
    assert result.status == "completed" and len(h["loss"]) == 3
    assert h["loss"][-1] < h["loss"][0]
    assert h["val_loss"][-1] < h["val_loss"][0]


def test_history_has_every_curve(tiny_run):
    _, result, _ = tiny_run
    for base in ("loss", "classification_loss", "bounding_box_loss", "classification_accuracy",
                 "bounding_box_mse", "bounding_box_iou"):
        assert base in result.history and "val_" + base in result.history
    assert result.history["elapsed_s"] == sorted(result.history["elapsed_s"])


def test_run_directory_files(tiny_run):
    out, result, _ = tiny_run
    for name in (runs.MODEL, runs.CONFIG, runs.HISTORY, runs.METRICS, runs.STATUS,
                 runs.CALIBRATION):
        assert (out / name).is_file(), name
    run = runs.run_info(out)
    assert run.state == "completed" and run.has_model and run.config["epochs"] == 3
    metrics = read_json(out / runs.METRICS)
    assert metrics["n"] == 10000 and metrics == result.metrics
    # The accuracy is the per-class accuracies weighted by the test split's class counts.
    counts = np.bincount(load_mnist().y_test, minlength=10)
    per_class = np.array([metrics["per_class_accuracy"][str(c)] for c in range(10)])
    assert metrics["accuracy"] == pytest.approx(float(per_class @ counts / counts.sum()),
                                                abs=1e-6)
    assert json.loads((out / runs.HISTORY).read_text()) == result.history
    assert not list(out.glob("*.tmp*"))                     # no temp files left behind
    keras.models.load_model(out / runs.MODEL, compile=False)


def test_a_tiny_model_learns_to_reject_what_is_not_a_digit(tiny_run):
    """Three tiny epochs with 10% negatives: noise and textures are refused, digits are not.

    (Untrained, the same net rejects about 1% of the negative test split.)"""
    out, result, _ = tiny_run
    m = result.metrics
    assert m["reject_rule"] == "digit"
    assert m["reject_rate_negatives_by_kind"]["noise"] > 0.5
    assert m["reject_rate_negatives_by_kind"]["texture"] > 0.3
    assert m["digits_rejected"] < 0.05
    cal = json.loads((out / runs.CALIBRATION).read_text())
    assert cal["fitted"] and cal["rule"] == "digit" and 0 < cal["threshold"] <= 0.5
    assert cal["validation"]["digits"] == 256 and cal["validation"]["negatives"] > 0
    assert "digit_accuracy" in result.history and "val_digit_accuracy" in result.history


def test_progress_hook(tiny_run):
    _, _, seen = tiny_run
    assert seen and seen[-1].epoch == 3 and seen[-1].history is not None
    assert all(0 <= p.fraction <= 1 for p in seen)
    assert [p.epoch for p in seen if p.history is not None] == [1, 2, 3]


def test_cancel_stops_and_keeps_best_model(tmp_path):
    cancel = threading.Event()

    def progress(p):
        if p.history is not None:   # cancel once the first epoch is saved
            cancel.set()

    result = train(tiny_config(epochs=6), tmp_path, progress=progress, cancel=cancel)
    assert result.status == "cancelled"
    assert len(result.history["loss"]) == 1     # the partial second epoch is not recorded
    assert result.model_path is not None and result.model_path.exists()
    assert runs.run_info(tmp_path).state == "cancelled"


def test_cancel_file(tmp_path):
    def progress(p):
        if p.history is not None:   # after the first epoch is saved
            (tmp_path / runs.CANCEL).touch()

    result = train(tiny_config(epochs=4), tmp_path, progress=progress, evaluate_test=False)
    # The partial second epoch is dropped: history and model are from epoch 1.
    assert result.status == "cancelled" and len(result.history["loss"]) == 1
    assert result.model_path is not None


def test_cancel_before_first_epoch_leaves_no_model(tmp_path):
    result = train(tiny_config(epochs=2), tmp_path, progress=lambda p: (tmp_path / runs.CANCEL).touch(),
                   evaluate_test=False)
    assert result.status == "cancelled" and result.model_path is None and result.history == {}
    assert runs.run_info(tmp_path).state == "cancelled"


def test_time_limit(tmp_path):
    result = train(tiny_config(epochs=50, time_limit_s=3.0), tmp_path, evaluate_test=False)
    assert result.status == "completed"
    # It stopped early, and only once the limit was reached (no wall-clock bound: CI is noisy).
    assert len(result.history["loss"]) < 50 and result.history["elapsed_s"][-1] >= 3.0


class _SlowerMachine(keras.callbacks.Callback):
    """Sleeps after every training step, on the clock the time limit reads."""

    def __init__(self, pause_s: float):
        super().__init__()
        self.pause_s, self.steps = pause_s, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        time.sleep(self.pause_s)


def test_quick_preset_result_does_not_depend_on_machine_speed(tmp_path):
    """The quick preset is work-based: a fixed number of steps on a step-based learning-rate
    schedule, its time limit only a safety cap. So a run on a slower machine does every
    step and ends where the normal run ends (the same losses and learning rates)."""
    from locmnist.config import preset

    quick = preset("quick")
    cfg = tiny_config(epochs=quick.epochs, train_digits=512, val_digits=128,
                      warmup_epochs=quick.warmup_epochs, learning_rate=quick.learning_rate,
                      time_limit_s=quick.time_limit_s)
    normal = train(cfg, tmp_path / "normal", evaluate_test=False)
    slower = _SlowerMachine(pause_s=0.25)
    slow = train(cfg, tmp_path / "slow", callbacks=[slower], evaluate_test=False)
    assert normal.status == slow.status == "completed"
    assert slower.steps == quick.epochs * (512 // 64)  # every step, each one 0.25 s slower
    assert slow.history["elapsed_s"][-1] >= slower.steps * 0.25
    epochs = [float(e) for e in range(1, quick.epochs + 1)]
    assert slow.history["epoch"] == normal.history["epoch"] == epochs
    assert slow.history["learning_rate"] == pytest.approx(normal.history["learning_rate"])
    for key in ("loss", "val_loss", "val_classification_accuracy"):
        assert slow.history[key] == pytest.approx(normal.history[key], rel=1e-3), key


def test_unwritable_run_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write to run directory"):
        train(tiny_config(), blocker / "run")


def test_learning_rate_schedule_is_chosen_by_a_field():
    from locmnist.config import preset
    from locmnist.training import lr_schedule

    assert lr_schedule(preset("seed"), 100) == 1e-3  # the reference's constant Adam rate
    cosine = lr_schedule(preset("seed", lr_schedule="cosine", warmup_epochs=0.5), 100)
    assert float(cosine(10)) < float(cosine(40)) < 1e-3 == pytest.approx(float(cosine(50)))


def test_the_training_step_is_traced_once():
    """``build_training_state`` creates the optimizer's and metrics' variables before
    ``fit``; created inside the first trace, they make TensorFlow trace the step twice."""
    from locmnist.model import build_model, compile_model
    from locmnist.training import build_training_state, make_dataset

    cfg = tiny_config()
    mnist = load_mnist()
    traces = {}
    for prebuilt in (False, True):
        model = compile_model(build_model(cfg), cfg, 1e-3)
        data = make_dataset(mnist.x_train[:256], mnist.y_train[:256], cfg)
        if prebuilt:
            build_training_state(model, data)
        step, calls = model.train_step, []
        model.train_step = lambda batch, step=step, calls=calls: calls.append(1) or step(batch)
        model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
        traces[prebuilt] = len(calls)  # Python runs train_step only while tracing
    assert traces == {False: 2, True: 1}
