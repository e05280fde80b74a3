"""Exports (SavedModel, TFLite, .keras) match the Keras model; the reference's
model format (list outputs, legacy .h5 or .keras) loads in Predictor and the CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO

TOLERANCE = 1e-4


def _scrambled(model, seed=0):
    """Random weights *and* BatchNorm statistics, so parity checks the whole graph
    (a fresh model's BN is the identity and its softmax nearly uniform)."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim == 1:  # biases, BN gamma/beta/mean and (kept positive) variance
            weights.append((0.5 + rng.random(w.shape)).astype(w.dtype))
        else:
            weights.append(rng.normal(0, 2.0 / np.sqrt(np.prod(w.shape[:-1])), w.shape)
                           .astype(w.dtype))
    model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def small_model():
    from locmnist.config import preset
    from locmnist.model import build_model

    return _scrambled(build_model(preset("quick", widths=(4, 8, 8, 8), dense_units=16)))


@pytest.fixture(scope="module")
def test_canvases():
    from locmnist.synthesis import test_split

    return test_split("standard")[0][:200].astype(np.float32) / 255.0


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "keras"])
def test_export_matches_keras_model(fmt, small_model, test_canvases, tmp_path):
    from locmnist.export import export_model, load_export

    path = export_model(small_model, fmt, tmp_path / "out")
    probs, boxes, digit = load_export(path, fmt)(test_canvases)
    ref = small_model(test_canvases, training=False)
    assert probs.shape == (200, 10) and boxes.shape == (200, 4)
    np.testing.assert_allclose(probs, np.asarray(ref["classification"]), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(boxes, np.asarray(ref["bounding_box"]), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(digit, np.asarray(ref["digit"]).reshape(-1), atol=TOLERANCE, rtol=0)
    # Outputs must actually vary with the canvas, or parity would prove little.
    assert probs.std(axis=0).max() > 1e-3 and boxes.std(axis=0).min() > 1e-3


def test_keras_export_writes_the_config_sidecar_that_loading_reads(small_model, tmp_path):
    from locmnist.config import preset
    from locmnist.export import export_keras
    from locmnist.model_files import load_model_file

    cfg = preset("quick", widths=(4, 8, 8, 8), dense_units=16)
    for name in ("mine.keras", "model.keras"):  # a model file, and a run directory's
        path = export_keras(small_model, tmp_path / name, config=cfg)
        assert load_model_file(path)[1] == cfg
    assert {p.name for p in tmp_path.iterdir()} == {"mine.keras", "mine.config.json",
                                                    "model.keras", "config.json"}


def test_savedmodel_has_serving_signature(small_model, tmp_path):
    import tensorflow as tf

    from locmnist.export import export_savedmodel

    out = export_savedmodel(small_model, tmp_path / "locmnist" / "1")
    sig = tf.saved_model.load(str(out)).signatures["serving_default"]
    spec = sig.structured_input_signature[1]["image"]
    assert spec.shape.as_list() == [None, 75, 75, 1] and spec.dtype == tf.float32
    assert set(sig.structured_outputs) == {"classification", "bounding_box", "digit"}
    # Exporting again replaces the SavedModel in place, leaving no temp folders.
    export_savedmodel(small_model, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["1"]


def test_savedmodel_refuses_a_foreign_directory(small_model, tmp_path):
    from locmnist.export import export_savedmodel

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a SavedModel"):
        export_savedmodel(small_model, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_tflite_predictor_matches_predictor(small_model, tmp_path):
    from locmnist.export import export_tflite
    from locmnist.inference import Predictor
    from locmnist.tflite_runtime import TFLitePredictor

    img = np.zeros((90, 60), np.uint8)
    img[20:70, 25:33] = 255  # a "1", off-centre in a non-square image
    lite = TFLitePredictor.load(export_tflite(small_model, tmp_path / "m.tflite")).predict(img)
    keras_pred = Predictor(small_model).predict(img)
    assert lite.label == keras_pred.label and lite.message == keras_pred.message
    np.testing.assert_allclose(lite.probabilities, keras_pred.probabilities, atol=TOLERANCE)
    assert lite.digit_score == pytest.approx(keras_pred.digit_score, abs=TOLERANCE)
    if keras_pred.box is None:   # both said "not a digit"
        assert lite.box is None
    else:
        np.testing.assert_allclose(lite.box, keras_pred.box, atol=0.01)  # input pixels


def test_tflite_predictor_rejects_garbage(tmp_path):
    from locmnist.model_files import InvalidModel
    from locmnist.tflite_runtime import TFLitePredictor

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(InvalidModel):
        TFLitePredictor.load(bad)


def _reference_model():
    """The reference notebook's model file: its CNN with list outputs [softmax(10),
    box(4) in (xmin, ymin, xmax, ymax)], compiled as it did."""
    from tests.corpus import reference_list_model

    model = reference_list_model()
    model.compile(optimizer="adam", loss=["categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], ["mse"]])
    return _scrambled(model, seed=1)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_reference_format_loads_in_predictor_and_cli(suffix, tmp_path):
    from locmnist.inference import Predictor

    model = _reference_model()
    path = tmp_path / f"reference{suffix}"
    model.save(path)
    img = np.zeros((75, 75), np.uint8)
    img[10:40, 30:36] = 255
    pred = Predictor.load(path).predict(img)
    probs, box = model(img[None, ..., None].astype(np.float32) / 255.0)
    assert pred.label == int(np.argmax(probs[0]))
    np.testing.assert_allclose(pred.probabilities, np.asarray(probs[0]), atol=1e-5)
    np.testing.assert_allclose(pred.model_box, np.clip(np.asarray(box[0]), 0, 1), atol=1e-5)

    from PIL import Image

    Image.fromarray(img).save(tmp_path / "digit.png")
    proc = subprocess.run([sys.executable, "-m", "locmnist", "predict", "--model", str(path),
                           "--json", str(tmp_path / "digit.png")], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["label"] == pred.label
    np.testing.assert_allclose(record["probabilities"], pred.probabilities, atol=1e-5)


def test_export_cli_converts_reference_h5_and_checks_parity(tmp_path):
    path = tmp_path / "reference.h5"
    _reference_model().save(path)
    proc = subprocess.run([sys.executable, "-m", "locmnist", "export", "--model", str(path),
                           "--format", "tflite", "--out", str(tmp_path / "out"), "--check", "50",
                           "--json"], cwd=REPO, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["out"] == str(tmp_path / "out" / "model.tflite")
    assert Path(result["out"]).stat().st_size > 100_000  # 426k float32 weights
    assert result["checked_canvases"] == 50 and 0 <= result["max_abs_difference"] <= TOLERANCE


def test_export_cli_bad_model_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "locmnist", "export", "--model",
                           str(tmp_path / "missing.keras"), "--format", "keras", "--out",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 2
    assert "no model file" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_shipped_model_tflite_parity(test_canvases, tmp_path):
    from locmnist.export import export_tflite, max_difference
    from locmnist.model_files import load_model_file

    model, _ = load_model_file(REPO / "models" / "default.keras")
    path = export_tflite(model, tmp_path / "default.tflite")
    assert max_difference(model, path, "tflite", test_canvases) <= TOLERANCE
