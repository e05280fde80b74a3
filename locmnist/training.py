"""Training: ``train(cfg, out_dir, callbacks=...) -> TrainResult``.

A run directory gets its files (``locmnist.runs`` names them: config, status,
history, the best model, test metrics, and the calibration: temperature and "not a
digit" threshold fitted on the validation data, see ``locmnist.calibration``), each
written atomically (temp file + rename).

``train`` neither prints nor plots: progress reaches callers through Keras
callbacks or the ``progress`` hook. Cancel with ``cancel`` (a threading.Event),
by creating the cancel file (``runs.CANCEL``) in the run directory, or with SIGTERM/SIGINT in
the CLI; the best model so far is kept.
"""
from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from locmnist.config import Config
from locmnist.data import load_mnist
from locmnist.distribute import fit, needs_own_loop, shard
from locmnist import runs
from locmnist.files import atomic_write, atomic_write_json
from locmnist.model import build_model, compile_model
from locmnist.model_files import digit_key, load_model_file
from locmnist.synthesis import synthesize, synthesize_numpy

VAL_SEED = 777          # validation canvases are fixed for a run, unlike training ones
NEGATIVE_STREAM = 1     # second seed word of the training negatives: (seed, 1, batch)
NEGATIVE_BOX = (0.4, 0.4, 0.6, 0.6)  # a placeholder target; its loss weight is 0


@dataclass
class Progress:
    """What the progress hook receives, at most a few times a second."""
    epoch: int           # 1-based epoch being trained
    epochs: int
    step: int            # steps done in this epoch
    steps: int           # steps per epoch
    elapsed_s: float
    eta_s: float | None
    logs: dict = field(default_factory=dict)   # latest training logs
    history: dict | None = None                # set at each epoch end

    @property
    def fraction(self) -> float:
        done = (self.epoch - 1) * self.steps + self.step
        return min(1.0, done / max(1, self.epochs * self.steps))


@dataclass
class TrainResult:
    run_dir: Path
    status: str              # "completed" | "cancelled"
    history: dict
    metrics: dict | None     # test-split evaluation (None when cancelled before a model)
    model_path: Path | None


def split_digits(cfg: Config, mnist) -> tuple:
    """(train_x, train_y, val_x, val_y) digits: a seeded hold-out from the 60k train set."""
    order = np.random.default_rng(cfg.seed).permutation(len(mnist.x_train))
    val_idx = order[:cfg.val_digits]
    rest = order[cfg.val_digits:]
    train_idx = rest[:cfg.train_digits] if cfg.train_digits > 0 else rest
    return (mnist.x_train[train_idx], mnist.y_train[train_idx],
            mnist.x_train[val_idx], mnist.y_train[val_idx])


def mix_in(tx: np.ndarray, ty: np.ndarray, extra, share: float) -> tuple:
    """Training digits plus ``extra`` = (digits (M, 28, 28), labels (M,)), the extra ones
    repeated so they make up about ``share`` of the result (at least once each)."""
    if extra is None or not len(extra[0]):
        return tx, ty
    ex, ey = extra
    reps = max(1, round(share * len(tx) / max(1e-9, (1 - share) * len(ex))))
    return (np.concatenate([tx, np.tile(ex, (reps, 1, 1))]),
            np.concatenate([ty, np.tile(np.asarray(ey, ty.dtype), reps)]))


def add_style_variants(images: np.ndarray, labels: np.ndarray, cfg: Config):
    """Training digits plus ``cfg.styles_fraction`` as many style variants
    (``locmnist.styles``: the digits MNIST's writers form differently), from the
    training generator stream, never the styles test split's."""
    n = int(round(cfg.styles_fraction * len(images)))
    if n == 0:
        return images, labels
    from locmnist.styles import variants

    sx, sy, _ = variants(n, seed=cfg.seed, split="train")
    return np.concatenate([images, sx]), np.concatenate([labels, sy.astype(labels.dtype)])


