"""``python -m locmnist export``: a model as a SavedModel, a TFLite file or a .keras file.

Every format keeps the same contract: input (N, 75, 75, 1) float32 canvases in
0..1, outputs ``classification`` (N, 10 probabilities) and ``bounding_box``
(N, 4 normalized xmin, ymin, xmax, ymax) -- whatever the source model named its
outputs (the reference's list outputs included).

* ``savedmodel``: a directory ready for TF Serving (``serving_default`` signature),
  written to a temporary sibling and renamed into place;
* ``tflite``: one ``.tflite`` file, converted from that SavedModel, written atomically;
* ``keras``: a ``.keras`` file plus the model's config sidecar (``locmnist.runs.sidecar``)
  when it has one.

The multi-digit detector (``locmnist.detector``) exports the same three ways, with
its own contract: input (N, H, W, 1) of any H, W (multiples of 16), outputs
``heatmap``, ``size`` and ``offset``; ``locmnist.reader.Reader.load`` runs any of
them with the one shared decoding.

After writing, the export is loaded back and compared with the Keras model on
test canvases (detection test scenes for a detector), so a broken export is
reported, not shipped.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from locmnist.serving import tflite_bytes, write_savedmodel

FORMATS = ("savedmodel", "tflite", "keras")
PARITY_TOLERANCE = 1e-4


def add_arguments(parser) -> None:
    parser.add_argument("--model", help="model file or run directory (default: shipped model)")
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", required=True,
                        help="output: the SavedModel directory, or a folder (or file path "
                             "ending in .tflite / .keras) for the single-file formats")
    parser.add_argument("--check", type=int, default=200, metavar="N",
                        help="compare the export with the Keras model on N test canvases "
                             "(0 = skip; default 200)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from locmnist.model_files import is_detector_file, load_detector_file, load_model_file
    from locmnist.runs import default_model_path

    source = Path(args.model or default_model_path())
    detector = is_detector_file(source)
    model, config = (load_detector_file if detector else load_model_file)(source)
    path = export_model(model, args.format, args.out, config=config)
    copy_calibration(source, path)
    if detector and config is not None and args.format != "keras":
        from locmnist.runs import sidecar

        config.save(sidecar(path, "config"))  # the reader's threshold travels with the export
    result = {"format": args.format, "model": str(source), "out": str(path)}
    if args.check:
        if detector:
            from locmnist.scenes import detection_test_split

            canvases = detection_test_split().canvases[:args.check].astype(np.float32) / 255.0
        else:
            from locmnist.synthesis import test_split

            canvases = test_split("standard")[0][:args.check].astype(np.float32) / 255.0
        result["checked_canvases"] = len(canvases)
        result["max_abs_difference"] = max_difference(model, path, args.format, canvases)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {args.format} export of {source} to {path}")
        if "max_abs_difference" in result:
            print(f"checked on {result['checked_canvases']} test canvases: largest difference "
                  f"from the Keras model {result['max_abs_difference']:.2e}")
    ok = result.get("max_abs_difference", 0.0) <= PARITY_TOLERANCE
    if not ok:
        print(f"error: the export differs from the Keras model by more than "
              f"{PARITY_TOLERANCE}", file=__import__("sys").stderr)
    return 0 if ok else 1


# --- writing ------------------------------------------------------------------

def export_model(model, fmt: str, out, config=None) -> Path:
    """Write ``model`` in format ``fmt`` to ``out``; returns the path written."""
    out = Path(out)
    if fmt == "savedmodel":
        return export_savedmodel(model, out)
    if fmt == "tflite":
        return export_tflite(model, out if out.suffix == ".tflite" else out / "model.tflite")
    if fmt == "keras":
        return export_keras(model, out if out.suffix == ".keras" else out / "model.keras", config)
    raise ValueError(f"unknown export format {fmt!r}; choose from {FORMATS}")


def export_savedmodel(model, out_dir: Path) -> Path:
    """Write a SavedModel directory; an existing SavedModel there is replaced."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / "saved_model.pb").is_file() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} exists and is not a SavedModel; choose an empty or new "
                         f"directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        write_savedmodel(model, tmp / "model")
        # A directory cannot be swapped in one step: move the old one aside first,
        # so a reader sees the old or the new export, never a half-written one.
        old = tmp / "old"
        if out_dir.exists():
            out_dir.rename(old)
        (tmp / "model").rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_tflite(model, out_file: Path) -> Path:
    from locmnist.files import atomic_write

    data = tflite_bytes(model)
    atomic_write(out_file, lambda tmp: Path(tmp).write_bytes(data), suffix=".tflite")
    return Path(out_file)


