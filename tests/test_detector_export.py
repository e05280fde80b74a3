"""The detector exports to SavedModel and TFLite with the same maps, read by the same Reader."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from locmnist.export import export_model, max_difference
from locmnist.model_files import is_detector_file, load_detector_file
from locmnist.reader import Reader
from locmnist.scenes import scene_batch
from tests.helpers import tiny_detector_config


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_export_parity_and_reading(tiny_detector, tmp_path, mnist, fmt):
    assert is_detector_file(tiny_detector) and not is_detector_file("models/default.keras")
    model, cfg = load_detector_file(tiny_detector)
    out = export_model(model, fmt, tmp_path / ("sm" if fmt == "savedmodel" else "d.tflite"))
    scenes = scene_batch(mnist.x_test, mnist.y_test.astype(np.int64), tiny_detector_config(),
                         seed=1, batch_index=0, batch_size=6)
    canvases = np.stack([s.canvas for s in scenes])[..., None]       # (6, 64, 96, 1)
    assert max_difference(model, out, fmt, canvases) <= 1e-4
    assert max_difference(model, out, fmt, np.zeros((1, 50, 130, 1), np.float32)) <= 1e-4

    img = Image.new("L", (300, 120), 255)
    ImageDraw.Draw(img).line([(80, 20), (80, 100)], fill=0, width=10)
    ImageDraw.Draw(img).line([(150, 20), (210, 20), (170, 100)], fill=0, width=10)
    keras_reading = Reader(model, cfg).read(img)
    cfg.save(out.with_name(out.name.rsplit(".", 1)[0] + ".config.json"))  # as export does
    export_reader = Reader.load(out, classifier=None)   # the detector's own labels, as above
    assert export_reader.config == cfg
    exported = export_reader.read(img)
    assert exported.text == keras_reading.text
    for a, b in zip(exported.digits, keras_reading.digits):
        assert a.box == pytest.approx(b.box, abs=1e-2)
