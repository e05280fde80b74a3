"""The detector model: any input size, parameter budget, a tiny one learns, files load safely."""
import json

import keras
import numpy as np
import pytest

from locmnist.detector import build_detector, compile_detector, encode_batch, pad16
from locmnist.detector_config import DETECTOR_PRESETS, DetectorConfig, detector_preset
from locmnist.model_files import InvalidModel, load_detector_file
from locmnist.scenes import scene_batch
from tests.helpers import tiny_detector_config


@pytest.mark.parametrize("name", DETECTOR_PRESETS)
def test_presets_fit_the_parameter_budget(name):
    model = build_detector(detector_preset(name))
    assert model.count_params() <= 1_500_000
    assert set(model.output) == {"heatmap", "size", "offset"}


def test_any_input_size_multiple_of_16_gives_stride_4_maps():
    model = build_detector(tiny_detector_config())
    for h, w in ((64, 64), (48, 240), (112, 160)):
        out = model(np.zeros((2, h, w, 1), np.float32))
        assert tuple(out["heatmap"].shape) == (2, h // 4, w // 4, 10)
        assert tuple(out["size"].shape) == tuple(out["offset"].shape) == (2, h // 4, w // 4, 2)
    assert pad16(np.zeros((1, 50, 70, 1))).shape == (1, 64, 80, 1)


def test_a_tiny_detector_lowers_its_loss(mnist):
    cfg = tiny_detector_config()
    keras.utils.set_random_seed(0)
    model = compile_detector(build_detector(cfg), cfg, 3e-3)
    x, y = encode_batch(scene_batch(mnist.x_train, mnist.y_train.astype(np.int64), cfg, 0, 0))
    first = model.train_on_batch(x, y)[0]
    for _ in range(25):
        last = model.train_on_batch(x, y)[0]
    assert last < 0.5 * first


def test_config_round_trip_and_validation():
    cfg = detector_preset("detect-quick", epochs=2)
    assert DetectorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        DetectorConfig(canvas_height=100)
    with pytest.raises(ValueError):
        detector_preset("nope")


def test_run_directory_contract(tiny_detector):
    history = json.loads((tiny_detector / "history.json").read_text())
    for key in ("loss", "heatmap_loss", "size_loss", "offset_loss", "val_loss",
                "val_heatmap_loss", "val_size_loss", "val_offset_loss", "val_map50", "val_map",
                "elapsed_s", "epoch", "learning_rate"):
        assert len(history[key]) == 1, key
    assert json.loads((tiny_detector / "config.json").read_text())["kind"] == "detector"
    assert json.loads((tiny_detector / "status.json").read_text())["state"] == "completed"
    model, cfg = load_detector_file(tiny_detector)
    assert cfg == tiny_detector_config()


def test_a_localizer_or_junk_is_not_a_detector(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"PK not really")
    with pytest.raises(InvalidModel):
        load_detector_file(junk)
    with pytest.raises(InvalidModel, match="not a digit detector"):
        load_detector_file("models/default.keras")
