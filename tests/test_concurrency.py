"""Many users at once: one shared Predictor answering 8 threads (as Streamlit
sessions share a cached one), and 8 simultaneous "Start training" clicks."""
from __future__ import annotations

import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hostile_inputs import CORPUS, load_predictor  # noqa: E402  (the same corpus)

from locmnist import jobs, runs  # noqa: E402
from locmnist.files import read_json  # noqa: E402
from locmnist.preprocess import InvalidImage  # noqa: E402

THREADS = 8
ROUNDS = 3   # each thread predicts every input this many times, in its own order


def answer(predictor, data):
    """A comparable summary of one outcome."""
    try:
        p = predictor.predict(data)
    except InvalidImage as e:
        return ("invalid", str(e))
    return ("prediction", p.label, np.array(p.probabilities),
            None if p.box is None else np.array(p.box))


def same(a, b) -> bool:
    """Equal outcomes; numbers equal up to float noise."""
    if a[0] != b[0] or a[1] != b[1]:   # kind, then the message or the label
        return False
    if a[0] == "invalid":
        return True
    boxes_equal = (a[3] is None and b[3] is None) or (
        a[3] is not None and b[3] is not None and np.allclose(a[3], b[3], atol=1e-3))
    return bool(np.allclose(a[2], b[2], atol=1e-6)) and boxes_equal


def concurrent_predictions(predictor, inputs: list[bytes], threads: int = THREADS,
                           rounds: int = ROUNDS) -> dict:
    """Serial answers, then ``threads`` threads predicting all inputs at once through
    the same predictor; returns counts of calls, errors and mismatches."""
    serial = [answer(predictor, x) for x in inputs]
    start = threading.Barrier(threads)
    errors, mismatches, calls = [], [], [0]
    lock = threading.Lock()

    def worker(seed: int):
        order = [i for _ in range(rounds) for i in range(len(inputs))]
        random.Random(seed).shuffle(order)
        start.wait()
        for i in order:
            try:
                got = answer(predictor, inputs[i])
            except Exception as e:  # anything but InvalidImage is a failure
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                calls[0] += 1
                if not same(got, serial[i]):
                    mismatches.append((i, got, serial[i]))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return {"threads": threads, "calls": calls[0], "errors": errors,
            "mismatches": mismatches, "seconds": time.perf_counter() - t0}


@pytest.fixture(scope="module")
def predictor():
    return load_predictor()[0]


def corpus_inputs() -> list[bytes]:
    """Good, blank and invalid inputs mixed (small ones: the point is contention)."""
    keep = ("PNG grey, dark on white", "JPEG RGB", "PNG ink only in alpha", "TIFF", "WebP",
            "JPEG EXIF orientation 6", "all white", "faint noise", "empty file",
            "truncated PNG", "PNG bomb 40000x40000 header", "random bytes")
    by_name = {c.name: c for c in CORPUS}
    return [by_name[name].build()[0] for name in keep]


def test_eight_threads_match_serial_answers(predictor):
    result = concurrent_predictions(predictor, corpus_inputs())
    assert result["errors"] == []
    assert result["mismatches"] == []
    assert result["calls"] == THREADS * ROUNDS * len(corpus_inputs())


def test_eight_threads_batch_api(predictor):
    """predict_canvas (the evaluation path) from many threads, different batch sizes."""
    rng = np.random.default_rng(0)
    batches = [rng.random((n, 75, 75, 1), dtype=np.float32) for n in (1, 3, 8, 17)]
    serial = [predictor.predict_canvas(b) for b in batches]

    def check(i):
        probs, boxes = predictor.predict_canvas(batches[i % len(batches)])
        ref = serial[i % len(batches)]
        return np.allclose(probs, ref[0], atol=1e-5) and np.allclose(boxes, ref[1], atol=1e-5)

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(check, range(THREADS * 4)))


def test_simultaneous_start_clicks_launch_one_training(tmp_path, monkeypatch):
    """8 sessions press Start at the same instant: one training starts, the other 7
    are told one is already running; cancelling it frees the lock."""
    monkeypatch.delenv("LOCMNIST_TRAIN_OVERRIDES", raising=False)
    root = tmp_path / "runs"
    start = threading.Barrier(THREADS)

    def click(_):
        start.wait()
        try:
            return jobs.start_training("quick", root=root, epochs=1, train_digits=512,
                                       batch_size=64)
        except jobs.TrainingBusy as e:
            return e

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(click, range(THREADS)))
    started = [r for r in results if isinstance(r, str)]
    busy = [r for r in results if isinstance(r, jobs.TrainingBusy)]
    assert len(started) == 1 and len(busy) == THREADS - 1, results
    run_dir = root / started[0]
    assert jobs.active_run_id(root) == started[0]

    jobs.cancel(run_dir, grace_s=20)
    pid = (read_json(run_dir / runs.JOB) or {})["pid"]
    deadline = time.monotonic() + 60
    while runs.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not runs.pid_alive(pid), "the cancelled training is still running"
    assert jobs.active_run_id(root) is None
    assert len([d for d in root.iterdir() if d.is_dir()]) == 1
