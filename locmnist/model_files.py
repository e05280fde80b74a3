"""Loading model files safely: ours, users' uploads and the reference's format.

* only ``.keras`` (Keras safe mode: no deserialized code) and legacy ``.h5``
  (whose config is inspected *before* loading, refusing Lambda and unknown layers);
* a size limit;
* the input must be (75, 75, 1); there must be a softmax(10) and a box(4) output,
  named or in the reference's list order;
* the config saved beside a model (``config.json``) is returned with it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

MAX_MODEL_BYTES = 50 * 1024 * 1024


class InvalidModel(ValueError):
    """The file is not a usable locmnist model; the message says why."""


def resolve_model_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "model.keras"
    if not p.is_file():
        raise InvalidModel(f"no model file at {p}")
    if p.suffix.lower() not in (".keras", ".h5"):
        raise InvalidModel(f"{p.name}: only .keras (or legacy .h5) model files are accepted")
    if p.stat().st_size > MAX_MODEL_BYTES:
        raise InvalidModel(f"{p.name} is {p.stat().st_size / 2**20:.0f} MB; "
                           f"the limit is {MAX_MODEL_BYTES // 2**20} MB")
    return p


def load_model_file(path: str | os.PathLike):
    """(keras.Model, Config or None) from a model file or run directory."""
    import keras

    from locmnist import model as _registers_custom_objects  # noqa: F401
    from locmnist.config import Config

    p = resolve_model_path(path)
    if p.suffix.lower() == ".h5":
        _check_h5_config(p)
    try:
        model = keras.models.load_model(p, compile=False, safe_mode=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if "Lambda" in str(e) or "safe_mode" in str(e):
            msg = "it contains code (a Lambda layer), which is refused for safety"
        raise InvalidModel(f"{p.name} could not be loaded: {msg}") from None
    check_model(model, p.name)
    config = None
    cfg_path = p.with_name("config.json") if p.name == "model.keras" else p.with_suffix(".json")
    if cfg_path.is_file():
        try:
            config = Config.load(cfg_path)
        except Exception:
            config = None  # a config we cannot read does not block inference
    return model, config


def _check_h5_config(p: Path) -> None:
    """Legacy HDF5 stores Lambda layers as marshalled bytecode: inspect, then refuse."""
    import h5py

    try:
        with h5py.File(p, "r") as f:
            raw = f.attrs.get("model_config")
    except Exception as e:
        raise InvalidModel(f"{p.name} is not a readable HDF5 model ({e})") from None
    if raw is None:
        raise InvalidModel(f"{p.name} holds weights only, not a model")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    allowed = {"InputLayer", "Conv2D", "Dense", "AveragePooling2D", "MaxPooling2D", "Flatten",
               "Dropout", "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
               "Functional", "Model", "Sequential", "SeparableConv2D", "DepthwiseConv2D",
               "Add", "Concatenate", "Reshape", "ZeroPadding2D", "LeakyReLU", "Rescaling"}
    found = set()

    def walk(o):
        if isinstance(o, dict):
            if "class_name" in o and isinstance(o.get("config"), dict):
                found.add(o["class_name"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    try:
        walk(json.loads(raw))
    except ValueError:
        raise InvalidModel(f"{p.name} has an unreadable model config") from None
    bad = sorted(c for c in found if c not in allowed and not c.endswith("Initializer")
                 and c not in {"GlorotUniform", "Zeros", "Ones", "HeNormal", "HeUniform",
                               "GlorotNormal", "RandomNormal", "RandomUniform",
                               "TruncatedNormal", "L2", "L1", "L1L2", "DTypePolicy",
                               "Policy", "VarianceScaling", "Constant"})
    if bad:
        raise InvalidModel(f"{p.name} uses layers that are not allowed: {', '.join(bad)}"
                           + (" (Lambda layers contain code)" if "Lambda" in bad else ""))


def output_roles(model) -> tuple:
    """(classification key, box key): dict names, or list positions by output size."""
    outputs = model.outputs
    names = getattr(model, "output_names", None) or []
    shapes = [tuple(o.shape) for o in outputs]
    if isinstance(model.output, dict):
        keys = list(model.output.keys())
        sizes = {k: tuple(model.output[k].shape)[-1] for k in keys}
    else:
        keys = list(range(len(shapes)))
        sizes = {i: s[-1] for i, s in enumerate(shapes)}
    cls = [k for k in keys if sizes[k] == 10]
    box = [k for k in keys if sizes[k] == 4]
    if len(keys) != 2 or len(cls) != 1 or len(box) != 1:
        raise InvalidModel(f"expected two outputs, class probabilities (10) and a box (4); "
                           f"the model has outputs of shapes {shapes} {names}")
    return cls[0], box[0]


def check_model(model, name: str = "model") -> None:
    shapes = [tuple(i.shape) for i in model.inputs]
    if len(shapes) != 1 or tuple(shapes[0][1:]) != (75, 75, 1):
        raise InvalidModel(f"{name}: expected one input of shape (75, 75, 1); got {shapes}")
    output_roles(model)
