"""Many users at once: one shared Predictor answering 8 threads (as Streamlit
sessions share a cached one), and 8 simultaneous "Start training" clicks."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from locmnist import jobs
from tests.campaigns import (ROUNDS, THREADS, cancel_and_wait, concurrent_predictions,
                             corpus_inputs, simultaneous_start_clicks)
from tests.corpus import load_predictor


@pytest.fixture(scope="module")
def predictor():
    return load_predictor()


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
    results = simultaneous_start_clicks(root)
    started = [r for r in results if isinstance(r, str)]
    busy = [r for r in results if isinstance(r, jobs.TrainingBusy)]
    assert len(started) == 1 and len(busy) == THREADS - 1, results
    assert jobs.active_run_id(root) == started[0]

    assert cancel_and_wait(root / started[0]), "the cancelled training is still running"
    assert jobs.active_run_id(root) is None
    assert len([d for d in root.iterdir() if d.is_dir()]) == 1
