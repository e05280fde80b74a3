"""What a model file's JSON config may contain, checked before Keras builds anything.

A ``.keras`` or ``.h5`` file from a stranger is a JSON description that Keras turns
into Python objects and weight arrays. Everything that could run code, change the
process or allocate without bound is decided here, from the JSON alone:

* every ``{"class_name", "module", "registered_name"}`` triple must be one we list,
  checked together: Keras resolves ``registered_name`` first, so a ``Dense`` whose
  registered name is someone else's class is that class;
* function references (``"class_name": "function"``) only name activations, our
  own registered losses/metrics, and come from their own modules: never
  ``keras.config.set_epsilon`` or ``os.system``;
* size-like fields (units, filters, kernel sizes, pool sizes, padding, reshape
  targets, our crop size) are bounded, the layer count is bounded, and the total
  parameter count computed from the layers' build shapes is bounded. A ``.keras``
  file builds each layer from its ``build_config`` (a call on a differently shaped
  tensor then fails symbolically, before any allocation), so a weighted layer
  without one is refused.
"""
from __future__ import annotations

import math

MAX_LAYERS = 1000
MAX_PARAMS = 20_000_000          # 80 MB of float32; ours has 1.05M, the reference 0.43M
MAX_ACTIVATION = 4_000_000       # elements per sample entering any one layer
# field -> the largest value any one of its numbers may take
FIELD_LIMITS = {"units": 8192, "filters": 2048, "kernel_size": 32, "pool_size": 75,
                "strides": 75, "dilation_rate": 32, "depth_multiplier": 32, "groups": 2048,
                "size": 256, "cropping": 256}
ZERO_PADDING_LIMIT = 64          # ZeroPadding2D grows the activations it pads

LAYERS = {
    "InputLayer", "Conv2D", "Dense", "AveragePooling2D", "MaxPooling2D", "Flatten",
    "Dropout", "BatchNormalization", "ReLU", "Activation", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "SeparableConv2D", "DepthwiseConv2D", "Add", "Concatenate",
    "Reshape", "ZeroPadding2D", "LeakyReLU", "Rescaling", "SpatialDropout2D",
    "LayerNormalization", "UpSampling2D",
}
MODELS = {"Functional", "Model", "Sequential"}
HELPERS = {  # class -> the modules Keras writes for it
    **{c: {"keras.initializers"} for c in (
        "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
        "LecunUniform", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform",
        "TruncatedNormal", "VarianceScaling", "Orthogonal")},
    **{c: {"keras.regularizers"} for c in ("L1", "L2", "L1L2")},
    **{c: {"keras", "keras.dtype_policies", "keras.mixed_precision"}
       for c in ("DTypePolicy", "Policy", "FloatDTypePolicy")},
}
MODEL_MODULES = {"keras", "keras.models", "keras.src.models.functional",
                 "keras.src.models.model", "keras.src.models.sequential"}
# Our own classes and functions, by (module, class_name) -> registered_name.
OURS = {("locmnist.model", "BoxCrop"): "locmnist>BoxCrop",
        (None, "locmnist>BoxCrop"): None}                      # legacy .h5 spelling
ACTIVATIONS = {
    "celu", "elu", "exponential", "gelu", "glu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "log_softmax", "mish",
    "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax", "softplus",
    "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh",
    "tanh_shrink", "threshold"}
# Function references: module -> names. Our losses/metrics appear only in a
# compile_config, which is never deserialized (models load with compile=False).
FUNCTIONS = {"keras.activations": ACTIVATIONS, "builtins": ACTIVATIONS,
             "keras.src.activations.activations": ACTIVATIONS,
             "locmnist.model": {"iou", "giou_l1_loss"}}
WEIGHTED = {"Dense", "Conv2D", "SeparableConv2D", "DepthwiseConv2D", "BatchNormalization",
            "LayerNormalization"}


class ConfigRefused(ValueError):
    """The config asks for something not allowed; the message says what."""


def check_config(config: dict, *, needs_build_shapes: bool, any_size: bool = False) -> int:
    """Raise ConfigRefused unless ``config`` is within the lists and limits; return params.

    ``needs_build_shapes``: a ``.keras`` config, whose weighted layers must carry the
    input shape they are built with. ``any_size``: a fully-convolutional model (the
    detector) whose spatial dimensions are unknown (None); its channels are still
    checked, and its caller bounds the images it is given (``locmnist.reader``).
    """
    refs, layers = [], []
    _collect({k: v for k, v in config.items() if k != "compile_config"}, refs, layers)
    if "Lambda" in {str(r.get("class_name")) for r in refs}:
        raise ConfigRefused("contains a Lambda layer, i.e. Python code; it is refused for safety")
    bad = sorted({_describe(r) for r in refs if not _allowed(r)})
    if bad:
        raise ConfigRefused(f"uses layers, functions or modules that are not allowed: "
                            f"{', '.join(bad)[:300]}")
    if len(layers) > MAX_LAYERS:
        raise ConfigRefused(f"has {len(layers):,} layers; the limit is {MAX_LAYERS:,}")
    params = 0
    for layer in layers:
        params += _layer_params(layer, needs_build_shapes, any_size)
        if params > MAX_PARAMS:
            raise ConfigRefused(f"has more than {MAX_PARAMS:,} parameters; "
                                f"that is more than a digit model needs")
    return params


