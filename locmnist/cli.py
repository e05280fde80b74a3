"""Command line: ``python -m locmnist {train,evaluate,predict,export,finetune}``.

Bad input never prints a traceback: errors become one clear line (or a JSON
object with ``--json``) and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path


def _quiet_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up chatter (oneDNN, CUDA probing) hidden.

    TF 2.21 logs through absl before any log level applies, so the only way to keep
    a clean terminal (and clean ``--json`` output) is to point fd 2 elsewhere while
    TensorFlow initialises. Python-level errors are re-raised after fd 2 is back.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        if not os.environ.get("TF_CONFIG"):
            # The CPU/CUDA platform probes log on the first op. Not with TF_CONFIG: a
            # multi-worker strategy must configure collective ops before any op runs.
            tf.constant(0.0) + 1.0
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _parser() -> argparse.ArgumentParser:
    import dataclasses

    from locmnist.config import PRESETS, Config, add_field_arguments
    from locmnist.detector_config import DETECTOR_PRESETS, DetectorConfig

    p = argparse.ArgumentParser(prog="python -m locmnist",
                                description="Classify and localize MNIST digits.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model into a run directory")
    t.add_argument("--preset", choices=PRESETS + DETECTOR_PRESETS, default="default",
                   help=f"{', '.join(DETECTOR_PRESETS)}: the multi-digit detector "
                        "(locmnist.detector)")
    # Every settable Config field is a flag overriding the preset (--batch-size, ...).
    add_field_arguments(t.add_argument_group("config fields (override the preset)"), Config)
    add_field_arguments(t.add_argument_group(f"detector fields ({', '.join(DETECTOR_PRESETS)})"),
                        DetectorConfig, exclude={f.name for f in dataclasses.fields(Config)})
    t.add_argument("--out", help="run directory (default: <runs root>/<time>-<preset>-<id>, "
                                 "the runs root being the repo's runs/ or $LOCMNIST_RUNS)")
    t.add_argument("--extra", help="extra labelled images mixed into training: a folder or "
                                   "zip with labels.csv (file,label[,xmin,ymin,xmax,ymax]), "
                                   "or a corrections database")
    t.add_argument("--extra-share", type=float, default=0.05,
                   help="share of the training digits that are (repeated) extra images")
    t.add_argument("--mnist", help="path to mnist.npz or a folder of IDX files")
    t.add_argument("--no-progress", action="store_true", help="no terminal progress bar")
    t.add_argument("--ship", action="store_true",
                   help="when training completes, install the run as the shipped default "
                        "model (models/default.keras and its .config/.history/.metrics/"
                        ".calibration.json; models/detector.keras for a detector preset)")
    t.add_argument("--strategy", choices=["auto", "default", "mirrored", "multiworker"],
                   default="default", help="tf.distribute strategy; --batch-size is per replica "
                                           "(see 'Training on more machines' in the README)")

    e = sub.add_parser("evaluate", help="evaluate a model on the published test split")
    e.add_argument("--model", help="model file or run directory (default: shipped model)")
    e.add_argument("--task", choices=["classify", "detect"], default="classify",
                   help="classify: the single-digit model; detect: the multi-digit detector "
                        "on the detection test split (COCO mAP, number accuracy, negatives)")
    e.add_argument("--data", choices=["standard", "seed", "styles"], default="standard",
                   help="which split: ours, the reference's, or the styles split "
                        "(MNIST test digits plus styles MNIST lacks, locmnist.styles)")
    e.add_argument("--set", choices=["test", "wild"], default="test",
                   help="test: the published test split; wild: drawn, photographed and typed "
                        "digits through the full predict path (see locmnist/wild.py)")
    e.add_argument("--per-kind", type=int, default=300, help="wild set: images per kind")
    e.add_argument("--limit", type=int, help="only the first N test canvases")
    e.add_argument("--mnist", help="path to mnist.npz or a folder of IDX files")
    e.add_argument("--json", action="store_true", help="print one JSON object")

    pr = sub.add_parser("predict", help="predict digit and box for image files")
    pr.add_argument("--model", help="model file or run directory (default: shipped model)")
    pr.add_argument("--detector", help="detector file or run directory that reads the whole "
                                       "number (default: models/detector.keras)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line per input")
    pr.add_argument("images", nargs="+", metavar="IMAGE")

    c = sub.add_parser("calibrate", help="refit a trained model's calibration (temperature, "
                                         "'not a digit' threshold, 'not sure' floor) on its "
                                         "own validation data")
    c.add_argument("--model", help="model file or run directory (default: shipped model)")
    c.add_argument("--mnist", help="path to mnist.npz or a folder of IDX files")
    c.add_argument("--json", action="store_true", help="print the calibration as JSON")

    # Subcommands that live in their own modules register their own flags.
    from locmnist import export, finetune

    finetune.add_arguments(sub.add_parser(
        "finetune", help="fine-tune a model on corrections, replaying MNIST so it forgets nothing"))
    export.add_arguments(sub.add_parser("export", help="export to SavedModel, TFLite or .keras"))
    return p


def main(argv: list[str] | None = None) -> int:
    _quiet_tensorflow()
    args = _parser().parse_args(argv)
    try:
        from locmnist import export, finetune

        return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
                "calibrate": cmd_calibrate, "export": export.run,
                "finetune": finetune.run}[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a clear line, never a traceback, for anything we did not expect
        from locmnist.data import MnistNotFound
        from locmnist.model_files import InvalidModel

        known = isinstance(e, (InvalidModel, MnistNotFound, OSError, ValueError))
        msg = str(e) if known else f"{type(e).__name__}: {e}"
        if getattr(args, "json", False):
            print(json.dumps({"error": msg}))
        else:
            print(f"error: {msg}", file=sys.stderr)
        return 2


# --- train ------------------------------------------------------------------

def cmd_train(args) -> int:
    from locmnist import detector_cli
    from locmnist.detector_config import DETECTOR_PRESETS

    if args.preset in DETECTOR_PRESETS:
        from locmnist.progress import ProgressBar

        return detector_cli.train(args, None if args.no_progress else ProgressBar())
    detector_cli.refuse_detector_flags(args)
    from locmnist import runs
    from locmnist.config import Config, field_overrides, preset
    from locmnist.distribute import describe, make_strategy
    from locmnist.progress import ProgressBar
    from locmnist.training import train

    cfg = preset(args.preset, **field_overrides(args, Config))
    out = Path(args.out or runs.runs_root() / runs.new_run_id(cfg.preset))
    cancel = threading.Event()

    def stop(signum, frame):  # SIGTERM/SIGINT: finish the batch, keep the best model
        cancel.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    strategy = make_strategy(args.strategy)
    print(f"training preset={cfg.preset} data={cfg.data} epochs={cfg.epochs} "
          f"({describe(strategy)}) -> {out}", file=sys.stderr)
    extra = None
    if args.extra:
        from locmnist.labelled import load_labelled, to_digits

        examples, problems = load_labelled(args.extra)
        digits, labels, bad = to_digits(examples)
        for line in problems + bad:
            print(f"skipped: {line}", file=sys.stderr)
        if not len(digits):
            raise ValueError(f"{args.extra} has no usable labelled image")
        extra = (digits, labels)
        print(f"mixing in {len(digits)} extra images from {args.extra}", file=sys.stderr)
    result = train(cfg, out, progress=None if args.no_progress else ProgressBar(),
                   cancel=cancel, mnist_path=args.mnist, strategy=strategy,
                   extra=extra, extra_share=args.extra_share)
    print(f"{result.status}: {out}", file=sys.stderr)
    if result.metrics:
        m = result.metrics
        print(f"test accuracy {m['accuracy']:.4f}  mean IoU {m['iou_mean']:.3f}  "
              f"IoU>=0.5 {m['iou_ge_0.5']:.3f}", file=sys.stderr)
        print(f"not a digit: negatives rejected {m['reject_rate_negatives']:.4f}  digits "
              f"rejected {m['digits_rejected']:.4f}  accuracy on accepted "
              f"{m['accuracy_accepted']:.4f}  ECE {m['ece']:.4f}", file=sys.stderr)
    if args.ship and result.status == "completed":
        runs.ship_run(out, runs.DEFAULT_MODEL)
        print(f"shipped as {runs.DEFAULT_MODEL}", file=sys.stderr)
    return 0 if result.status == "completed" else 1


# --- evaluate -----------------------------------------------------------------

EVAL_KEYS = ("accuracy", "box_mse", "iou_mean", "iou_ge_0.5", "iou_ge_0.6", "iou_ge_0.75", "n",
             "per_class_accuracy")
# "Not a digit" and calibration (locmnist.calibration): the first five are printed as text too.
REJECT_KEYS = ("ece", "digits_rejected", "accuracy_accepted", "reject_rate_negatives",
               "reject_threshold", "temperature", "reject_rule", "calibrated", "n_negatives",
               "ece_uncalibrated", "reject_rate_negatives_by_kind", "tradeoff", "reliability",
               "min_confidence", "digits_unsure", "confidence_tradeoff")


def cmd_evaluate(args) -> int:
    if args.task == "detect":
        from locmnist import detector_cli

        return detector_cli.evaluate(args)
    from locmnist.evaluation import evaluate_model
    from locmnist.inference import Predictor

    predictor = Predictor.load(args.model)
    if args.set == "wild":
        return _evaluate_wild(predictor, args)
    metrics = evaluate_model(predictor, data=args.data, limit=args.limit,
                             mnist_path=args.mnist)
    if args.json:
        out = {k: metrics[k] for k in EVAL_KEYS + REJECT_KEYS}
        out["model"] = predictor.source
        out["data"] = args.data
        out["split_version"] = metrics["split_version"]
        if "per_style_accuracy" in metrics:
            out["per_style_accuracy"] = metrics["per_style_accuracy"]
        print(json.dumps(out))
    else:
        print(f"model     {predictor.source}\n"
              f"data      {args.data} test split v{metrics['split_version']}, n={metrics['n']}")
        for k in EVAL_KEYS[:-2]:
            print(f"{k:<10}{metrics[k]:.4f}")
        print(f"not a digit: {metrics['reject_rule']} < {metrics['reject_threshold']:.4g}"
              f"; not sure: top probability < {metrics['min_confidence']:.4g}"
              f" (temperature {metrics['temperature']:.3f})")
        for k in REJECT_KEYS[:4]:
            print(f"{k:<22}{metrics[k]:.4f}")
    return 0


def _evaluate_wild(predictor, args) -> int:
    from locmnist.wild import evaluate_wild

    result = evaluate_wild(predictor, per_kind=args.per_kind)
    result["model"] = predictor.source
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"model     {predictor.source}\nset       wild, n={result['n']}")
    print(f"{'kind':<8}{'n':>6}{'accuracy':>10}{'iou_mean':>10}{'iou>=0.5':>10}{'no digit':>10}")
    for kind, s in [*result["by_kind"].items(), ("all", result)]:
        print(f"{kind:<8}{s['n']:>6}{s['accuracy']:>10.4f}{s['iou_mean']:>10.3f}"
              f"{s['iou_ge_0.5']:>10.3f}{s['no_digit']:>10.3f}")
    return 0


# --- calibrate ----------------------------------------------------------------

def cmd_calibrate(args) -> int:
    from locmnist.calibration import sidecar_path
    from locmnist.model_files import resolve_model_path
    from locmnist.runs import default_model_path
    from locmnist.training import recalibrate

    path = resolve_model_path(args.model or default_model_path())
    cal = recalibrate(path, args.mnist)
    if args.json:
        print(json.dumps({"model": str(path), **cal.to_dict()}))
        return 0
    v = cal.validation or {}
    print(f"model            {path}\nsaved            {sidecar_path(path)}\n"
          f"temperature      {cal.temperature:.4f}\n"
          f"not a digit      {cal.rule} < {cal.threshold:.4g}\n"
          f"not sure         top probability < {cal.min_confidence:.4g}\n"
          f"validation       {v.get('digits', 0)} digits: {v.get('digits_rejected', 0):.4%} "
          f"rejected ({v.get('digits_unsure', 0):.4%} not sure), budget "
          f"{v.get('budget', 0):.2%}; {v.get('negatives', 0)} negatives: "
          f"{v.get('negatives_rejected', 0):.2%} rejected")
    return 0


# --- predict ------------------------------------------------------------------

def cmd_predict(args) -> int:
    from locmnist.inference import Predictor
    from locmnist.preprocess import InvalidImage

    from locmnist.reader import Reader

    predictor = Predictor.load(args.model)
    # A model named on the command line serves both tasks; otherwise the reader labels
    # digits with its own (``runs.default_classifier_path``).
    reader = Reader.load(args.detector, classifier=predictor if args.model else "default")
    failed = False
    for path in args.images:
        try:
            pred = predictor.predict(Path(path))
            reading = reader.read(Path(path))
            record = {"file": path, **pred.to_dict(), **reading.to_dict()}
            if pred.label is None:
                record["message"] = pred.message
        except (InvalidImage, OSError) as e:
            failed = True
            record = {"file": path, "error": str(e), "label": None, "digits": [], "text": ""}
        except Exception as e:  # anything unexpected fails this file only, not the rest
            failed = True
            record = {"file": path, "error": f"{type(e).__name__}: {e}", "label": None,
                      "digits": [], "text": ""}
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" in record:
            print(f"{path}: error: {record['error']}")
        elif record["label"] is None:
            print(f"{path}: {record.get('message', 'no digit')}")
        else:
            b = ", ".join(f"{v:.1f}" for v in record["box"])
            number = f"; number {record['text']!r}" if record["text"] else ""
            print(f"{path}: {record['label']} ({record['confidence']:.1%}) box [{b}]{number}")
    return 2 if failed else 0
