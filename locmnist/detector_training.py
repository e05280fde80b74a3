"""Training the detector: ``train_detector(cfg, out_dir, ...) -> TrainResult``.

The same run-directory contract as the localizer (``locmnist.training``, whose
recorder, progress hook, cancel and time limit this reuses): ``config.json``
first, ``status.json`` while it runs, ``history.json`` per epoch (every loss
term, training and validation, and ``val_map50`` / ``val_map`` from COCOeval on
the validation scenes), ``model.keras`` (best validation loss), and
``metrics.json`` (``evaluate_detector`` on the published detection test split).

An epoch is ``cfg.canvases_per_epoch`` fresh scenes, streamed by ``tf.data``
from a seeded generator, so the amount of work is fixed by the config and the
time limit is only a safety cap.
"""
from __future__ import annotations

import os
import threading
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from locmnist.data import load_mnist
from locmnist.detector import build_detector, compile_detector, encode_batch
from locmnist.detector_config import DetectorConfig
from locmnist.scenes import build_scene_set, scene_batch, subset
from locmnist.training import (Progress, TrainResult, _RunRecorder, add_style_variants,
                               build_training_state, fit_and_finish, lr_schedule,
                               run_directory, split_digits)

VAL_SEED = 778
VAL_NEGATIVES = 100


def make_scene_dataset(images: np.ndarray, labels: np.ndarray, cfg: DetectorConfig,
                       seed: int | None = None) -> tf.data.Dataset:
    """Infinite dataset of (canvases (B, H, W, 1), {heatmap, size, offset}) batches.

    Batch ``i`` is ``scene_batch(..., seed, i)``: deterministic, generated in
    parallel in Python (GIL-bound but far faster than a training step), prefetched.
    """
    seed = cfg.seed if seed is None else seed
    b, h, w = cfg.batch_size, cfg.canvas_height, cfg.canvas_width
    labels = labels.astype(np.int64)

    def make(i):
        x, y = encode_batch(scene_batch(images, labels, cfg, seed, int(i)))
        return x, y["heatmap"], y["size"], y["offset"]

    def tf_make(i):
        x, heat, size, off = tf.numpy_function(make, [i], [tf.float32] * 4, stateful=False)
        x.set_shape((b, h, w, 1))
        heat.set_shape((b, h // 4, w // 4, 10))
        size.set_shape((b, h // 4, w // 4, 3))
        off.set_shape((b, h // 4, w // 4, 3))
        return x, {"heatmap": heat, "size": size, "offset": off}

    ds = tf.data.Dataset.range(2**62).map(tf_make, num_parallel_calls=2, deterministic=True)
    return ds.prefetch(4)


class ValidationMAP(keras.callbacks.Callback):
    """Adds ``val_map50`` and ``val_map`` (COCO mAP@0.5, @0.5:0.95) to each epoch's logs.

    Runs before the run recorder, which copies the logs into history.json.
    """

    def __init__(self, scenes, cfg: DetectorConfig):
        super().__init__()
        self.scenes, self.cfg = scenes, cfg

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.model.stop_training and not logs:
            return
        from locmnist.detection_eval import coco_map
        from locmnist.reader import Reader

        reader = Reader(self.model, self.cfg)
        m = coco_map(self.scenes, reader.detect_canvases(self.scenes.canvases))
        logs["val_map50"], logs["val_map"] = m["map50"], m["map"]


def train_detector(cfg: DetectorConfig, out_dir: str | os.PathLike,
                   callbacks: list | None = None,
                   progress: Callable[[Progress], None] | None = None,
                   cancel: threading.Event | None = None, mnist_path: str | None = None,
                   evaluate_test: bool = True) -> TrainResult:
    """Train a detector for ``cfg`` into ``out_dir`` (see module docstring)."""
    with run_directory(out_dir, cfg) as run_dir:
        return _train_locked(cfg, run_dir, callbacks, progress, cancel, mnist_path,
                             evaluate_test)


def _train_locked(cfg, run_dir, callbacks, progress, cancel, mnist_path,
                  evaluate_test) -> TrainResult:
    mnist = load_mnist(mnist_path)
    tx, ty, vx, vy = split_digits(cfg, mnist)
    tx, ty = add_style_variants(tx, ty, cfg)
    steps = cfg.steps_per_epoch
    val_data, val_scenes = None, None
    if len(vx):
        val_scenes = build_scene_set(vx, vy.astype(np.int64), cfg, VAL_SEED,
                                     (cfg.canvas_height, cfg.canvas_width), VAL_NEGATIVES)
        # Mixed like training batches: the focal loss is divided by the digits in a batch,
        # so a batch of only negatives (the set's tail) would dominate the validation loss.
        val_scenes = subset(val_scenes, np.random.default_rng(VAL_SEED).permutation(
            len(val_scenes)))
        val_x, val_y = _encode_set(val_scenes)
        val_data = (val_x, val_y)

    model = compile_detector(build_detector(cfg), cfg, lr_schedule(cfg, steps))
    recorder = _RunRecorder(run_dir, cfg, steps, cancel or threading.Event(), progress)
    extra = [ValidationMAP(val_scenes, cfg)] if val_scenes is not None else []

    def run_fit():
        data = make_scene_dataset(tx, ty, cfg)
        build_training_state(model, data)
        model.fit(data, epochs=cfg.epochs, steps_per_epoch=steps,
                  validation_data=val_data, validation_batch_size=cfg.batch_size,
                  callbacks=[*extra, recorder, *(callbacks or [])], verbose=0)

    def evaluate(best):
        from locmnist.detection_eval import evaluate_detector
        from locmnist.reader import Reader

        metrics = evaluate_detector(Reader(best, cfg, classifier=_shipped_classifier()),
                                    mnist_path=mnist_path)
        return {**metrics, "epochs": len(recorder.history.get("epoch", []))}

    return fit_and_finish(recorder, run_fit, evaluate=evaluate if evaluate_test else None)


def _shipped_classifier():
    """The reader's single-digit model for the closer look, or None without one."""
    from locmnist.inference import Predictor
    from locmnist.model_files import InvalidModel
    from locmnist.runs import default_classifier_path

    try:
        return Predictor.load(default_classifier_path())
    except InvalidModel:
        return None


def _encode_set(scenes) -> tuple[np.ndarray, dict]:
    """Model inputs and targets for a SceneSet (uint8 canvases)."""
    from locmnist.detector import encode_targets

    x = scenes.canvases.astype(np.float32) / 255.0
    h, w = x.shape[1:3]
    enc = [encode_targets(b, lab, h, w) for b, lab in zip(scenes.boxes, scenes.labels)]
    return x, {"heatmap": np.stack([e[0] for e in enc]), "size": np.stack([e[1] for e in enc]),
               "offset": np.stack([e[2] for e in enc])}


__all__ = ["train_detector", "make_scene_dataset"]
