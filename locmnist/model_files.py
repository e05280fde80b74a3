"""Loading model files safely: ours, users' uploads and the reference's format.

* only ``.keras`` and legacy ``.h5``; nothing is ever unpickled;
* the file's model config is read as JSON and checked *before* Keras builds
  anything: only plain Keras layers from an allow-list and our own ``BoxCrop``
  (no ``Lambda``, which carries marshalled Python bytecode, no other custom
  classes, no foreign modules);
  ``.keras`` files are then loaded in Keras safe mode as a second line;
* size limits on the file and, for ``.keras`` (a zip), on what it unpacks to;
* the input must be (75, 75, 1); there must be a softmax(10) and a box(4) output,
  named or in the reference's list order;
* the config saved beside a model (``config.json``) is returned with it.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

MAX_MODEL_BYTES = 50 * 1024 * 1024
MAX_UNPACKED_BYTES = 4 * MAX_MODEL_BYTES   # a zip bomb posing as .keras stops here

ALLOWED_LAYERS = {
    "InputLayer", "Conv2D", "Dense", "AveragePooling2D", "MaxPooling2D", "Flatten",
    "Dropout", "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Functional", "Model", "Sequential", "SeparableConv2D",
    "DepthwiseConv2D", "Add", "Concatenate", "Reshape", "ZeroPadding2D", "LeakyReLU",
    "Rescaling", "SpatialDropout2D", "LayerNormalization",
}
# Our own layers, by (module, class): plain math with a get_config, nothing else.
# Keras resolves both spellings to the class we registered, never to anything else.
OUR_LAYERS = {("locmnist.model", "BoxCrop"),     # .keras
              (None, "locmnist>BoxCrop")}        # legacy .h5
# Non-layer objects that appear inside layer configs.
ALLOWED_HELPERS = {
    "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform",
    "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "Orthogonal", "L1", "L2", "L1L2", "DTypePolicy", "Policy",
    "FloatDTypePolicy", "__keras_tensor__",
}


class InvalidModel(ValueError):
    """The file is not a usable locmnist model; the message says why."""


def resolve_model_path(path: str | os.PathLike) -> Path:
    """The model file for ``path`` (a file or a run directory), checked for type and size."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.keras"
    if not p.is_file():
        raise InvalidModel(f"no model file at {p}")
    if p.suffix.lower() not in (".keras", ".h5"):
        raise InvalidModel(f"{p.name}: only .keras (or legacy .h5) model files are accepted")
    size = p.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise InvalidModel(f"{p.name} is {size / 2**20:.0f} MB; "
                           f"the limit is {MAX_MODEL_BYTES // 2**20} MB")
    if size == 0:
        raise InvalidModel(f"{p.name} is empty")
    return p


def load_model_file(path: str | os.PathLike):
    """(keras.Model, Config or None) from a model file or run directory."""
    import keras

    from locmnist import model as _registers_custom_objects  # noqa: F401
    from locmnist.config import Config

    p = resolve_model_path(path)
    if p.suffix.lower() == ".h5":
        config = _h5_model_config(p)
    else:
        config = _keras_zip_model_config(p)
    check_layers(config, p.name)
    try:
        model = keras.models.load_model(p, compile=False, safe_mode=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InvalidModel(f"{p.name} could not be loaded: {msg}") from None
    check_model(model, p.name)
    config = None
    # A run directory has model.keras + config.json; a shipped model x.keras has x.config.json.
    cfg_path = (p.with_name("config.json") if p.name == "model.keras"
                else p.with_name(p.stem + ".config.json"))
    if cfg_path.is_file():
        try:
            config = Config.load(cfg_path)
        except Exception:
            config = None  # a config we cannot read does not block inference
    return model, config


def _h5_model_config(p: Path) -> dict:
    """The JSON model config stored in a legacy HDF5 file's attributes."""
    import h5py

    try:
        with h5py.File(p, "r") as f:
            raw = f.attrs.get("model_config")
    except Exception as e:
        raise InvalidModel(f"{p.name} is not a readable HDF5 model ({type(e).__name__})") from None
    if raw is None:
        raise InvalidModel(f"{p.name} holds weights only, not a model")
    return _parse_json(raw, p.name)


def _keras_zip_model_config(p: Path) -> dict:
    """The config.json inside a .keras zip, after checking what the zip unpacks to."""
    try:
        with zipfile.ZipFile(p) as z:
            unpacked = sum(i.file_size for i in z.infolist())
            if unpacked > MAX_UNPACKED_BYTES:
                raise InvalidModel(f"{p.name} unpacks to {unpacked / 2**20:.0f} MB; "
                                   f"the limit is {MAX_UNPACKED_BYTES // 2**20} MB")
            if "config.json" not in z.namelist():
                raise InvalidModel(f"{p.name} is a zip file but not a Keras model "
                                   f"(no config.json)")
            info = z.getinfo("config.json")
            if info.file_size > 10 * 2**20:
                raise InvalidModel(f"{p.name} has an implausibly large model config")
            raw = z.read("config.json")
    except (zipfile.BadZipFile, OSError, EOFError):
        raise InvalidModel(f"{p.name} is not a .keras model file (not a valid zip)") from None
    return _parse_json(raw, p.name)


def _parse_json(raw, name: str) -> dict:
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidModel(f"{name} has an unreadable model config") from None
    if not isinstance(config, dict):
        raise InvalidModel(f"{name} has an unreadable model config")
    return config


def check_layers(config: dict, name: str = "model") -> None:
    """Refuse any class outside the allow-lists, or from a module outside Keras."""
    found, modules = set(), set()

    def walk(o):
        if isinstance(o, dict):
            module = o.get("module")  # e.g. a function reference: {"module": "os", ...}
            # Our layers pass by module and name together, never by name alone.
            if "class_name" in o and (module, o["class_name"]) not in OUR_LAYERS:
                if isinstance(o.get("config"), (dict, type(None))):
                    found.add(str(o["class_name"]))
                if module is not None and not str(module).startswith("keras"):
                    modules.add(str(module))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    # The training setup (optimizer, losses) is not loaded: compile=False.
    walk({k: v for k, v in config.items() if k != "compile_config"})
    bad = sorted(c for c in found if c not in ALLOWED_LAYERS | ALLOWED_HELPERS)
    if "Lambda" in bad:
        raise InvalidModel(f"{name} contains a Lambda layer, i.e. Python code; "
                           f"it is refused for safety")
    if bad or modules:
        what = ", ".join(bad + sorted(modules))
        raise InvalidModel(f"{name} uses layers or modules that are not allowed: {what[:300]}")


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
    ranks = {len(s) for s in shapes}
    cls = [k for k in keys if sizes[k] == 10]
    box = [k for k in keys if sizes[k] == 4]
    if len(keys) != 2 or len(cls) != 1 or len(box) != 1 or ranks != {2}:
        raise InvalidModel(f"expected two outputs, class probabilities (10) and a box (4); "
                           f"the model has outputs of shapes {shapes} {names}")
    return cls[0], box[0]


def check_model(model, name: str = "model") -> None:
    """Raise InvalidModel unless ``model`` takes (75, 75, 1) and gives (10) and (4)."""
    shapes = [tuple(i.shape) for i in model.inputs]
    if len(shapes) != 1 or tuple(shapes[0][1:]) != (75, 75, 1):
        raise InvalidModel(f"{name}: expected one input of shape (75, 75, 1); got {shapes}")
    output_roles(model)
