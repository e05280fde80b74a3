"""Many users at once: one shared Predictor answering 8 threads (as Streamlit
sessions share a cached one), and 8 simultaneous "Start training" clicks."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from locmnist import jobs, runs
from locmnist.files import read_json
from tests.campaigns import ROUNDS, THREADS, concurrent_predictions, corpus_inputs
from tests.corpus import load_predictor


@pytest.fixture(scope="module")
def predictor():
    return load_predictor()[0]


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
