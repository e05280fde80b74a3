"""Crafted model files from strangers: refused from their JSON config, before Keras
builds anything (issue 12, findings 2 and 3), and by a memory-capped trial build."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import pytest
from keras import layers

from locmnist.config import preset
from locmnist.model import build_model
from locmnist.model_checks import MAX_LAYERS, MAX_PARAMS, ConfigRefused, check_config
from locmnist.model_files import InvalidModel, load_model_file, trial_load
from tests.corpus import craft, layer


def small_model() -> keras.Model:
    inputs = keras.Input((75, 75, 1), name="image")
    x = layers.Conv2D(4, 3, strides=4, name="conv")(inputs)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model(inputs, {"classification": layers.Dense(10, activation="softmax",
                                                               name="classification")(x),
                                "bounding_box": layers.Dense(4, activation="sigmoid",
                                                             name="bounding_box")(x)})


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.keras"
    small_model().save(path)
    return path


@pytest.fixture
def keras_never_builds(monkeypatch):
    """Fail the test if Keras is asked to build the file: the refusal must come first."""
    def boom(*a, **k):
        raise AssertionError("keras.models.load_model was called on a crafted file")
    monkeypatch.setattr(keras.models, "load_model", boom)


def test_a_good_file_and_our_models_pass(good, tmp_path):
    load_model_file(good)
    for arch in ("default", "seed"):
        model = build_model(preset("default", arch=arch))
        model.save(tmp_path / f"{arch}.keras")
        with zipfile.ZipFile(tmp_path / f"{arch}.keras") as z:
            config = json.loads(z.read("config.json"))
        # the count from the JSON alone is exactly what Keras builds
        assert check_config(config, needs_build_shapes=True) == model.count_params()


def test_huge_dense_is_refused_before_building(good, tmp_path, keras_never_builds):
    """The reproduced finding: a box head of 200,000 units (4.5 GB of weights)."""
    def edit(cfg):
        hidden = layer(cfg, "hidden")
        hidden["config"]["units"] = 200_000
    with pytest.raises(InvalidModel, match="units 200,000"):
        load_model_file(craft(good, tmp_path / "huge.keras", edit))


def test_parameter_total_is_bounded(good, tmp_path, keras_never_builds):
    """Every field within its own limit, but too many parameters in total."""
    def edit(cfg):
        hidden = layer(cfg, "hidden")
        hidden["config"]["units"] = 8192
        hidden["build_config"]["input_shape"] = [None, 4000]
    with pytest.raises(InvalidModel, match=f"more than {MAX_PARAMS:,} parameters"):
        load_model_file(craft(good, tmp_path / "wide.keras", edit))


def test_fifty_thousand_layers_are_refused(good, tmp_path, keras_never_builds):
    def edit(cfg):
        cfg["config"]["layers"] += [{"module": "keras.layers", "class_name": "Flatten",
                                     "config": {"name": f"f{i}"}} for i in range(50_000)]
    with pytest.raises(InvalidModel, match=f"the limit is {MAX_LAYERS:,}"):
        load_model_file(craft(good, tmp_path / "deep.keras", edit))


@pytest.mark.parametrize("field,value,match", [
    ("filters", 100_000, "filters 100,000"), ("kernel_size", [500, 500], "kernel_size 500"),
    ("units", "A", "not a number"), ("units", -3, "not a size"), ("units", 1e300, "units")])
def test_size_fields_are_bounded_and_typed(good, tmp_path, keras_never_builds, field, value,
                                           match):
    name = "conv" if field in ("filters", "kernel_size") else "hidden"

    def edit(cfg):
        layer(cfg, name)["config"][field] = value
    with pytest.raises(InvalidModel, match=match):
        load_model_file(craft(good, tmp_path / "bad.keras", edit))


def test_huge_crop_and_padding_are_refused():
    crop = {"module": "locmnist.model", "class_name": "BoxCrop", "registered_name":
            "locmnist>BoxCrop", "config": {"name": "crop", "size": 100_000}}
    pad = {"module": "keras.layers", "class_name": "ZeroPadding2D", "registered_name": None,
           "config": {"name": "pad", "padding": [[50_000, 50_000], [0, 0]]}}
    for bad, match in ((crop, "size 100,000"), (pad, "ZeroPadding2D")):
        with pytest.raises(ConfigRefused, match=match):
            check_config({"config": {"layers": [bad]}}, needs_build_shapes=True)


def test_weighted_layer_without_build_shape_is_refused(good, tmp_path, keras_never_builds):
    with pytest.raises(InvalidModel, match="without the input shape"):
        load_model_file(craft(good, tmp_path / "nb.keras",
                              lambda cfg: layer(cfg, "hidden").pop("build_config")))


def test_set_epsilon_activation_is_refused_and_epsilon_unchanged(good, tmp_path):
    """The reproduced finding: a Dense activation that changed keras.config.epsilon()."""
    before = keras.config.epsilon()

    def edit(cfg):
        layer(cfg, "hidden")["config"]["activation"] = {
            "module": "keras.config", "class_name": "function", "config": "set_epsilon",
            "registered_name": None}
    with pytest.raises(InvalidModel, match="keras.config.set_epsilon"):
        load_model_file(craft(good, tmp_path / "eps.keras", edit))
    assert keras.config.epsilon() == before


@pytest.mark.parametrize("ref", [
    # a listed class whose registered name is someone else's: Keras would use that one
    {"module": "keras.layers", "class_name": "Dense", "registered_name": "evil>Thing",
     "config": {"name": "d", "units": 4}},
    # our layer's name from a foreign module, or ours under an alias
    {"module": "evil.layers", "class_name": "BoxCrop", "registered_name": None, "config": {}},
    {"module": "locmnist.model", "class_name": "BoxCrop", "registered_name": "evil>BoxCrop",
     "config": {}},
    # a function that is not an activation, from keras.activations or a keras module
    {"module": "keras.activations", "class_name": "function", "config": "deserialize",
     "registered_name": None},
    {"module": "keras.utils", "class_name": "function", "config": "get_file",
     "registered_name": None},
    # a helper class from the wrong module
    {"module": "keras.layers", "class_name": "GlorotUniform", "registered_name": None,
     "config": {}},
])
def test_module_class_and_registered_name_are_checked_together(ref):
    with pytest.raises(ConfigRefused, match="not allowed"):
        check_config({"config": {"layers": [], "x": ref}}, needs_build_shapes=True)


def test_activations_and_our_functions_are_allowed():
    for module, fn in (("keras.activations", "relu"), ("builtins", "softmax"),
                       ("locmnist.model", "iou")):
        check_config({"x": {"module": module, "class_name": "function", "config": fn,
                            "registered_name": None}}, needs_build_shapes=True)


def test_trial_load_refuses_what_exceeds_its_memory_cap(good, tmp_path):
    """The child-process build: a file too big for the cap fails there, not here."""
    trial_load(good)  # a normal model loads within the default cap
    with pytest.raises(InvalidModel, match="memory"):
        trial_load(good, memory_bytes=256 * 2**20)  # too little even for TensorFlow
