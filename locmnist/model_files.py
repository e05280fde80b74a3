"""Loading model files safely: ours, users' uploads and the reference's format.

* only ``.keras`` and legacy ``.h5``; nothing is ever unpickled;
* the file's model config is read as JSON and checked *before* Keras builds
  anything (``locmnist.model_checks``): only listed Keras layers, initializers and
  activations and our own ``BoxCrop`` (no ``Lambda``, which carries marshalled
  Python bytecode, no other custom classes or functions, no foreign modules), and
  bounded sizes and parameter count; ``.keras`` files are then loaded in Keras
  safe mode as a second line;
* ``trial_load`` builds a stranger's file in a child process under a memory
  limit first, so whatever the static checks missed cannot grow the server;
* size limits on the file and, for ``.keras`` (a zip), on what it unpacks to;
* the input must be (75, 75, 1); there must be a softmax(10) and a box(4) output,
  named or in the reference's list order, and optionally a ``digit`` (1) output;
* the config saved beside a model (its sidecar, see ``locmnist.runs``) is returned with it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from locmnist.config import INPUT_SHAPE
from locmnist.model_checks import ConfigRefused, check_config
from locmnist.runs import model_file, sidecar

MAX_MODEL_BYTES = 50 * 1024 * 1024
MAX_UNPACKED_BYTES = 4 * MAX_MODEL_BYTES   # a zip bomb posing as .keras stops here

DIGIT_OUTPUT = "digit"   # the optional third output (see locmnist.model)


class InvalidModel(ValueError):
    """The file is not a usable locmnist model; the message says why."""


def resolve_model_path(path: str | os.PathLike) -> Path:
    """The model file for ``path`` (a file or a run directory), checked for type and size."""
    p = model_file(path)
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
    check_layers(config, p.name, keras_format=p.suffix.lower() == ".keras")
    try:
        model = keras.models.load_model(p, compile=False, safe_mode=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InvalidModel(f"{p.name} could not be loaded: {msg}") from None
    check_model(model, p.name)
    config = None
    cfg_path = sidecar(p, "config")
    if cfg_path.is_file():
        try:
            config = Config.load(cfg_path)
        except Exception:
            config = None  # a config we cannot read does not block inference
    return model, config


def is_detector_file(path: str | os.PathLike) -> bool:
    """Whether a model file (or run directory) holds a detector: its sidecar config says
    so, or its outputs are the detector's. Reads JSON only; never raises."""
    from locmnist.detector import OUTPUT_NAMES
    from locmnist.detector_config import is_detector_config

    try:
        p = resolve_model_path(path)
        cfg = sidecar(p, "config")
        if cfg.is_file() and is_detector_config(json.loads(cfg.read_text())):
            return True
        if p.suffix.lower() != ".keras":
            return False
        outputs = _keras_zip_model_config(p).get("config", {}).get("output_layers")
        return isinstance(outputs, dict) and set(outputs) == set(OUTPUT_NAMES)
    except (InvalidModel, OSError, ValueError, AttributeError):
        return False


