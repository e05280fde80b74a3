"""The measurements behind ``python -m bench``, each run in its own process.

A fresh process per probe keeps them apart (threads, XLA caches, memory) and
lets the parent read each one's peak memory. Run as
``python -m bench.probes PROBE '{json params}'``; the last stdout line
is ``RESULT {json}``, progress goes to stderr.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

RESULT_PREFIX = "RESULT "
LATENCY_WARMUP = 20


def reset_peak_rss() -> bool:
    """Restart VmHWM from the current RSS (Linux >= 4.0), so set-up is not counted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- time to accuracy ---------------------------------------------------------

def train_curve(preset: str, budget_s: float, overrides: dict, eval_splits: list,
                eval_limit: int, out_dir: str) -> dict:
    """Train a preset; after each epoch, score the model on the full test split(s).

    The training clock excludes those evaluations (the run is paused for them);
    training stops at the end of the first batch past ``budget_s`` of training.
    Validation on held-out digits, which the recipes include, stays on the clock.
    """
    import keras

    from locmnist.config import preset as make_preset
    from locmnist.evaluation import predict_batches, score
    from locmnist.synthesis import test_split
    from locmnist.training import train

    cfg = make_preset(preset, **overrides)
    # Our clock replaces the preset's own time limit, which would count evaluations.
    budget_s = min(budget_s, cfg.time_limit_s or budget_s)
    cfg = cfg.replace(time_limit_s=0.0)
    splits = {}
    for name in eval_splits:  # synthesized before training: not on either clock
        canvases, boxes, labels = test_split(name)
        n = eval_limit or len(labels)
        splits[name] = (canvases[:n], boxes[:n], labels[:n])

    class TestCurve(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.curve, self.eval_s, self.stopped_by_budget = [], 0.0, False
            self.eval_cpu_s = 0.0

        def train_seconds(self) -> float:
            return time.perf_counter() - self.t0 - self.eval_s

        def train_cpu_seconds(self) -> float:
            return time.process_time() - self.cpu0 - self.eval_cpu_s

        def on_train_begin(self, logs=None):
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            if self.train_seconds() >= budget_s:
                self.stopped_by_budget = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            train_s = self.train_seconds()
            start, cpu_start = time.perf_counter(), time.process_time()
            point = {"epoch": epoch + 1, "train_s": round(train_s, 2),
                     "train_cpu_s": round(self.train_cpu_seconds(), 2)}
            for name, (canvases, boxes, labels) in splits.items():
                probs, pred = predict_batches(self.model, canvases)
                m = score(probs, pred, labels, boxes)
                point[name] = {k: round(m[k], 5) for k in
                               ("accuracy", "iou_mean", "iou_ge_0.5", "iou_ge_0.6")}
            self.eval_s += time.perf_counter() - start
            self.eval_cpu_s += time.process_time() - cpu_start
            self.curve.append(point)
            _log(f"bench {preset}: epoch {epoch + 1} at {train_s:.0f}s of training: "
                 + ", ".join(f"{k} acc {v['accuracy']:.4f}" for k, v in point.items()
                             if isinstance(v, dict)))

    gc.collect()
    rss_reset = reset_peak_rss()  # count training (plus the test arrays kept), not set-up
    curve = TestCurve()
    result = train(cfg, out_dir, callbacks=[curve], evaluate_test=False)
    return {"preset": preset, "data": cfg.data, "arch": cfg.arch, "budget_s": budget_s,
            "epochs_planned": cfg.epochs, "epochs_done": len(curve.curve),
            "stopped_by_budget": curve.stopped_by_budget, "status": result.status,
            "eval_n": {k: int(len(v[2])) for k, v in splits.items()},
            "eval_s_total": round(curve.eval_s, 2), "curve": curve.curve,
            "peak_rss_counts_from": "training start" if rss_reset else "process start"}


def detector_curve(preset: str, overrides: dict, out_dir: str, eval_limit: int = 0,
                   every: int = 1) -> dict:
    """Train a detector preset; after each epoch, score the detector on the detection
    test split (pycocotools mAP@0.5 and mAP@0.5:0.95, the detector's own boxes).

    The training clock excludes those evaluations, as ``train_curve``'s does; the
    recipe's own validation mAP stays on it. The preset's time limit stays its safety
    cap (both detector presets are a fixed amount of work). ``every``: score every Nth
    epoch and the last one (each scoring takes about as long as an epoch of detect-quick).
    """
    import keras

    from locmnist.detection_eval import coco_map
    from locmnist.detector_config import detector_preset
    from locmnist.detector_training import train_detector
    from locmnist.reader import Reader
    from locmnist.scenes import detection_test_split, subset

    cfg = detector_preset(preset, **overrides)
    scenes = detection_test_split()  # built before training: on no clock
    if eval_limit and eval_limit < len(scenes):
        scenes = subset(scenes, np.linspace(0, len(scenes) - 1, eval_limit).round().astype(int))

    class TestCurve(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.curve, self.eval_s, self.eval_cpu_s = [], 0.0, 0.0

        def on_train_begin(self, logs=None):
            self.t0, self.cpu0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            train_s = time.perf_counter() - self.t0 - self.eval_s
            train_cpu_s = time.process_time() - self.cpu0 - self.eval_cpu_s
            if (epoch + 1) % every and epoch + 1 < cfg.epochs and not self.model.stop_training:
                return
            start, cpu_start = time.perf_counter(), time.process_time()
            m = coco_map(scenes, Reader(self.model, cfg).detect_canvases(scenes.canvases,
                                                                         threshold=0.05))
            self.eval_s += time.perf_counter() - start
            self.eval_cpu_s += time.process_time() - cpu_start
            # CPU seconds (all threads) move less than wall seconds when other jobs share
            # the machine; the reference epoch records its own (epoch_cpu_s).
            self.curve.append({"epoch": epoch + 1, "train_s": round(train_s, 2),
                               "train_cpu_s": round(train_cpu_s, 2),
                               "map50": round(m["map50"], 4), "map": round(m["map"], 4)})
            _log(f"bench {preset}: epoch {epoch + 1} at {train_s:.0f}s of training: "
                 f"test mAP@0.5 {m['map50']:.4f}, mAP@0.5:0.95 {m['map']:.4f}")

    gc.collect()
    rss_reset = reset_peak_rss()
    curve = TestCurve()
    result = train_detector(cfg, out_dir, callbacks=[curve], evaluate_test=False)
    return {"preset": preset, "kind": "detector", "epochs_planned": cfg.epochs,
            "epochs_done": len(result.history.get("epoch", [])), "eval_every": every,
            "canvases_per_epoch": cfg.canvases_per_epoch, "status": result.status,
            "eval_n": len(scenes), "eval_s_total": round(curve.eval_s, 2), "curve": curve.curve,
            "peak_rss_counts_from": "training start" if rss_reset else "process start"}


# --- E: one epoch of the reference recipe -------------------------------------

class _EpochClock:
    """Seconds of each epoch (a Keras callback, built lazily to import Keras late)."""

    @staticmethod
    def make():
        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.epoch_s, self.epoch_cpu_s, self.steps = [], [], 0

            def on_epoch_begin(self, epoch, logs=None):
                self.t0, self.cpu0 = time.perf_counter(), time.process_time()

            def on_train_batch_end(self, batch, logs=None):
                self.steps += 1

            def on_epoch_end(self, epoch, logs=None):
                self.epoch_s.append(round(time.perf_counter() - self.t0, 3))
                self.epoch_cpu_s.append(round(time.process_time() - self.cpu0, 3))

        return Clock()


def reference_epoch(epochs: int, overrides: dict) -> dict:
    """E: train the reference recipe (``--preset seed``: its CNN, 60k digits, batch
    512) for ``epochs`` epochs; E is the last epoch's seconds (the first one also
    traces the graphs). ``overrides`` are for the bench's own tests only."""
    import tempfile

    from locmnist.config import preset
    from locmnist.training import train

    cfg = preset("seed", epochs=epochs, **{k: v for k, v in overrides.items()
                                           if k in ("train_digits", "val_digits")})
    clock = _EpochClock.make()
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, callbacks=[clock], evaluate_test=False)
    # CPU seconds (all threads) are less sensitive to other load than wall seconds.
    return {"E_s": clock.epoch_s[-1], "epoch_s": clock.epoch_s, "epoch_cpu_s": clock.epoch_cpu_s,
            "digits": cfg.train_digits or 60_000, "batch_size": cfg.batch_size,
            "steps_per_epoch": clock.steps // max(1, len(clock.epoch_s))}


# --- the quick preset as users run it, and on a slower machine ----------------

def train_process(preset: str, overrides: dict, out_dir: str) -> dict:
    """Time the whole ``python -m locmnist train --preset P`` process (start-up,
    training and its final test-split evaluation), as a user runs it."""
    import resource
    import subprocess

    cmd = [sys.executable, "-m", "locmnist", "train", "--preset", preset, "--out", out_dir,
           "--no-progress"]
    import dataclasses

    from locmnist.config import Config, flag

    fields = {f.name: f for f in dataclasses.fields(Config)}
    for key, value in overrides.items():  # every config field has its train flag
        value = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        cmd += [flag(fields[key]), value]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"train exited {proc.returncode}: {proc.stderr[-500:]}")
    metrics = json.loads(open(os.path.join(out_dir, "metrics.json")).read())
    history = json.loads(open(os.path.join(out_dir, "history.json")).read())
    return {"preset": preset, "command": " ".join(cmd[1:4] + cmd[4:5]), "wall_s": round(wall_s, 2),
            "train_s": round(history["elapsed_s"][-1], 2), "epochs_done": len(history["epoch"]),
            "accuracy": metrics["accuracy"], "iou_mean": round(metrics["iou_mean"], 5),
            "iou_ge_0.5": metrics["iou_ge_0.5"],
            "train_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                                       / 1024, 1)}


def slow_train(preset: str, slowdown: float, overrides: dict, eval_limit: int,
               out_dir: str) -> dict:
    """Train ``preset`` on a simulated slower machine: after every training step, sleep
    (slowdown - 1) times that step's duration, on the same clock as the preset's own
    time limit. Then score the model on the test split. (The input pipeline is not
    slowed, only the steps, which are where a slower machine spends its time.)"""
    import keras

    from locmnist.config import preset as make_preset
    from locmnist.evaluation import evaluate_model
    from locmnist.training import train

    class Slower(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps, self.slept_s = 0, 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            pause = (slowdown - 1) * (time.perf_counter() - self.t0)
            time.sleep(pause)
            self.slept_s += pause

    cfg = make_preset(preset, **overrides)
    slower = Slower()
    result = train(cfg, out_dir, callbacks=[slower], evaluate_test=False)
    m = evaluate_model(keras.models.load_model(result.model_path, compile=False),
                       limit=eval_limit or None)
    digits = cfg.train_digits or 60_000 - cfg.val_digits
    planned = cfg.epochs * (digits // cfg.batch_size)
    return {"preset": preset, "slowdown": slowdown, "time_limit_s": cfg.time_limit_s,
            "status": result.status, "epochs_planned": cfg.epochs,
            "epochs_done": len(result.history["epoch"]), "steps_done": slower.steps,
            "steps_planned": planned, "train_s": round(result.history["elapsed_s"][-1], 2),
            "slept_s": round(slower.slept_s, 2), "accuracy": m["accuracy"],
            "iou_mean": round(m["iou_mean"], 5), "iou_ge_0.5": m["iou_ge_0.5"], "n": m["n"]}


# --- single-image latency -----------------------------------------------------

def _interleaved(fns: dict, runs: int, warmup: int = LATENCY_WARMUP) -> dict:
    """{name: {p50_ms, p95_ms, runs}} of several calls taking turns, one of each per round
    (after ``warmup`` rounds): a change of load on a shared machine hits every call alike,
    so their ratios hold."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - start) * 1000)
    return {k: {"p50_ms": round(float(np.percentile(v, 50)), 4),
                "p95_ms": round(float(np.percentile(v, 95)), 4), "runs": runs}
            for k, v in times.items()}


def _timed(fn, runs: int, warmup: int = LATENCY_WARMUP) -> dict:
    """{p50_ms, p95_ms, runs} of one call (``_interleaved`` with a single call)."""
    return _interleaved({"call": fn}, runs, warmup)["call"]


def _model_latency(predictor, image: np.ndarray, canvas: np.ndarray, runs: int) -> dict:
    """``predictor`` comes from ``Predictor.load``, as users get it."""
    from locmnist.serving import tflite_bytes
    from locmnist.tflite_runtime import TFLitePredictor

    model = predictor.model
    lite = TFLitePredictor(tflite_bytes(model))
    slow_runs = max(5, min(runs, 60))  # model.predict is tens of ms a call
    return {
        "predictor_predict": _timed(lambda: predictor.predict(image), runs),
        "predictor_forward_only": _timed(lambda: predictor.predict_canvas(canvas), runs),
        "model_predict": _timed(lambda: model.predict(canvas, verbose=0), slow_runs, warmup=3),
        "eager_call": _timed(lambda: model(canvas, training=False), runs, warmup=3),
        "tflite_predict": _timed(lambda: lite.predict(image), runs),
        "tflite_forward_only": _timed(lambda: lite.predict_canvas(canvas), runs),
    }


def latency(model_path: str | None, runs: int) -> dict:
    """Single-image latency of our model and of the reference CNN (untrained: its
    weights do not change its speed). The image is what the app's canvas sends:
    a 280x280 RGBA drawing (``locmnist.wild.drawn``); ``model.predict`` and the
    forward-only paths get the ready (1, 75, 75, 1) canvas."""
    from locmnist.config import preset
    from locmnist.inference import Predictor
    from locmnist.model import build_model
    from locmnist.preprocess import prepare
    from locmnist.wild import drawn

    image = np.asarray(drawn(7, np.random.default_rng(0)).image)  # (280, 280, 4) uint8
    canvas = prepare(image).model_input[None, :, :, None]          # (1, 75, 75, 1) float32
    import tempfile

    ours = Predictor.load(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference.keras"
        build_model(preset("seed")).save(reference)
        reference = Predictor.load(reference)
    return {"model": ours.source, "image_shape": list(image.shape),
            "single_image_runtime": type(ours._single).__name__ if ours._single else "tensorflow",
            "ours": _model_latency(ours, image, canvas, runs),
            "reference_cnn": _model_latency(reference, image, canvas, runs)}


# Not the seed the reader's TARGET_HEIGHT was chosen on (123): these numbers are held out.
DRAWN_NUMBERS_SEED = 1


def number_drawing(digits: str, rng) -> np.ndarray:
    """A 560x280 RGBA drawing of a number, as the app's wide canvas sends it: the
    drawn digits of ``locmnist.wild``, side by side at 140 px."""
    from PIL import Image

    from locmnist.wild import drawn

    img = Image.new("RGBA", (560, 280), (0, 0, 0, 0))
    for k, d in enumerate(digits):
        one = drawn(int(d), rng).image
        # Half of the drawn digits are white ink on an opaque black canvas (alpha 255
        # everywhere): their ink is the luminance; the others' ink is the alpha.
        ink = one.convert("L") if one.getextrema()[3][0] == 255 else one.getchannel("A")
        img.paste(Image.new("RGBA", (140, 140), (20, 20, 20, 255)), (k * 140, 70),
                  ink.resize((140, 140), Image.BOX))
    return np.asarray(img)


def drawn_numbers(reader, n: int, seed: int = DRAWN_NUMBERS_SEED) -> dict:
    """How many of ``n`` drawn numbers of 2-4 digits (``number_drawing``: the mouse-style
    digits of ``locmnist.wild``, each its own size, as people draw them) ``read`` gets
    exactly right, and the first misreadings."""
    rng = np.random.default_rng(seed)
    texts = ["".join(str(d) for d in rng.integers(0, 10, rng.integers(2, 5))) for _ in range(n)]
    got = [reader.read(number_drawing(t, rng)).text for t in texts]
    wrong = [(t, g) for t, g in zip(texts, got) if t != g]
    return {"numbers": n, "right": n - len(wrong), "seed": seed, "misread": wrong[:10]}


def reader_latency(model_path: str | None, detector_path: str | None, runs: int,
                   numbers: int = 200) -> dict:
    """``Reader.read`` on a 560x280 drawing of "2026" against ``Predictor.predict`` on a
    280x280 drawing of one digit, end to end, in the same process, taking turns
    (``_interleaved``; issue 10's target: the reader's p50 within 4x of the predictor's);
    and ``drawn_numbers`` (``numbers`` of them), what that speed reads."""
    from locmnist.inference import Predictor
    from locmnist.reader import Reader
    from locmnist.wild import drawn

    rng = np.random.default_rng(0)
    one = np.asarray(drawn(7, rng).image)                          # (280, 280, 4)
    number = number_drawing("2026", rng)                           # (280, 560, 4)
    predictor = Predictor.load(model_path)
    # As ``predict`` does: a named model serves both, else the reader has its own.
    reader = Reader.load(detector_path, classifier=predictor if model_path else "default")
    t = _interleaved({"predict": lambda: predictor.predict(one),
                      "read": lambda: reader.read(number)}, runs)
    p, r = t["predict"], t["read"]
    return {"detector": reader.source, "text": reader.read(number).text,
            "predictor_predict_280": p, "reader_read_560x280": r,
            "ratio_p50": round(r["p50_ms"] / p["p50_ms"], 2),
            "drawn_numbers": drawn_numbers(reader, numbers)}


def reader_stages(model_path: str | None, detector_path: str | None, runs: int) -> dict:
    """Where ``Reader.read``'s time goes on ``reader_latency``'s drawing: p50 ms of each
    stage, and of ``read`` and ``predict`` whole (``_interleaved``). Not part of
    ``python -m bench``."""
    from locmnist.decoding import decode_batch
    from locmnist.detector import pad16
    from locmnist.inference import Predictor
    from locmnist.preprocess import ink_image
    from locmnist.reader import AGNOSTIC_IOU, Reader, frame_ink
    from locmnist.wild import drawn

    rng = np.random.default_rng(0)
    one = np.asarray(drawn(7, rng).image)                          # as reader_latency
    number = number_drawing("2026", rng)
    predictor = Predictor.load(model_path)
    # As ``predict`` does: a named model serves both, else the reader has its own.
    reader = Reader.load(detector_path, classifier=predictor if model_path else "default")
    detector = reader._single or reader.raw_outputs    # what ``read`` runs
    ink = ink_image(number)[0]                                     # (280, 560)
    x = frame_ink(ink)[0]                                          # (h, w) detector input
    maps = detector(pad16(x[None, ..., None]))
    candidates = dict(threshold=reader.candidate_threshold, top_k=reader.config.top_k,
                      agnostic_iou=AGNOSTIC_IOU)
    det = decode_batch(maps, **candidates)[0]
    stages = {"ink_map": lambda: ink_image(number), "frame_ink": lambda: frame_ink(ink),
              "detector": lambda: detector(pad16(x[None, ..., None])),
              "decode": lambda: decode_batch(maps, **candidates),
              "closer_look": lambda: reader.closer_look(x, det),
              "read": lambda: reader.read(number), "predict": lambda: predictor.predict(one)}
    p50 = {k: v["p50_ms"] for k, v in _interleaved(stages, runs, LATENCY_WARMUP // 4).items()}
    return {"detector_input": list(pad16(x[None, ..., None]).shape[1:3]),
            "detector_runtime": "tflite" if reader._single else "tensorflow",
            "candidates": len(det), "text": reader.read(number).text, "p50_ms": p50,
            "ratio_p50": round(p50["read"] / p50["predict"], 2), "runs": runs}


# --- throughput and memory ----------------------------------------------------

def synthesis(one_core: bool, seconds: float) -> dict:
    """Canvases per second for both data modes: direct ``synthesize`` calls on
    batches of 1000 digits, and the training input pipeline (batches of 128)."""
    import tensorflow as tf

    if one_core:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from locmnist.config import preset
    from locmnist.data import load_mnist
    from locmnist.synthesis import synthesize
    from locmnist.training import make_dataset

    mnist = load_mnist()
    digits = mnist.x_train[:1000]

    def rate(step, per_step: int) -> float:
        step()  # trace / warm up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            n += per_step
        return n / (time.perf_counter() - start)

    result = {"one_core": one_core, "cpus": len(os.sched_getaffinity(0))}
    for data in ("standard", "seed"):
        cfg = preset("default", data=data)
        counter = iter(range(10**9))
        direct = rate(lambda: synthesize(digits, (0, next(counter)), cfg)[0].numpy(),
                      len(digits))
        ds = make_dataset(mnist.x_train[:20000], mnist.y_train[:20000], cfg)
        if one_core:
            options = tf.data.Options()
            options.threading.private_threadpool_size = 1
            ds = ds.with_options(options)
        it = iter(ds)
        pipeline = rate(lambda: next(it), cfg.batch_size)
        result[data] = {"direct_canvases_per_s": round(direct),
                        "pipeline_canvases_per_s": round(pipeline)}
    return result


def predict_memory(model_path: str | None, images: int) -> dict:
    """A process that loads the model and predicts ``images`` canvases one by one,
    as the app does (no test split held: that is evaluation, not prediction)."""
    from locmnist.config import Config
    from locmnist.data import load_mnist
    from locmnist.inference import Predictor
    from locmnist.synthesis import synthesize_numpy

    canvases = synthesize_numpy(load_mnist().x_test[:images], Config())[0]
    predictor = Predictor.load(model_path)
    for c in canvases:
        predictor.predict((c[:, :, 0] * 255).astype(np.uint8))
    return {"images": len(canvases)}


def train_throughput(jit_compile: bool, steps_per_execution: int, steps: int) -> dict:
    """Training images/s of the default model, after compilation and warm-up."""
    import keras

    from locmnist.config import preset
    from locmnist.data import load_mnist
    from locmnist.model import build_model, compile_model
    from locmnist.training import make_dataset

    cfg = preset("default", jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    mnist = load_mnist()
    model = compile_model(build_model(cfg), cfg, cfg.learning_rate)
    ds = make_dataset(mnist.x_train[:20000], mnist.y_train[:20000], cfg)
    warm = 2 * steps_per_execution
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=warm, epochs=1, verbose=0)
    first_s = time.perf_counter() - start
    timed_steps = max(steps_per_execution, steps // steps_per_execution * steps_per_execution)

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.t0

    clock = Clock()
    model.fit(ds, steps_per_epoch=timed_steps, epochs=1, verbose=0, callbacks=[clock])
    return {"jit_compile": jit_compile, "steps_per_execution": steps_per_execution,
            "steps": timed_steps, "batch_size": cfg.batch_size,
            "images_per_s": round(timed_steps * cfg.batch_size / clock.seconds, 1),
            "warmup_s": round(first_s, 2)}


PROBES = {"reference_epoch": reference_epoch, "train_process": train_process,
          "slow_train": slow_train, "train_curve": train_curve,
          "detector_curve": detector_curve, "latency": latency,
          "synthesis": synthesis, "predict_memory": predict_memory,
          "train_throughput": train_throughput, "reader_latency": reader_latency,
          "reader_stages": reader_stages}


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    probe, params = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    result = PROBES[probe](**params)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