def negatives_per_batch(cfg: Config) -> int:
    """How many canvases of each training batch hold no digit (0 without the digit output).

    As many again are ``styled_digits`` (digits drawn and typed like the negatives),
    so that rendering style never tells a digit from a non-digit.
    """
    if not cfg.digit_head:
        return 0
    return min(cfg.batch_size // 3, max(1, round(cfg.negative_fraction * cfg.batch_size)))


def with_negatives(canvas, targets: dict, negative) -> tuple:
    """Append no-digit canvases (K, 75, 75) to a digit batch: (x, y, sample weights).

    The ``digit`` target is 1 for digits and 0 for negatives; on negatives the class
    and box losses get weight 0 (there is no class or box to learn).
    """
    d, k = tf.shape(canvas)[0], tf.shape(negative)[0]
    ones = lambda n: tf.ones([n], tf.float32)
    zeros = lambda n: tf.zeros([n], tf.float32)
    x = tf.concat([canvas, tf.cast(negative, canvas.dtype)[..., None]], axis=0)
    y = {"classification": tf.concat([targets["classification"], tf.zeros([k, 10])], axis=0),
         "bounding_box": tf.concat([tf.cast(targets["bounding_box"], tf.float32),
                                    tf.tile(tf.constant([NEGATIVE_BOX]), [k, 1])], axis=0),
         "digit": tf.concat([ones(d), zeros(k)], axis=0)[:, None]}
    mask = tf.concat([ones(d), zeros(k)], axis=0)
    return x, y, {"classification": mask, "bounding_box": mask, "digit": ones(d + k)}


def make_dataset(images: np.ndarray, labels: np.ndarray, cfg: Config) -> tf.data.Dataset:
    """Infinite dataset of ({'image'}, {'classification', 'bounding_box'}) batches.

    Digits are reshuffled every epoch and every batch gets fresh random placement
    (its seed is the batch counter), synthesized in parallel and prefetched, so no
    epoch of float canvases is ever held in memory. With the digit output, each batch
    ends with ``negatives_per_batch(cfg)`` styled digits (drawn and typed, with labels
    and boxes) and as many no-digit canvases (``locmnist.negatives``, seeded by the
    batch counter too), and batches carry sample weights (see ``with_negatives``).
    """
    n = len(images)
    images = tf.constant(images)                                   # (N, 28, 28) uint8
    onehot = tf.one_hot(tf.constant(labels.astype(np.int32)), 10)  # (N, 10)
    k = negatives_per_batch(cfg)
    size = cfg.canvas_size

    def make_extra(batch_index):
        """(styled digits (k, h, w), their labels (k,), boxes (k, 4), negatives (k, h, w))."""
        from locmnist.negatives import negatives, styled_digits

        seed = (cfg.seed, NEGATIVE_STREAM, int(batch_index))
        digits, labels, boxes = styled_digits(k, seed, size=(size, size))
        return digits, labels, boxes, negatives(k, seed, size=(size, size))

    def make_batch(batch_index, idx):
        canvas, box = synthesize(tf.gather(images, idx),
                                 tf.stack([tf.constant(cfg.seed, tf.int64), batch_index]), cfg)
        targets = {"classification": tf.gather(onehot, idx), "bounding_box": box}
        if not k:
            return canvas, targets
        styled, styled_y, styled_box, negative = tf.numpy_function(
            make_extra, [batch_index], [tf.float32, tf.int64, tf.float32, tf.float32],
            stateful=False)
        styled.set_shape([k, size, size])
        negative.set_shape([k, size, size])
        canvas = tf.concat([canvas, styled[..., None]], axis=0)
        targets = {"classification": tf.concat([targets["classification"],
                                                tf.one_hot(styled_y, 10)], axis=0),
                   "bounding_box": tf.concat([tf.cast(box, tf.float32),
                                              tf.reshape(styled_box, [k, 4])], axis=0)}
        return with_negatives(canvas, targets, negative)

    ds = tf.data.Dataset.range(n).shuffle(n, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.repeat().batch(cfg.batch_size - 2 * k, drop_remainder=True).enumerate()
    ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def validation_data(vx: np.ndarray, vy: np.ndarray, cfg: Config):
    """Fixed validation canvases: (x, y) or, with the digit output, (x, y, sample weights)
    with validation negatives (seed VAL_SEED, training fonts) appended at the batch's ratio."""
    canvas, box = synthesize_numpy(vx, cfg, seed=VAL_SEED)                 # (V, 75, 75, 1)
    targets = {"classification": keras.utils.to_categorical(vy, 10), "bounding_box": box}
    if not cfg.digit_head:
        return canvas, targets
    from locmnist.negatives import negatives

    k = round(len(vx) * cfg.negative_fraction / (1 - cfg.negative_fraction))
    neg = negatives(k, (VAL_SEED, NEGATIVE_STREAM), size=(cfg.canvas_size, cfg.canvas_size))
    x, y, w = with_negatives(tf.constant(canvas), targets, tf.constant(neg))
    as_np = lambda d: {key: v.numpy() for key, v in d.items()}
    return x.numpy(), as_np(y), as_np(w)


def fit_calibration(model, val_data, vy: np.ndarray, cfg: Config):
    """Temperature and "not a digit" threshold from the validation data (see calibration)."""
    from locmnist import calibration
    from locmnist.evaluation import model_outputs

    x = val_data[0]
    probs, _, digit = model_outputs(model, x)
    n = len(vy)
    neg_digit = None if digit is None else digit[n:]
    return calibration.fit(probs[:n], np.asarray(vy, np.int64), None if digit is None else digit[:n],
                           probs[n:], neg_digit, budget=cfg.reject_budget)


def recalibrate(model_path: str | os.PathLike, mnist_path: str | None = None):
    """Refit a trained model's calibration on the validation data its training used (the
    same seeded digits and negatives, rebuilt from the config saved beside it) and save it
    beside the model, replacing the old one; returns the new ``Calibration``. For models
    calibrated before a calibration setting existed (``python -m locmnist calibrate``)."""
    from locmnist.calibration import sidecar_path

    model, cfg = load_model_file(model_path)
    if cfg is None:
        raise ValueError(f"{Path(model_path).name} has no saved config: its validation data "
                         "cannot be rebuilt")
    if digit_key(model) is None:
        cfg = cfg.replace(negative_fraction=0.0)  # as train() does for such a model
    _, _, vx, vy = split_digits(cfg, load_mnist(mnist_path))
    if not len(vx):
        raise ValueError("the model's config holds out no validation digits (val_digits=0)")
    cal = fit_calibration(model, validation_data(vx, vy, cfg), vy, cfg)
    cal.save(sidecar_path(model_path))  # atomic: written to a temp file, then renamed
    return cal


def lr_schedule(cfg: Config, steps_per_epoch: int):
    """Linear warmup to cfg.learning_rate, then cosine decay to ~0 at the last step
    (the cosine schedule); or cfg.learning_rate throughout (constant)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate  # the seed recipe: the reference used Adam's constant rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate / 10 if warmup else cfg.learning_rate,
        decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)


class _RunRecorder(keras.callbacks.Callback):
    """Writes history, status and the best model; handles time limit and cancel."""

    def __init__(self, run_dir: Path, cfg: Config, steps: int, cancel: threading.Event,
                 progress: Callable[[Progress], None] | None, keep: str = "best"):
        super().__init__()
        self.run_dir, self.cfg, self.steps, self.keep = run_dir, cfg, steps, keep
        self.cancel, self.progress = cancel, progress
        self.history: dict[str, list] = {}
        self.best = math.inf
        self.cancelled = False
        self.epoch = 0
        self._last_report = 0.0
        self.t0 = time.perf_counter()  # reset in on_train_begin; set here for early failures

    # -- helpers -----------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def eta(self, step: int) -> float | None:
        done = self.epoch * self.steps + step
        total = self.cfg.epochs * self.steps
        if done == 0:
            return None
        eta = self.elapsed() / done * (total - done)
        if self.cfg.time_limit_s:
            eta = min(eta, max(0.0, self.cfg.time_limit_s - self.elapsed()))
        return eta

    def write_status(self, state: str, step: int = 0, **extra) -> None:
        atomic_write_json(self.run_dir / runs.STATUS, {
            "state": state, "pid": os.getpid(), "start_ticks": runs.start_ticks(os.getpid()),
            "epoch": self.epoch + 1, "epochs": self.cfg.epochs,
            "step": step, "steps": self.steps, "elapsed_s": round(self.elapsed(), 2),
            "eta_s": None if state != "running" else self.eta(step),
            "updated": time.time(), **extra})

    def should_stop(self) -> bool:
        if self.cancel.is_set() or (self.run_dir / runs.CANCEL).exists():
            self.cancelled = True
            return True
        return bool(self.cfg.time_limit_s) and self.elapsed() >= self.cfg.time_limit_s

    # -- Keras hooks -------------------------------------------------------
    def on_train_begin(self, logs=None):
        self.t0 = time.perf_counter()
        self.write_status("running")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if self.should_stop():
            self.model.stop_training = True
        now = time.perf_counter()
        if now - self._last_report >= 0.5 or step == self.steps:
            self._last_report = now
            self.write_status("running", step)
            if self.progress:
                self.progress(Progress(self.epoch + 1, self.cfg.epochs, step, self.steps,
                                       self.elapsed(), self.eta(step), dict(logs or {})))

    def on_test_batch_end(self, batch, logs=None):
        if self.cancelled:  # Cancel should be quick: don't validate a partial epoch
            self.model.stop_evaluating = True

    def on_epoch_end(self, epoch, logs=None):
        if self.cancelled:
            return  # a cancelled partial epoch is neither history nor a "best" model
        logs = dict(logs or {})
        logs["elapsed_s"] = self.elapsed()
        logs["epoch"] = epoch + 1
        logs.pop("learning_rate", None)
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate))
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))
        atomic_write_json(self.run_dir / runs.HISTORY, self.history)
        monitor = logs.get("val_loss", logs.get("loss", math.inf))
        if monitor < self.best or self.keep == "last":
            self.best = monitor
            atomic_write(self.run_dir / runs.MODEL, self.model.save, suffix=".keras")
        self.write_status("running", self.steps)
        if self.progress:
            self.progress(Progress(epoch + 1, self.cfg.epochs, self.steps, self.steps,
                                   self.elapsed(), self.eta(self.steps), logs,
                                   history=dict(self.history)))


def open_run_dir(out_dir: str | os.PathLike) -> Path:
    """Create (or reuse) a run directory, checked writable."""
    run_dir = Path(out_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to run directory {run_dir}: {e.strerror or e}") from e
    return run_dir


def clear_run_dir(run_dir: Path) -> None:
    """Remove a stale cancel request and temp files (call it holding the run's lock)."""
    (run_dir / runs.CANCEL).unlink(missing_ok=True)
    for stray in run_dir.glob(".*.tmp*"):  # left by a process killed mid-write
        stray.unlink(missing_ok=True)


@contextmanager
def run_directory(out_dir: str | os.PathLike, cfg) -> Iterator[Path]:
    """``out_dir`` as a training's run directory for the ``with`` block: created and
    checked writable, locked (two trainings in one directory would destroy each other's
    files: RunBusy), cleared of a stale cancel request and temp files, ``cfg`` saved in
    it and the random seeds set from it. Every trainer starts here."""
    run_dir = open_run_dir(out_dir)
    with runs.run_dir_lock(run_dir):
        clear_run_dir(run_dir)
        cfg.save(run_dir / runs.CONFIG)
        keras.utils.set_random_seed(cfg.seed)
        yield run_dir


def build_training_state(model: keras.Model, data: tf.data.Dataset, strategy=None) -> None:
    """Create the optimizer's, losses' and metrics' variables before ``model.fit`` traces
    its training step, from the dataset's element spec (nothing is computed). Left to the
    first trace, their creation makes TensorFlow trace the whole step twice: about 3 s of
    a 40 s ``quick`` run on 2 cores. Keras builds this way itself when the model was made
    under a distribution strategy; under the default one it defers, for compatibility."""
    build = getattr(model, "_symbolic_build", None)  # Keras 3's own pre-build
    if build is not None:
        with (strategy or tf.distribute.get_strategy()).scope():
            build(data_batch=data.element_spec)


def fit_run(run_dir: Path, cfg: Config, model: keras.Model,
            make_data: Callable[[], tf.data.Dataset], steps: int, val_data, val_labels,
            progress: Callable[[Progress], None] | None = None,
            cancel: threading.Event | None = None, callbacks: list | None = None,
            strategy=None, keep: str = "best",
            evaluate: Callable[[keras.Model], dict] | None = None) -> TrainResult:
    """Train the compiled ``model`` on ``make_data()`` (built inside the fit, so that its
    failure is the run's) for ``cfg.epochs`` x ``steps``, validating on ``val_data``
    (None: none) and recording the run in ``run_dir`` (``_RunRecorder``: history,
    status, the ``keep`` model, time limit, cancel); then ``fit_and_finish``, with the
    calibration fitted on the validation data (``val_labels``: its digits' labels) and
    ``evaluate``. ``strategy``: the ``tf.distribute.Strategy`` the model was built under."""
    strategy = strategy or tf.distribute.get_strategy()
    recorder = _RunRecorder(run_dir, cfg, steps, cancel or threading.Event(), progress, keep)

    def run_fit():
        data, all_callbacks = make_data(), [recorder, *(callbacks or [])]
        if needs_own_loop(strategy):  # Keras 3's fit cannot run it (see locmnist.distribute)
            fit(model, data, cfg.epochs, steps, strategy, validation_data=val_data,
                validation_batch_size=500, callbacks=all_callbacks)
        else:
            build_training_state(model, data, strategy)
            model.fit(data, epochs=cfg.epochs, steps_per_epoch=steps, validation_data=val_data,
                      validation_batch_size=500, callbacks=all_callbacks, shuffle=False,
                      verbose=0)

    def calibrate(best):
        if val_data is not None:
            fit_calibration(best, val_data, val_labels, cfg).save(run_dir / runs.CALIBRATION)

    return fit_and_finish(recorder, run_fit, evaluate=evaluate, calibrate=calibrate)


def train(cfg: Config, out_dir: str | os.PathLike, callbacks: list | None = None,
          progress: Callable[[Progress], None] | None = None,
          cancel: threading.Event | None = None, mnist_path: str | None = None,
          evaluate_test: bool = True, strategy=None, extra: tuple | None = None,
          extra_share: float = 0.05) -> TrainResult:
    """Train a model for ``cfg`` into ``out_dir`` (created; existing files replaced).

    ``strategy``: a ``tf.distribute.Strategy`` (see ``locmnist.distribute``);
    ``cfg.batch_size`` is per replica, so the global batch grows with replicas.
    ``extra``: (digits (M, 28, 28) uint8, labels) mixed into the training digits as
    ``extra_share`` of them (see ``mix_in``). ``evaluate_test``: score the best model
    on the published test split into ``metrics.json``. Fine-tuning a model is
    ``locmnist.finetune``, from the same parts.
    """
    with run_directory(out_dir, cfg) as run_dir:
        mnist = load_mnist(mnist_path)
        tx, ty, vx, vy = split_digits(cfg, mnist)
        tx, ty = add_style_variants(tx, ty, cfg)
        tx, ty = mix_in(tx, ty, extra, extra_share)
        strategy = strategy or tf.distribute.get_strategy()
        global_batch = cfg.batch_size * strategy.num_replicas_in_sync
        steps = max(1, len(tx) // global_batch)
        if len(tx) < global_batch:
            raise ValueError(f"{len(tx)} training digits is fewer than one batch of "
                             f"{global_batch}")
        if evaluate_test:
            # Build the test split now, before training's own memory: it stays cached as
            # uint8 (56 MB) for the final evaluation.
            from locmnist.synthesis import test_split

            test_split(cfg.data, mnist_path)
        with strategy.scope():  # variables must be created where the strategy places them
            model = compile_model(build_model(cfg), cfg, lr_schedule(cfg, steps))
        val_data = validation_data(vx, vy, cfg) if len(vx) else None

        def evaluate_published(best):
            from locmnist.evaluation import evaluate_model
            from locmnist.inference import Predictor

            # Predictor.load(run_dir), not ``best``: it reads the calibration saved before
            # this. No TFLite copy: evaluation runs batches, and converting a new model at
            # the end of training raised the run's peak memory by ~300 MB.
            return evaluate_model(Predictor.load(run_dir, tflite=False), data=cfg.data,
                                  mnist_path=mnist_path)

        return fit_run(run_dir, cfg, model,
                       lambda: shard(make_dataset(tx, ty, cfg.replace(batch_size=global_batch))),
                       steps, val_data, vy, progress, cancel, callbacks, strategy,
                       evaluate=evaluate_published if evaluate_test else None)


def fit_and_finish(recorder: _RunRecorder, run_fit: Callable[[], None],
                   evaluate: Callable[[keras.Model], dict] | None = None,
                   calibrate: Callable[[keras.Model], None] | None = None) -> TrainResult:
    """Everything after the model and data are ready, the same for every trainer.

    ``run_fit()`` trains with ``recorder`` among its callbacks. If it raises, the failure
    goes to status.json and the error is re-raised; if that status write fails too (a
    full disk), the error that stopped training is still the one raised. Then the best
    checkpoint is re-saved without optimizer state, ``calibrate(best)`` runs, and unless
    the run was cancelled ``evaluate(best)`` (None: no evaluation) becomes metrics.json,
    with ``train_seconds`` added. Every file goes through ``atomic_write*``.
    """
    try:
        run_fit()
    except BaseException as e:
        try:
            recorder.write_status("failed", error=f"{type(e).__name__}: {e}")
        except OSError:
            pass  # a full disk: the error that stopped training is the one to report
        raise

    run_dir, steps = recorder.run_dir, recorder.steps
    model_path = run_dir / runs.MODEL
    status = "cancelled" if recorder.cancelled else "completed"
    metrics = None
    if model_path.exists():
        # Checkpoints carry Adam's two moment tensors (3x the weights); the kept model is
        # for inference, so re-save it without them (the localizer: 3.5 MB, not 10.5 MB).
        best = keras.models.load_model(model_path, compile=False)
        atomic_write(model_path, best.save, suffix=".keras")
        if calibrate is not None:
            calibrate(best)
        if evaluate is not None and not recorder.cancelled:
            recorder.write_status("evaluating", steps)
            metrics = evaluate(best)
            metrics["train_seconds"] = recorder.history.get("elapsed_s", [0])[-1]
            atomic_write_json(run_dir / runs.METRICS, metrics)
    recorder.write_status(status, steps, has_model=model_path.exists())
    return TrainResult(run_dir, status, recorder.history, metrics,
                       model_path if model_path.exists() else None)

