"""Tuning a single-digit model for the reader's crops: ``python -m locmnist.crop_tuning``.

    python -m locmnist.crop_tuning [--from models/default.keras] [--out RUN] [--ship]

The reader labels each digit the detector finds with a single-digit model, on a crop of
that digit alone (``locmnist.reader.closer_look_inputs``). Those crops are not the
canvases the model trained on: the box is the detector's, a few pixels off, a
neighbour's strokes reach into it, and the ink outside it is masked. So this continues
the model's training (from its weights, every layer but BatchNormalization, a new cosine
schedule) on batches that mix its own canvases (``training.make_dataset``: digits,
styled digits, no-digit canvases) with such crops:

* digits of rows and scatters (``locmnist.scenes``) of the model's own training digits
  (never its validation digits, which the reader's acceptance is fitted on), cropped
  from their true boxes with each edge moved by ``box_jitter`` box heights;
* non-digit strokes (``locmnist.negatives``, the training fonts) cropped from their own
  boxes, with the ``digit`` output's target 0, as the reader crops a letter the
  detector took for a digit.

Crops train the class and ``digit`` outputs only (their box loss weight is 0). The run
directory has the usual files (config, history, model, calibration, test metrics with
this tuning's record); ``--ship`` copies it to ``runs.READER_CLASSIFIER``, the model
``Reader.load`` labels digits with. Refit the reader's acceptance after shipping
(``python -m locmnist.acceptance_fit``): the ``digit`` output is one of its features.
"""
from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

CROP_STREAM = 2     # second seed word of the crops: (seed, 2, batch index)
ROW_SHARE = 0.7     # the share of digit crops taken from rows (numbers); the rest scatters


@dataclass(frozen=True)
class CropTuning:
    # 6, not 3: on the validation scenes the reader then read 0.9708 of the numbers
    # (0.9691), 0.9983 of the single digits (0.9933) and left 0.994 of the negatives
    # clean (0.993) (README, "Tuned on the reader's crops").
    epochs: int = field(default=6, metadata={
        "help": "passes over the model's training digits"})
    learning_rate: float = field(default=1e-3, metadata={
        "help": "peak learning rate (cosine decay to ~0)"})
    digit_crops: int = field(default=48, metadata={
        "help": "crops of digits in scenes added to each batch"})
    # 0: with 16 (3 epochs), the reader left 96.8% of the validation negatives clean
    # through read (93.5% with none) but read 194 of the 200 drawn tuning numbers (198)
    # and fewer validation numbers (README, "Tuned on the reader's crops").
    negative_crops: int = field(default=0, metadata={
        "help": "crops of non-digit strokes added to each batch"})
    box_jitter: float = field(default=0.03, metadata={
        "help": "spread (std) of each crop box edge around the true one, in box heights"})
    train_digits: int = field(default=0, metadata={
        "help": "use only the first N of the model's training digits (0 = all)"})
    test_limit: int = field(default=0, metadata={
        "help": "score the first N test-split canvases at the end (0 = all 10,000)"})
    seed: int = field(default=0, metadata={"help": "seeds the crops and the replayed canvases"})

    def __post_init__(self):
        if self.epochs < 1 or self.learning_rate <= 0:
            raise ValueError("need epochs >= 1 and learning_rate > 0")
        if self.digit_crops < 1 or self.negative_crops < 0 or self.box_jitter < 0:
            raise ValueError("need digit_crops >= 1, negative_crops >= 0, box_jitter >= 0")
        if self.train_digits < 0 or self.test_limit < 0:
            raise ValueError("train_digits and test_limit must be >= 0")