def load_detector_file(path: str | os.PathLike):
    """(keras.Model, DetectorConfig or None) for a detector file or run directory.

    The same checks as ``load_model_file`` (allow-listed layers, sizes, safe mode);
    the model must take (H, W, 1) images of any size and give the detector's outputs.
    """
    import keras

    from locmnist.detector import OUTPUT_NAMES, is_detector
    from locmnist.detector_config import DetectorConfig, is_detector_config

    p = resolve_model_path(path)
    if p.suffix.lower() != ".keras":
        raise InvalidModel(f"{p.name}: a detector is a .keras file")
    check_layers(_keras_zip_model_config(p), p.name, keras_format=True, any_size=True)
    try:
        model = keras.models.load_model(p, compile=False, safe_mode=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise InvalidModel(f"{p.name} could not be loaded: {msg}") from None
    shapes = [tuple(i.shape) for i in model.inputs]
    if not is_detector(model) or len(shapes) != 1 or shapes[0][-1] != 1:
        raise InvalidModel(f"{p.name} is not a digit detector: expected one (H, W, 1) input "
                           f"and outputs {', '.join(OUTPUT_NAMES)}")
    cfg_path = sidecar(p, "config")
    config = None
    if cfg_path.is_file():
        try:
            d = json.loads(cfg_path.read_text())
            config = DetectorConfig.from_dict(d) if is_detector_config(d) else None
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


def check_keras_bytes(data: bytes, name: str) -> None:
    """The static checks of ``load_model_file`` on an upload still in memory, before it is saved."""
    import io

    if len(data) > MAX_MODEL_BYTES:
        raise InvalidModel(f"{name} is {len(data) / 2**20:.0f} MB; "
                           f"the limit is {MAX_MODEL_BYTES // 2**20} MB")
    check_layers(_keras_zip_model_config(io.BytesIO(data), name), name, keras_format=True)


def _keras_zip_model_config(p, name: str | None = None) -> dict:
    """The config.json inside a .keras zip (a path or file object), after checking what it unpacks to."""
    name = name or Path(p).name
    try:
        with zipfile.ZipFile(p) as z:
            unpacked = sum(i.file_size for i in z.infolist())
            if unpacked > MAX_UNPACKED_BYTES:
                raise InvalidModel(f"{name} unpacks to {unpacked / 2**20:.0f} MB; "
                                   f"the limit is {MAX_UNPACKED_BYTES // 2**20} MB")
            if "config.json" not in z.namelist():
                raise InvalidModel(f"{name} is a zip file but not a Keras model "
                                   f"(no config.json)")
            info = z.getinfo("config.json")
            if info.file_size > 10 * 2**20:
                raise InvalidModel(f"{name} has an implausibly large model config")
            raw = z.read("config.json")
    except (zipfile.BadZipFile, OSError, EOFError):
        raise InvalidModel(f"{name} is not a .keras model file (not a valid zip)") from None
    return _parse_json(raw, name)


def _parse_json(raw, name: str) -> dict:
    try:
        config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidModel(f"{name} has an unreadable model config") from None
    if not isinstance(config, dict):
        raise InvalidModel(f"{name} has an unreadable model config")
    return config


def check_layers(config: dict, name: str = "model", *, keras_format: bool = False,
                 any_size: bool = False) -> None:
    """Refuse anything outside the allow-lists or limits (see ``locmnist.model_checks``)."""
    try:
        check_config(config, needs_build_shapes=keras_format, any_size=any_size)
    except ConfigRefused as e:
        raise InvalidModel(f"{name} {e}") from None


TRIAL_MEMORY_BYTES = 3 * 2**30   # address space: TensorFlow alone reserves ~2 GB of it
TRIAL_TIMEOUT_S = 120.0


def trial_load(path: str | os.PathLike, memory_bytes: int = TRIAL_MEMORY_BYTES,
               timeout_s: float = TRIAL_TIMEOUT_S) -> None:
    """Load ``path`` in a child process capped at ``memory_bytes``; raise InvalidModel if that fails.

    For files from strangers, before the server loads them itself: a model that
    needs more memory or time than allowed fails in the child, never in the server.
    """
    p = resolve_model_path(path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run([sys.executable, "-m", "locmnist.model_files", str(p),
                               str(int(memory_bytes))], env=env, capture_output=True,
                              text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InvalidModel(f"{p.name} took more than {timeout_s:.0f} s to load") from None
    if done.returncode == 0:
        return
    lines = [ln for ln in done.stdout.strip().splitlines() if ln.startswith("refused: ")]
    if lines:
        raise InvalidModel(lines[-1].removeprefix("refused: "))
    raise InvalidModel(f"{p.name} could not be loaded within "
                       f"{memory_bytes / 2**30:.1f} GB of memory")


def _trial_main(argv: list[str]) -> int:
    """The child of ``trial_load``: cap the address space, then load and check."""
    import resource

    limit = int(argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        load_model_file(argv[0])
    except InvalidModel as e:
        print(f"refused: {e}", flush=True)
        return 2
    return 0


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
    extra = [k for k in keys if k == DIGIT_OUTPUT and sizes[k] == 1]  # "is it a digit"
    if len(keys) - len(extra) != 2 or len(cls) != 1 or len(box) != 1 or ranks != {2}:
        raise InvalidModel(f"expected two outputs, class probabilities (10) and a box (4) "
                           f"(and optionally '{DIGIT_OUTPUT}' (1)); "
                           f"the model has outputs of shapes {shapes} {names}")
    return cls[0], box[0]


def digit_key(model) -> str | None:
    """The key of the ``digit`` output (is there a digit at all), or None without one."""
    out = model.output
    if isinstance(out, dict) and DIGIT_OUTPUT in out and tuple(out[DIGIT_OUTPUT].shape)[-1] == 1:
        return DIGIT_OUTPUT
    return None


def check_model(model, name: str = "model") -> None:
    """Raise InvalidModel unless ``model`` takes (75, 75, 1) and gives (10) and (4)."""
    shapes = [tuple(i.shape) for i in model.inputs]
    if len(shapes) != 1 or tuple(shapes[0][1:]) != INPUT_SHAPE:
        raise InvalidModel(f"{name}: expected one input of shape {INPUT_SHAPE}; got {shapes}")
    output_roles(model)


if __name__ == "__main__":
    sys.exit(_trial_main(sys.argv[1:]))
