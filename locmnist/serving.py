"""The serving signature every export keeps, and the conversion to TFLite.

Shared by ``locmnist.export`` (which writes the files) and ``locmnist.inference``
(whose TFLite fast path converts a loaded model in memory); the contract is in
``locmnist.export``'s docstring.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from locmnist.config import INPUT_SHAPE


def serving_function(model):
    """A tf.function with the fixed serving signature, mapping outputs to our names."""
    import tensorflow as tf

    from locmnist.detector import OUTPUT_NAMES, is_detector
    from locmnist.model_files import digit_key, output_roles

    if is_detector(model):
        @tf.function(input_signature=[tf.TensorSpec((None, None, None, 1), tf.float32,
                                                    name="image")])
        def serve_maps(image):
            out = model(image, training=False)
            return {k: out[k] for k in OUTPUT_NAMES}

        return serve_maps
    cls_key, box_key = output_roles(model)
    digit = digit_key(model)

    @tf.function(input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name="image")])
    def serve(image):
        out = model(image, training=False)
        named = {"classification": out[cls_key], "bounding_box": out[box_key]}
        if digit is not None:  # "is there a digit at all" (locmnist.model)
            named["digit"] = out[digit]
        return named

    return serve


def write_savedmodel(model, directory: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint is also published as "serving_default" for TF Serving.
    archive.add_endpoint("serve", serving_function(model))
    archive.write_out(str(directory), verbose=False)


def tflite_bytes(model) -> bytes:
    """The model converted to TFLite through a temporary SavedModel."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="locmnist-export-") as tmp:
        write_savedmodel(model, Path(tmp) / "savedmodel")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "savedmodel"),
                                                             signature_keys=["serving_default"])
        return converter.convert()