def export_keras(model, out_file: Path, config=None) -> Path:
    """Re-save as .keras (e.g. from legacy .h5), with its config sidecar beside it if known."""
    from locmnist.files import atomic_write
    from locmnist.runs import sidecar

    out_file = Path(out_file)
    atomic_write(out_file, model.save, suffix=".keras")
    if config is not None:
        config.save(sidecar(out_file, "config"))
    return out_file


def copy_calibration(source, exported: Path) -> None:
    """The model's calibration (temperature, "not a digit" threshold) beside a .keras or
    .tflite export, so its predictor answers exactly as the source model's does."""
    import shutil

    from locmnist.calibration import sidecar_path
    from locmnist.files import atomic_write
    from locmnist.runs import sidecar

    calibration = sidecar_path(source)
    if exported.suffix in (".keras", ".tflite") and calibration.is_file():
        atomic_write(sidecar(exported, "calibration"),
                     lambda tmp: shutil.copyfile(calibration, tmp))


# --- reading back ---------------------------------------------------------------

def load_export(path, fmt: str):
    """A callable ``f(x (N,75,75,1) float32) -> (probs, boxes, digit scores or None)``."""
    path = Path(path)
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]

        def run_savedmodel(x):
            out = serve(image=tf.constant(x, tf.float32))
            digit = out["digit"].numpy().reshape(-1) if "digit" in out else None
            return out["classification"].numpy(), out["bounding_box"].numpy(), digit

        return run_savedmodel
    if fmt == "tflite":
        from locmnist.tflite_runtime import TFLitePredictor

        return TFLitePredictor.load(path).raw_outputs
    if fmt == "keras":
        from locmnist.inference import Predictor

        return Predictor.load(path).raw_outputs
    raise ValueError(f"unknown export format {fmt!r}")


def max_difference(model, path, fmt: str, canvases: np.ndarray) -> float:
    """Largest absolute difference between the export's and the Keras model's outputs."""
    from locmnist.detector import is_detector, pad16
    from locmnist.model_files import digit_key, output_roles

    if is_detector(model):
        from locmnist.reader import Reader

        # Reader.load runs any of the three formats (found from the path).
        run_maps = Reader.load(path, classifier=None).raw_outputs
        worst = 0.0
        for i in range(0, len(canvases), 50):
            x = pad16(canvases[i:i + 50])
            ref, got = model(x, training=False), run_maps(x)
            worst = max([worst] + [float(np.abs(np.asarray(got[k]) - np.asarray(ref[k])).max())
                                   for k in ref])
        return worst

    cls_key, box_key = output_roles(model)
    digit = digit_key(model)
    run_export = load_export(path, fmt)
    worst = 0.0
    for i in range(0, len(canvases), 100):
        x = canvases[i:i + 100]
        ref = model(x, training=False)
        probs, boxes, scores = run_export(x)
        worst = max(worst, float(np.abs(probs - np.asarray(ref[cls_key])).max()),
                    float(np.abs(boxes - np.asarray(ref[box_key])).max()))
        if digit is not None:  # an export that lost the digit output is no match
            worst = max(worst, np.inf if scores is None else
                        float(np.abs(scores - np.asarray(ref[digit]).reshape(-1)).max()))
    return worst
