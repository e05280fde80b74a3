"""The detector's side of the CLI: ``train --preset detect|detect-quick`` and
``evaluate --task detect``. ``locmnist.cli`` parses and dispatches here."""
from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path

METRIC_ROWS = (("mAP@0.5", "map50"), ("mAP@0.5:0.95", "map"), ("mAP@0.75", "map75"),
               ("number accuracy (2-5 digits)", "number_accuracy"),
               ("single digit: one right detection", "single_digit_one_right"),
               ("negatives with no detection", "negatives_clean"),
               ("through `Reader.read`: number accuracy", "read_number_accuracy"),
               ("through `Reader.read`: single digit", "read_single_digit_one_right"),
               ("through `Reader.read`: negatives", "read_negatives_clean"))


def detector_config_from_args(args):
    """The detector preset named by ``--preset`` with the flags that set its fields.

    A flag that only the localizer has (``--crop-size``, ...) is an error here, not
    silently ignored.
    """
    from locmnist.config import Config, field_overrides, flag
    from locmnist.detector_config import DetectorConfig, detector_preset

    ours = {f.name for f in dataclasses.fields(DetectorConfig)}
    foreign = [flag(f) for f in dataclasses.fields(Config)
               if f.name not in ours and getattr(args, f.name, None) is not None]
    if foreign:
        raise ValueError(f"{', '.join(foreign)} do not apply to the detector presets")
    return detector_preset(args.preset, **field_overrides(args, DetectorConfig))


def refuse_detector_flags(args) -> None:
    """A localizer preset given a flag only the detector has: an error, not ignored."""
    from locmnist.config import Config, flag
    from locmnist.detector_config import DetectorConfig

    theirs = {f.name for f in dataclasses.fields(Config)}
    set_flags = [flag(f) for f in dataclasses.fields(DetectorConfig)
                 if f.name not in theirs and getattr(args, f.name, None) is not None]
    if set_flags:
        raise ValueError(f"{', '.join(set_flags)} only apply to the detector presets "
                         f"(detect, detect-quick)")


def train(args, progress_bar) -> int:
    from locmnist import runs
    from locmnist.detector_training import train_detector

    cfg = detector_config_from_args(args)
    out = Path(args.out or runs.runs_root() / runs.new_run_id(cfg.preset))
    cancel = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the batch, keep the best model
        signal.signal(sig, lambda signum, frame: cancel.set())
    print(f"training preset={cfg.preset} epochs={cfg.epochs} x {cfg.canvases_per_epoch} "
          f"canvases -> {out}", file=sys.stderr)
    result = train_detector(cfg, out, progress=progress_bar, cancel=cancel,
                            mnist_path=args.mnist)
    print(f"{result.status}: {out}", file=sys.stderr)
    if result.metrics:
        m = result.metrics
        print(f"test mAP@0.5 {m['map50']:.4f}  mAP@0.5:0.95 {m['map']:.4f}  "
              f"numbers {m['number_accuracy']:.4f}", file=sys.stderr)
    if args.ship and result.status == "completed":
        runs.ship_run(out, runs.DETECTOR_MODEL)
        print(f"shipped as {runs.DETECTOR_MODEL}", file=sys.stderr)
    return 0 if result.status == "completed" else 1


def evaluate(args) -> int:
    from locmnist.detection_eval import evaluate_detector
    from locmnist.reader import Reader

    # Batches run on TensorFlow; ``read`` (the through-read rows) on the detector's TFLite
    # copy, as it does for users.
    reader = Reader.load(args.model)
    metrics = evaluate_detector(reader, limit=args.limit, mnist_path=args.mnist,
                                through_read=True)
    metrics.pop("pr_curve", None)
    metrics["model"] = reader.source
    if args.json:
        print(json.dumps(metrics))
        return 0
    print(f"model     {reader.source}\nsplit     detection test split, {metrics['n_canvases']} "
          f"canvases, {metrics['n_digits']} digits")
    print(format_table(metrics))
    return 0


def format_table(m: dict) -> str:
    """The README's results table (markdown) from ``evaluate --task detect`` metrics."""
    lines = ["| metric | value |", "|---|---|"]
    for name, key in METRIC_ROWS:
        v = m.get(key)
        lines.append(f"| {name} | {'n/a' if v is None else f'{v:.4f}'} |")
    per = m.get("ap_per_class", {})
    lines.append("| AP@0.5:0.95 per class | " + " ".join(
        f"{c}: {per[c]:.3f}" for c in sorted(per)) + " |")
    return "\n".join(lines)
