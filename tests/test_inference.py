"""``Predictor.load``: single images through the model's cached TFLite copy, with the
same outputs as TensorFlow; batches on TensorFlow."""
import numpy as np
import pytest

from tests.helpers import tiny_config


@pytest.fixture
def model_file(tmp_path, monkeypatch):
    from locmnist.model import build_model

    monkeypatch.setenv("LOCMNIST_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.keras"
    build_model(tiny_config()).save(path)
    return path


def test_single_images_use_a_cached_tflite_copy_with_the_same_outputs(model_file, tmp_path):
    from locmnist.inference import Predictor
    from locmnist.tflite_runtime import SMALL_BATCH

    p = Predictor.load(model_file)
    assert p._single is not None
    cached = list((tmp_path / "cache" / "tflite").glob("*.tflite"))
    assert len(cached) == 1
    canvas = np.random.default_rng(1).random((1, 75, 75, 1), dtype=np.float32)
    lite = p.predict_canvas(canvas)
    tf_out = p._forward(canvas)
    for got, want in zip(lite, (tf_out[p._keys[0]].numpy(), tf_out[p._keys[1]].numpy())):
        np.testing.assert_allclose(got, want, atol=1e-5)
    # A large batch stays on TensorFlow: row 0 is the same canvas.
    big = np.concatenate([canvas * k / SMALL_BATCH for k in range(SMALL_BATCH, -1, -1)])
    batch = p.predict_canvas(big)
    np.testing.assert_allclose(batch[0][:1], lite[0], atol=1e-5)
    # Small batches (a number's crops) run on TFLite, each size on an interpreter of its
    # own, alternating as a reader's numbers do: the same outputs as TensorFlow's batch.
    for n in (3, 2, 3, SMALL_BATCH, 2):
        small = p.predict_canvas(big[:n])
        for got, want in zip(small, batch):
            np.testing.assert_allclose(got, want[:n], atol=1e-5)
    assert sorted(p._single._small) == [2, 3, SMALL_BATCH]

    mtime = cached[0].stat().st_mtime_ns
    again = Predictor.load(model_file)  # from the cache: not converted again
    assert again._single is not None and cached[0].stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.predict_canvas(canvas)[0], lite[0])


def test_a_damaged_cache_entry_is_replaced(model_file, tmp_path):
    from locmnist.inference import Predictor

    Predictor.load(model_file)
    cached = next((tmp_path / "cache" / "tflite").glob("*.tflite"))
    cached.write_bytes(b"not a tflite model")
    p = Predictor.load(model_file)
    assert p._single is not None and cached.read_bytes()[4:8] == b"TFL3"  # converted again
    assert p.predict_canvas(np.zeros((1, 75, 75, 1), np.float32))[0].shape == (1, 10)


def test_batch_only_loading_makes_no_tflite_copy():
    """Evaluation at the end of training loads the new model without converting it
    (converting cost time and memory for single-image calls that never come)."""
    from locmnist.inference import Predictor

    assert Predictor.load(tflite=False)._single is None
    assert Predictor.load()._single is not None
