"""A loaded Keras model's TFLite copy, converted once per model file and cached.

Both the single-digit ``Predictor`` and the number ``Reader`` run one canvas at a
time through a TFLite copy of their Keras model: on a 2-core CPU, TFLite's fused
XNNPACK kernels beat TensorFlow's graph executor for single inputs (on one thread, a
75x75 digit: ~0.75 against ~2.3 ms; the detector on a 96x240 number: ~4.4 against
~7.5 ms; ``tflite_runtime.THREADS`` sets how many they now use).
Converting takes a few seconds, so the copy is cached under
``~/.cache/locmnist/tflite``, keyed by the model file's SHA-256 and the TensorFlow
version. Each caller checks the copy's outputs against TensorFlow before using it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

TFLITE_CACHE_ENTRIES = 16  # every uploaded model gets an entry: keep the newest only


def _prune(folder: Path, keep: int) -> None:
    entries = sorted(folder.glob("*.tflite"), key=lambda f: f.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def cached_path(model_file: Path) -> Path:
    """Where the copy of ``model_file`` is cached (whether or not it exists yet)."""
    import tensorflow as tf

    from locmnist.data import cache_dir

    digest = hashlib.sha256(Path(model_file).read_bytes()).hexdigest()[:40]
    return cache_dir() / "tflite" / f"{digest}-tf{tf.__version__}.tflite"


def tflite_copy(model, model_file: Path, make):
    """``make(content: bytes, source: str)`` on the cached copy of ``model_file``, or on
    ``model`` converted now (then cached). A cache entry ``make`` refuses (damaged) is
    converted again. Raises whatever converting or ``make`` raises on a fresh copy."""
    from locmnist.files import atomic_write
    from locmnist.serving import tflite_bytes

    cached = cached_path(model_file)
    if cached.is_file():
        try:
            return make(cached.read_bytes(), str(cached))
        except Exception:  # a damaged entry: convert again below
            cached.unlink(missing_ok=True)
    data = tflite_bytes(model)
    runtime = make(data, str(cached))
    atomic_write(cached, lambda tmp: Path(tmp).write_bytes(data), suffix=".tflite")
    _prune(cached.parent, keep=TFLITE_CACHE_ENTRIES)
    return runtime
