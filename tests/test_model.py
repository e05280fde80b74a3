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
    # The reference's architecture keeps its two outputs; ours adds "is there a digit".
    assert set(out) == ({"classification", "bounding_box"} if name == "seed"
                        else {"classification", "bounding_box", "digit"})
    assert out["classification"].shape == (2, 10) and out["bounding_box"].shape == (2, 4)
    assert np.allclose(np.sum(out["classification"], axis=1), 1.0, atol=1e-5)


def test_no_negatives_no_digit_output_and_old_configs_load_without_one(tmp_path):
    cfg = preset("quick", widths=(4, 8, 8, 8), dense_units=8, negative_fraction=0.0)
    assert set(build_model(cfg).output) == {"classification", "bounding_box"}
    old = {k: v for k, v in preset("quick").to_dict().items() if k != "negative_fraction"}
    assert Config.from_dict(old).negative_fraction == 0.0   # saved before the digit output
    with pytest.raises(ValueError, match="negative_fraction"):
        preset("quick", negative_fraction=1.0)


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
    from locmnist.model_files import load_model_file

    cfg = preset("quick", widths=(4, 8, 8, 8), dense_units=8)
    model = build_model(cfg)
    model.save(tmp_path / "model.keras")
    cfg.save(tmp_path / "config.json")
    loaded, loaded_cfg = load_model_file(tmp_path)
    x = np.random.default_rng(0).random((3, 75, 75, 1)).astype(np.float32)
    a, b = model(x), loaded(x)
    for k in ("classification", "bounding_box", "digit"):
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


def _square_canvas(x0: int, y0: int, side: int) -> np.ndarray:
    canvas = np.zeros((1, 75, 75, 1), np.float32)
    canvas[0, y0:y0 + side, x0:x0 + side] = 1.0
    return canvas


def test_box_crop_at_unit_scale_copies_pixels_exactly():
    from locmnist.model import BoxCrop

    # A 20 px square at (10, 10); margin 1.4 makes a 28 px window: one canvas pixel
    # per crop pixel, so the crop is an exact copy with the square at 4..24.
    canvas = _square_canvas(10, 10, 20)
    box = np.array([[10, 10, 30, 30]], np.float32) / 75
    crop = np.asarray(BoxCrop(28, margin=1.4)(canvas, box))[0, ..., 0]
    expected = np.zeros((28, 28), np.float32)
    expected[4:24, 4:24] = 1.0
    assert np.allclose(crop, expected, atol=1e-5)


def test_box_crop_normalizes_scale_and_keeps_brightness():
    from locmnist.model import BoxCrop

    # A 60 px square shrinks by 60 * 1.4 / 28 = 3: it fills 20 of 28 crop pixels, and
    # the anti-aliasing tent keeps its inside at full brightness.
    canvas = _square_canvas(5, 8, 60)
    box = np.array([[5, 8, 65, 68]], np.float32) / 75
    crop = np.asarray(BoxCrop(28)(canvas, box))[0, ..., 0]
    assert np.allclose(crop[6:22, 6:22], 1.0, atol=1e-5)
    assert np.allclose(crop[:3], 0.0) and np.allclose(crop[:, -3:], 0.0)
    assert crop.sum() == pytest.approx(20 * 20, rel=0.05)


def test_box_crop_off_the_canvas_is_black_and_passes_no_gradient_to_the_box():
    import tensorflow as tf

    from locmnist.model import BoxCrop

    canvas = tf.constant(np.ones((1, 75, 75, 1), np.float32))
    box = tf.Variable([[0.9, 0.9, 1.0, 1.0]])  # a corner: most of the window is outside
    with tf.GradientTape() as tape:
        crop = BoxCrop(28)(canvas, box)
        total = tf.reduce_sum(crop)
    crop = crop.numpy()[0, ..., 0]
    assert crop[-1, -1] == 0.0 and crop[0, 0] == pytest.approx(1.0)
    assert tape.gradient(total, box) is None


def test_box_crop_config_roundtrip():
    from locmnist.model import BoxCrop

    layer = BoxCrop(24, margin=1.2, name="g")
    again = BoxCrop.from_config(layer.get_config())
    assert (again.size, again.margin, again.name) == (24, 1.2, "g")


def test_accuracy_and_iou_curves_leave_out_the_no_digit_canvases():
    """A no-digit canvas has class and box weight 0 (training.with_negatives): the
    accuracy and IoU metrics must skip it as the losses do, not count it as wrong."""
    from locmnist.model import compile_model

    cfg = preset("quick", widths=(4, 8, 8, 8), crop_widths=(4, 8, 8), dense_units=8)
    model = compile_model(build_model(cfg), cfg, 1e-3)
    # The box head answers one fixed box (sigmoid of its bias) whatever the input.
    head = model.get_layer("bounding_box")
    box = np.array([0.2, 0.3, 0.6, 0.7], np.float32)
    head.set_weights([np.zeros_like(head.get_weights()[0]), np.log(box / (1 - box))])
    rng = np.random.default_rng(0)
    x = rng.random((8, 75, 75, 1), dtype=np.float32)
    guess = np.asarray(model(x)["classification"]).argmax(1)
    # Digits 0-3 labelled as the model's own guess and box (all right); 4-7 are "negatives"
    # whose all-zero class rows and placeholder boxes (IoU 0) would count as wrong answers.
    onehot = np.zeros((8, 10), np.float32)
    onehot[np.arange(4), guess[:4]] = 1
    boxes = np.array([box] * 4 + [[0.7, 0.8, 0.9, 0.95]] * 4, np.float32)
    y = {"classification": onehot, "bounding_box": boxes, "digit": np.r_[np.ones(4), np.zeros(4)][:, None]}
    mask = np.r_[np.ones(4), np.zeros(4)].astype(np.float32)
    w = {"classification": mask, "bounding_box": mask, "digit": np.ones(8, np.float32)}
    logs = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    assert logs["classification_accuracy"] == 1.0
    assert logs["bounding_box_iou"] == pytest.approx(1.0, abs=1e-4)
