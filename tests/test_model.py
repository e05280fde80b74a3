import numpy as np
import pytest

from locmnist.config import Config, preset
from locmnist.model import build_model, giou_l1_loss, iou


def test_seed_preset_is_the_reference_architecture():
    model = build_model(preset("seed"))
    assert model.count_params() == 426_638
    assert [type(l).__name__ for l in model.layers[1:8]] == [
        "Conv2D", "AveragePooling2D", "Conv2D", "AveragePooling2D", "Conv2D",
        "AveragePooling2D", "Flatten"]


@pytest.mark.parametrize("name", ["default", "quick", "seed"])
def test_named_outputs(name):
    model = build_model(preset(name))
    out = model(np.zeros((2, 75, 75, 1), np.float32))
    assert set(out) == {"classification", "bounding_box"}
    assert out["classification"].shape == (2, 10) and out["bounding_box"].shape == (2, 4)
    assert np.allclose(np.sum(out["classification"], axis=1), 1.0, atol=1e-5)


def test_default_model_is_small():
    assert build_model(preset("default")).count_params() * 4 < 5 * 2**20  # float32 < 5 MB


def test_iou_metric_and_giou_loss_agree_with_hand_cases():
    t = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]], np.float32)
    p = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]], np.float32)
    assert np.asarray(iou(t, p)) == pytest.approx([1.0, 1 / 7], rel=1e-5)
    loss = np.asarray(giou_l1_loss(t, p))
    assert loss[0] == pytest.approx(0.0, abs=1e-6)
    # 1 - GIoU: enclosing 0.5625, union 0.4375 -> GIoU = 1/7 - 0.125/0.5625; L1 mean 0.25.
    assert loss[1] == pytest.approx(1 - (1 / 7 - 0.125 / 0.5625) + 5 * 0.25, rel=1e-5)


def test_save_and_load_roundtrip(tmp_path):
    import keras

    from locmnist.model_files import load_model_file

    cfg = preset("quick", widths=(4, 8, 8, 8), dense_units=8)
    model = build_model(cfg)
    model.save(tmp_path / "model.keras")
    cfg.save(tmp_path / "config.json")
    loaded, loaded_cfg = load_model_file(tmp_path)
    x = np.random.default_rng(0).random((3, 75, 75, 1)).astype(np.float32)
    a, b = model(x), loaded(x)
    for k in ("classification", "bounding_box"):
        assert np.allclose(a[k], b[k], atol=1e-6)
    assert loaded_cfg == cfg
    assert build_model(loaded_cfg).count_params() == model.count_params()  # rebuilt from config


def test_config_roundtrip_and_validation(tmp_path):
    cfg = preset("default", epochs=3, seed=7)
    cfg.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError):
        Config(data="nope")
    with pytest.raises(ValueError):
        preset("huge")