def jittered(rng: np.random.Generator, boxes: np.ndarray, jitter: float) -> np.ndarray:
    """(n, 4) boxes with each edge moved by N(0, jitter) box heights."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    heights = (boxes[:, 3] - boxes[:, 1])[:, None]
    return boxes + rng.normal(0.0, jitter, boxes.shape) * heights


def digit_crops(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, n: int,
                jitter: float) -> tuple[np.ndarray, np.ndarray]:
    """(crops (n, 75, 75, 1) float32, labels (n,) int64): digits of rows (ROW_SHARE) and
    scatters of ``images`` (M, 28, 28) on the detection test split's canvas size, framed
    as the reader frames a detected digit, from jittered true boxes."""
    from locmnist.detector_config import DetectorConfig
    from locmnist.reader import closer_look_inputs
    from locmnist.scenes import TEST_CANVAS, row_scene, scatter_scene

    cfg = DetectorConfig()
    xs, ys, count = [], [], 0
    while count < n:
        idx = rng.integers(0, len(images), int(rng.integers(1, cfg.max_digits + 1)))
        make = row_scene if rng.random() < ROW_SHARE else scatter_scene
        scene = make(rng, images[idx], labels[idx].astype(np.int64), cfg, TEST_CANVAS)
        if len(scene.boxes):
            xs.append(closer_look_inputs(scene.canvas, jittered(rng, scene.boxes, jitter)))
            ys.append(scene.labels)
            count += len(scene.labels)
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def negative_crops(seed, n: int, jitter: float) -> np.ndarray:
    """(n, 75, 75, 1) float32 crops of non-digit strokes: the tall strokes of no-digit
    canvases (``reader.tall_strokes``), each framed as a detected digit would be (those
    left with no ink dropped)."""
    from locmnist.negatives import negatives
    from locmnist.reader import closer_look_inputs, tall_strokes
    from locmnist.scenes import TEST_CANVAS

    rng = np.random.default_rng([*np.atleast_1d(seed), 0])
    out, count, chunk = [], 0, 0
    while count < n:
        # Blank canvases give none; a few chunks of canvases always give enough.
        for canvas in negatives(max(4, n), [*np.atleast_1d(seed), chunk], size=TEST_CANVAS):
            crops = closer_look_inputs(canvas, jittered(rng, tall_strokes(canvas), jitter))
            # A stroke a few px thin can lose all its ink to the reader's inset mask.
            crops = crops[crops.max(axis=(1, 2, 3)) > 0.05] if len(crops) else crops
            out.append(crops)
            count += len(crops)
            if count >= n:
                break
        chunk += 1
    return np.concatenate(out)[:n] if n else np.zeros((0, 75, 75, 1), np.float32)


def crop_batch(images: np.ndarray, labels: np.ndarray, settings: CropTuning, batch_index: int):
    """One batch's crops, seeded by (seed, CROP_STREAM, batch_index): (digit crops, their
    labels, negative crops)."""
    seed = (settings.seed, CROP_STREAM, int(batch_index))
    x, y = digit_crops(np.random.default_rng(seed), images, labels, settings.digit_crops,
                       settings.box_jitter)
    return x, y, negative_crops(seed, settings.negative_crops, settings.box_jitter)


def batches(images: np.ndarray, labels: np.ndarray, cfg, settings: CropTuning):
    """Training batches: ``training.make_dataset``'s (x, y, sample weights), each followed
    by its crops; a crop's box loss weight is 0, a negative crop's class loss too."""
    import tensorflow as tf

    from locmnist.training import NEGATIVE_BOX, make_dataset

    d, k = settings.digit_crops, settings.negative_crops

    def make_crops(batch_index):
        x, y, neg = crop_batch(images, labels, settings, batch_index)
        return np.concatenate([x, neg]), y

    def add_crops(batch_index, batch):
        (x, y, w) = batch
        crops, crop_y = tf.numpy_function(make_crops, [batch_index], [tf.float32, tf.int64],
                                          stateful=False)
        crops.set_shape([d + k, 75, 75, 1])
        ones, zeros = tf.ones([d + k]), tf.zeros([d + k])
        is_digit = tf.concat([tf.ones([d]), tf.zeros([k])], 0)
        y = {"classification": tf.concat([y["classification"], tf.concat(
                 [tf.one_hot(crop_y, 10), tf.zeros([k, 10])], 0)], 0),
             "bounding_box": tf.concat([tf.cast(y["bounding_box"], tf.float32),
                                        tf.tile(tf.constant([NEGATIVE_BOX]), [d + k, 1])], 0),
             "digit": tf.concat([y["digit"], is_digit[:, None]], 0)}
        w = {"classification": tf.concat([w["classification"], is_digit], 0),
             "bounding_box": tf.concat([w["bounding_box"], zeros], 0),
             "digit": tf.concat([w["digit"], ones], 0)}
        return tf.concat([x, tf.cast(crops, x.dtype)], 0), y, w

    # The replayed canvases get a stream of their own: the start model's seed would
    # replay its first epochs' canvases.
    own = make_dataset(images, labels, cfg.replace(seed=cfg.seed + 1 + settings.seed))
    return own.enumerate().map(add_crops, num_parallel_calls=tf.data.AUTOTUNE,
                               deterministic=True).prefetch(2)


def tune(model_path: str | os.PathLike, out_dir: str | os.PathLike,
         settings: CropTuning = CropTuning(), progress: Callable | None = None,
         cancel: threading.Event | None = None, mnist_path: str | None = None,
         evaluate_test: bool = True):
    """Tune ``model_path`` (a single-digit model with the ``digit`` output and a saved
    config) on crops into ``out_dir``; returns the ``TrainResult``."""
    import keras

    from locmnist import runs
    from locmnist.data import load_mnist
    from locmnist.evaluation import evaluate_model
    from locmnist.model import compile_model
    from locmnist.model_files import digit_key, load_model_file
    from locmnist.training import (fit_run, lr_schedule, run_directory, split_digits,
                                   validation_data)

    model, start_cfg = load_model_file(model_path)
    if start_cfg is None or digit_key(model) is None:
        raise ValueError(f"{Path(model_path).name}: crop tuning needs a model with its saved "
                         "config (its training and validation digits) and the digit output")
    # The start's seed and val_digits stay: they define the validation digits that
    # calibration and the acceptance are fitted on, which tuning must not see.
    cfg = start_cfg.replace(epochs=settings.epochs, learning_rate=settings.learning_rate,
                            warmup_epochs=0.0, lr_schedule="cosine", time_limit_s=0.0)
    record = {"from": runs.recorded_path(model_path), "settings": dataclasses.asdict(settings)}
    with run_directory(out_dir, cfg) as run_dir:
        tx, ty, vx, vy = split_digits(cfg, load_mnist(mnist_path))
        if settings.train_digits:
            tx, ty = tx[:settings.train_digits], ty[:settings.train_digits]
        steps = max(1, len(tx) // cfg.batch_size)
        # As fine-tuning does (locmnist.finetune): BatchNormalization keeps its statistics.
        for layer in model.layers:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        compile_model(model, cfg, lr_schedule(cfg, steps))

        def evaluate(m) -> dict:
            return {**evaluate_model(m, limit=settings.test_limit or None, mnist_path=mnist_path),
                    "crop_tuning": record}

        return fit_run(run_dir, cfg, model, lambda: batches(tx, ty, cfg, settings), steps,
                       validation_data(vx, vy, cfg), vy, progress, cancel, keep="last",
                       evaluate=evaluate if evaluate_test else None)


def main(argv=None) -> int:
    import argparse
    import signal
    import sys

    from locmnist import runs
    from locmnist.config import add_field_arguments, field_overrides
    from locmnist.progress import ProgressBar

    ap = argparse.ArgumentParser(prog="python -m locmnist.crop_tuning", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="model", default=str(runs.DEFAULT_MODEL),
                    help="the single-digit model to start from (default: the shipped one)")
    ap.add_argument("--out", help="run directory (default: <runs root>/<time>-crops-<id>)")
    ap.add_argument("--ship", action="store_true",
                    help=f"copy the result to the shipped {runs.READER_CLASSIFIER.name}, the "
                    "model the reader labels digits with")
    ap.add_argument("--mnist", help="path to mnist.npz or a folder of IDX files")
    ap.add_argument("--no-progress", action="store_true", help="no terminal progress bar")
    add_field_arguments(ap, CropTuning, show_defaults=True)
    args = ap.parse_args(argv)
    try:
        settings = CropTuning(**field_overrides(args, CropTuning))
    except ValueError as e:
        ap.error(str(e))
    out = Path(args.out or runs.runs_root() / runs.new_run_id("crops"))
    cancel = threading.Event()
    # SIGTERM/SIGINT finish the batch and keep the model so far (restored after: main
    # may be called from a running program).
    before = {sig: signal.signal(sig, lambda *_: cancel.set())
              for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"tuning {args.model} on crops -> {out}", file=sys.stderr)
    try:
        result = tune(args.model, out, settings, None if args.no_progress else ProgressBar(),
                      cancel=cancel, mnist_path=args.mnist)
    except (ValueError, OSError) as e:   # InvalidModel is a ValueError: one clear line
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    print(f"{result.status}: {out}", file=sys.stderr)
    if result.metrics:
        m = result.metrics
        print(f"test split: accuracy {m['accuracy']:.4f}, mean IoU {m['iou_mean']:.4f}",
              file=sys.stderr)
    if args.ship and result.status == "completed":
        runs.ship_run(out, runs.READER_CLASSIFIER)
        print(f"shipped as {runs.READER_CLASSIFIER}", file=sys.stderr)
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
