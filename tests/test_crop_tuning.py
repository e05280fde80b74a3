"""Crop tuning (locmnist.crop_tuning): the crops are framed as the reader frames a
detected digit, seeded, and mixed into batches with the right targets and weights; the
command tunes a real model into a run directory and ships it."""
import json

import numpy as np
import pytest

from locmnist import runs
from locmnist.crop_tuning import CropTuning, batches, digit_crops, jittered, negative_crops
from locmnist.reader import CLOSER_LOOK_INK, MASK_INSET
from tests.helpers import tiny_config


def _ink_height(crop: np.ndarray) -> int:
    rows = np.flatnonzero((crop[..., 0] > 0.3).any(axis=1))
    return int(rows[-1] - rows[0] + 1)


def test_jitter_moves_each_edge_by_box_heights():
    boxes = np.array([[10, 20, 30, 60], [0, 0, 5, 10]], np.float64)
    assert np.array_equal(jittered(np.random.default_rng(0), boxes, 0.0), boxes)
    moved = jittered(np.random.default_rng(0), boxes, 0.05)
    noise = np.random.default_rng(0).normal(0.0, 0.05, (2, 4))
    np.testing.assert_allclose(moved - boxes, noise * np.array([[40.0], [10.0]]))


def test_digit_crops_are_digits_framed_as_the_reader_frames_them(mnist):
    images, labels = mnist.x_train[:200], mnist.y_train[:200]
    x, y = digit_crops(np.random.default_rng(1), images, labels, 30, jitter=0.0)
    assert x.shape == (30, 75, 75, 1) and x.dtype == np.float32 and y.shape == (30,)
    assert set(y.tolist()) <= set(labels.tolist()) and 0.0 <= x.min() and x.max() <= 1.0
    # From true boxes, each crop holds its digit CLOSER_LOOK_INK px tall (less a wider
    # than tall one), less the MASK_INSET the reader trims from each side: its closer look.
    heights = np.array([_ink_height(c) for c in x])
    assert (heights <= CLOSER_LOOK_INK + 1).all()
    assert abs(np.median(heights) - CLOSER_LOOK_INK * (1 - 2 * MASK_INSET)) <= 1.5
    again = digit_crops(np.random.default_rng(1), images, labels, 30, jitter=0.0)
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])
    other = digit_crops(np.random.default_rng(2), images, labels, 30, jitter=0.0)
    assert not np.array_equal(x, other[0])


def test_negative_crops_hold_strokes_and_are_seeded():
    x = negative_crops((0, 2, 5), 12, jitter=0.03)
    assert x.shape == (12, 75, 75, 1) and x.dtype == np.float32
    assert (x.reshape(12, -1).max(axis=1) > 0.5).all()        # every crop has ink
    assert np.array_equal(x, negative_crops((0, 2, 5), 12, jitter=0.03))
    assert not np.array_equal(x, negative_crops((0, 2, 6), 12, jitter=0.03))
    assert negative_crops((0, 2, 5), 0, jitter=0.03).shape == (0, 75, 75, 1)


def test_a_batch_gets_its_crops_with_their_targets_and_weights(mnist):
    cfg = tiny_config(batch_size=32)
    settings = CropTuning(digit_crops=6, negative_crops=3)
    x, y, w = next(iter(batches(mnist.x_train[:256], mnist.y_train[:256], cfg, settings)))
    n = 32 + 6 + 3
    assert x.shape == (n, 75, 75, 1)
    digit_w, class_w, box_w = (np.asarray(w[k]) for k in ("digit", "classification",
                                                           "bounding_box"))
    assert np.array_equal(np.asarray(y["digit"])[-9:, 0], [1] * 6 + [0] * 3)
    assert (digit_w == 1).all()
    assert np.array_equal(class_w[-9:], [1] * 6 + [0] * 3) and (box_w[-9:] == 0).all()
    onehot = np.asarray(y["classification"])[-9:]
    assert (onehot[:6].sum(axis=1) == 1).all() and (onehot[6:] == 0).all()
    # The batch's own canvases come first, as training.make_dataset makes them.
    assert class_w[:32].sum() > 0 and box_w[:32].sum() > 0


def test_settings_are_checked():
    for bad in (dict(epochs=0), dict(learning_rate=0.0), dict(digit_crops=0),
                dict(negative_crops=-1), dict(box_jitter=-0.1), dict(train_digits=-1)):
        with pytest.raises(ValueError):
            CropTuning(**bad)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real, barely trained single-digit model run (with its config and digit output)."""
    from locmnist.training import train

    out = tmp_path_factory.mktemp("tiny-start")
    train(tiny_config(epochs=1), out, evaluate_test=False)
    return out / runs.MODEL


def test_cli_tunes_a_model_into_a_run_and_ships_it(tiny_model, tmp_path, monkeypatch):
    from locmnist.config import Config
    from locmnist.crop_tuning import main
    from locmnist.inference import Predictor

    out, dest = tmp_path / "run", tmp_path / "models" / "reader-classifier.keras"
    monkeypatch.setattr(runs, "READER_CLASSIFIER", dest)
    code = main(["--from", str(tiny_model), "--out", str(out), "--no-progress", "--ship",
                 "--epochs", "1", "--train-digits", "256", "--digit-crops", "8",
                 "--negative-crops", "4", "--test-limit", "100"])
    assert code == 0
    for name in (runs.CONFIG, runs.HISTORY, runs.MODEL, runs.STATUS, runs.CALIBRATION):
        assert (out / name).is_file(), name
    metrics = json.loads((out / runs.METRICS).read_text())
    assert metrics["n"] == 100 and metrics["crop_tuning"]["settings"]["digit_crops"] == 8
    # The start's seed and hold-out stay, so its validation digits stay unseen.
    start, tuned = Config.load(runs.sidecar(tiny_model, "config")), Config.load(out / runs.CONFIG)
    assert (tuned.seed, tuned.val_digits, tuned.epochs) == (start.seed, start.val_digits, 1)
    assert dest.is_file() and runs.sidecar(dest, "calibration").is_file()
    assert Predictor.load(dest).calibration.fitted


def test_tuning_needs_a_config_and_the_digit_output(tmp_path):
    import keras

    from locmnist.crop_tuning import tune
    from locmnist.model import build_model
    from locmnist.model_files import load_model_file

    bare = tmp_path / "bare.keras"
    build_model(tiny_config()).save(bare)           # no config saved beside it
    with pytest.raises(ValueError, match="saved config"):
        tune(bare, tmp_path / "run", CropTuning())
    assert isinstance(keras.models.load_model(bare), keras.Model)

    cfg = tiny_config(negative_fraction=0.0)        # no `digit` output
    no_digit = tmp_path / "no-digit.keras"
    build_model(cfg).save(no_digit)
    cfg.save(runs.sidecar(no_digit, "config"))
    assert load_model_file(no_digit)[1] == cfg      # its config is found: the output is missing
    with pytest.raises(ValueError, match="digit output"):
        tune(no_digit, tmp_path / "run2", CropTuning())


def test_cli_bad_model_is_one_clear_line(tmp_path, capsys):
    import signal

    from locmnist.crop_tuning import main

    handler = signal.getsignal(signal.SIGINT)
    assert main(["--from", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    assert signal.getsignal(signal.SIGINT) is handler      # the caller's handler is back
    err = capsys.readouterr().err
    assert "error: " in err and "missing.keras" in err and "Traceback" not in err