def _collect(o, refs: list, layers: list) -> None:
    """Every object reference in ``o``; the layer ones (with a dict config) also in ``layers``."""
    if isinstance(o, dict):
        if "class_name" in o:
            refs.append(o)
            name = o.get("class_name")
            if isinstance(o.get("config"), dict) and (name in LAYERS or _is_ours(o)):
                layers.append(o)
        for v in o.values():
            _collect(v, refs, layers)
    elif isinstance(o, list):
        for v in o:
            _collect(v, refs, layers)


def _is_ours(ref: dict) -> bool:
    return (ref.get("module"), ref.get("class_name")) in OURS


def _describe(ref: dict) -> str:
    parts = [str(ref.get("module") or ""), str(ref.get("class_name"))]
    if ref.get("class_name") == "function":
        parts[1] = str(ref.get("config"))
    return ".".join(p for p in parts if p)


def _allowed(ref: dict) -> bool:
    """module, class_name and registered_name together name something on our lists."""
    module, name, registered = ref.get("module"), ref.get("class_name"), ref.get("registered_name")
    if not isinstance(name, str) or not isinstance(module, (str, type(None))):
        return False
    if name == "__keras_tensor__":
        return module is None and registered is None
    if name == "function":
        fn = ref.get("config")
        return (isinstance(fn, str) and fn in FUNCTIONS.get(module, ())
                and registered in (None, fn, f"locmnist>{fn}"))
    if (module, name) in OURS:
        return registered in (None, OURS[(module, name)])
    if not isinstance(ref.get("config"), (dict, type(None))) or registered not in (None, name):
        return False
    if name in LAYERS:
        return module in ("keras.layers", None)
    if name in MODELS:
        return module in MODEL_MODULES or module is None
    return name in HELPERS and (module in HELPERS[name] or module is None)


def _ints(value, field: str) -> list[int]:
    """The numbers of a size-like field (an int or nested lists of ints)."""
    if isinstance(value, (list, tuple)):
        return [i for v in value for i in _ints(v, field)]
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigRefused(f"has a {field} of {str(value)[:40]!r}, not a number")
    if value != int(value) or value < 0:
        raise ConfigRefused(f"has a {field} of {value}, not a size")
    return [int(value)]


def _shape(value, what: str, any_size: bool = False) -> list[int]:
    """A build shape like [null, 75, 75, 1], batch dimension dropped.

    ``any_size``: spatial dimensions may be None (only the channels must be known).
    """
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigRefused(f"has an unreadable {what}")
    if any_size and len(value) > 2:
        value = [None, *(1 if v is None else v for v in value[1:-1]), value[-1]]
    dims = _ints(list(value[1:]), what)
    if len(dims) != len(value) - 1:  # a None inside: unknown size
        raise ConfigRefused(f"has an unknown dimension in its {what}")
    if math.prod(dims) > MAX_ACTIVATION:
        raise ConfigRefused(f"has a layer input of {math.prod(dims):,} values per image; "
                            f"the limit is {MAX_ACTIVATION:,}")
    return dims


def _layer_params(layer: dict, needs_build_shapes: bool, any_size: bool = False) -> int:
    """Check one layer's size-like fields; its parameter count from its build shape."""
    name, cfg = layer["class_name"], layer["config"]
    for field, limit in FIELD_LIMITS.items():
        if field in cfg:
            numbers = _ints(cfg[field], field)
            if any(n > limit for n in numbers):
                raise ConfigRefused(f"has a {name} layer with {field} {max(numbers):,}; "
                                    f"the limit is {limit:,}")
    if name == "ZeroPadding2D" and any(n > ZERO_PADDING_LIMIT
                                       for n in _ints(cfg.get("padding"), "padding")):
        raise ConfigRefused(f"has a ZeroPadding2D wider than {ZERO_PADDING_LIMIT}")
    for key in ("target_shape", "batch_shape", "batch_input_shape"):
        if key in cfg:
            _shape([None, *cfg[key]] if key == "target_shape" else cfg[key], key, any_size)
    if name not in WEIGHTED:
        return 0
    shape = (layer.get("build_config") or {}).get("input_shape")
    if shape is None:
        shape = _inbound_shape(layer)
        if shape is None or needs_build_shapes:
            raise ConfigRefused(f"has a {name} layer without the input shape it is built "
                                f"with (a .keras file saved by Keras has one)")
    dims = _shape(shape, "layer input shape", any_size)
    channels = dims[-1] if dims else 1
    units = int(cfg.get("units") or cfg.get("filters") or 0)
    kernel = math.prod(_ints(cfg.get("kernel_size", 1), "kernel_size") or [1])
    groups = max(1, int(cfg.get("groups") or 1))
    dm = int(cfg.get("depth_multiplier") or 1)
    bias = units if cfg.get("use_bias", True) else 0
    if name == "Dense":
        return channels * units + bias
    if name == "Conv2D":
        return kernel * (channels // groups) * units + bias
    if name == "SeparableConv2D":
        return kernel * channels * dm + channels * dm * units + bias
    if name == "DepthwiseConv2D":
        return kernel * channels * dm + (channels * dm if cfg.get("use_bias", True) else 0)
    affine = bool(cfg.get("center", True)) + bool(cfg.get("scale", True))
    return (affine + (2 if name == "BatchNormalization" else 0)) * channels


def _inbound_shape(layer: dict):
    """The shape a legacy (.h5) config says a layer's first input has, or None."""
    try:
        return layer["inbound_nodes"][0]["args"][0]["config"]["shape"]
    except (KeyError, IndexError, TypeError):
        return None
