"""Model files from users: ``load_model_file`` / ``Predictor.load`` accept our
and the reference's architectures as .keras and .h5, and refuse code, pickles,
oversized files, zip bombs and wrong shapes with one clear ``InvalidModel``."""
from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from locmnist import runs
from locmnist.config import preset
from locmnist.inference import Predictor
from locmnist.model import build_model
from locmnist.model_files import (MAX_MODEL_BYTES, MAX_UNPACKED_BYTES, InvalidModel,
                                  load_model_file, output_roles)
from tests.corpus import Exploit, reference_list_model, with_lambda

TINY = dict(widths=(4, 8, 8, 8), dense_units=16)


def save(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def assert_predicts(path: Path) -> None:
    p = Predictor.load(path)
    probs, boxes = p.predict_canvas(np.zeros((2, 75, 75, 1), np.float32))
    assert probs.shape == (2, 10) and boxes.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    canvas = np.zeros((75, 75), np.float32)
    canvas[20:50, 35:40] = 1.0   # a "1"
    pred = p.predict(canvas)
    assert sum(pred.probabilities) == pytest.approx(1.0, abs=1e-4)
    # An untrained net may well answer "not a digit" (the calibration fallback's rule).
    if pred.label is None:
        assert pred.message == "not a digit" and pred.box is None
    else:
        assert pred.label in range(10) and len(pred.box) == 4


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("arch", ["seed", "default", "reference list outputs"])
def test_reference_architectures_load_and_predict(arch, suffix, tmp_path):
    model = (reference_list_model() if arch == "reference list outputs"
             else build_model(preset("quick", arch=arch, **TINY)))
    path = save(model, tmp_path / f"model{suffix}")
    loaded, _ = load_model_file(path)
    np.testing.assert_allclose(loaded.count_params(), model.count_params())
    assert_predicts(path)


def test_list_outputs_are_matched_by_size(tmp_path):
    inputs = keras.Input((75, 75, 1))
    x = layers.Flatten()(inputs)
    model = keras.Model(inputs, [layers.Dense(4)(x), layers.Dense(10, activation="softmax")(x)])
    assert output_roles(model) == (1, 0)   # box first, class second: found by size


def test_run_directory_loads_with_its_config(tmp_path):
    cfg = preset("quick", **TINY)
    save(build_model(cfg), tmp_path / runs.MODEL)
    cfg.save(tmp_path / runs.CONFIG)
    model, loaded_cfg = load_model_file(tmp_path)
    assert loaded_cfg == cfg


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_code_is_refused_and_never_runs(suffix, tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / f"lambda{suffix}"
    save(with_lambda(marker), path)
    assert not marker.exists()
    with pytest.raises(InvalidModel, match="Lambda"):
        load_model_file(path)
    with pytest.raises(InvalidModel, match="Lambda"):
        Predictor.load(path)
    assert not marker.exists(), "the Lambda's code ran while loading"


@pytest.mark.parametrize("name", ["model.keras", "model.h5", "model.pkl", "model.pickle"])
def test_pickles_are_never_unpickled(name, tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(Exploit(str(marker))))
    with pytest.raises(InvalidModel):
        load_model_file(path)
    assert not marker.exists()


def test_foreign_module_in_keras_config_is_refused(tmp_path):
    """A hand-edited .keras whose config names a non-Keras module and class."""
    path = save(reference_list_model(), tmp_path / "good.keras")
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                cfg = json.loads(data)
                dense = cfg["config"]["layers"][-1]
                dense["config"]["activation"] = {"module": "os", "class_name": "function",
                                                 "config": "system", "registered_name": None}
                data = json.dumps(cfg).encode()
            dst.writestr(item, data)
    with pytest.raises(InvalidModel, match="not allowed: .*os"):
        load_model_file(evil)


def test_zip_bomb_posing_as_keras_is_refused(tmp_path):
    path = tmp_path / "bomb.keras"
    zeros = b"\0" * 2**20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("config.json", json.dumps({"class_name": "Functional", "config": {}}))
        with z.open("model.weights.h5", "w", force_zip64=True) as f:
            for _ in range(MAX_UNPACKED_BYTES // len(zeros) + 1):
                f.write(zeros)
    assert path.stat().st_size < MAX_MODEL_BYTES
    with pytest.raises(InvalidModel, match="unpacks to"):
        load_model_file(path)


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04broken zip",
                                     b"\x89HDF\r\n\x1a\nbroken"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_garbage_files_are_refused(content, suffix, tmp_path):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(content)
    with pytest.raises(InvalidModel) as err:
        load_model_file(path)
    assert path.name in str(err.value)


def test_truncated_keras_file_is_refused(tmp_path):
    path = save(reference_list_model(), tmp_path / "m.keras")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InvalidModel):
        load_model_file(path)


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.keras"
    with open(path, "wb") as f:
        f.truncate(MAX_MODEL_BYTES + 1)  # sparse: no real disk use
    with pytest.raises(InvalidModel, match="limit"):
        load_model_file(path)


def test_missing_file_and_empty_run_dir(tmp_path):
    with pytest.raises(InvalidModel, match="no model file"):
        load_model_file(tmp_path / "nope.keras")
    with pytest.raises(InvalidModel, match="no model file"):
        load_model_file(tmp_path)   # a directory without model.keras


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_wrong_input_shape_is_refused(suffix, tmp_path):
    path = save(reference_list_model(input_shape=(28, 28, 1)), tmp_path / f"mnist{suffix}")
    with pytest.raises(InvalidModel, match=r"input of shape \(75, 75, 1\)"):
        load_model_file(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_wrong_outputs_are_refused(suffix, tmp_path):
    path = save(reference_list_model(n_outputs=1), tmp_path / f"classifier{suffix}")
    with pytest.raises(InvalidModel, match="two outputs"):
        load_model_file(path)


def test_our_crop_layer_is_allowed_only_from_our_module():
    from locmnist.model_files import check_layers

    ours = {"class_name": "BoxCrop", "module": "locmnist.model", "config": {"size": 28}}
    check_layers({"config": {"layers": [ours]}})          # ours: fine
    for fake in ({**ours, "module": "evil.layers"}, {**ours, "module": None}):
        with pytest.raises(InvalidModel, match="not allowed"):
            check_layers({"config": {"layers": [fake]}})
