"""Fault and load campaigns shared by tests and ``scripts/reliability_report.py``:
SIGKILL/SIGTERM during ``python -m locmnist train`` (``tests/test_training_faults.py``)
many threads sharing one Predictor and many sessions pressing Start training at once
(``tests/test_concurrency.py``).

Not a test module: no tests here.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from locmnist import runs
from locmnist.preprocess import InvalidImage
from tests.corpus import CORPUS
from tests.helpers import REPO

# --- training under signals -------------------------------------------------------------

# The Train page's preset, as small as the CLI's flags make it (it has none for the
# 5,000 validation digits or the widths): SIGTERM is measured on this.
TINY_TRAIN = ["--preset", "quick", "--epochs", "3", "--train-digits", "512",
              "--batch-size", "64", "--no-progress"]
# Kills: the reference CNN without validation, so 5 runs side by side reach their
# epoch ends and model writes in seconds; 20 epochs so none finishes first.
KILL_TRAIN = ["--preset", "seed", "--epochs", "20", "--train-digits", "512",
              "--batch-size", "64", "--no-progress"]
# The campaign: 5 SIGKILLs, each when a condition on its run directory holds plus a
# random delay, and one SIGTERM (the app's Cancel), all side by side.
KILL_PLAN = [
    # (moment, ready(run_dir), max extra delay s, signal, flags)
    ("during start-up", lambda d: True, 3.0, signal.SIGKILL, KILL_TRAIN),
    ("config written", lambda d: (d / runs.CONFIG).exists(), 1.0, signal.SIGKILL, KILL_TRAIN),
    ("training steps", lambda d: read_state(d).get("step", 0) >= 1, 2.0, signal.SIGKILL, KILL_TRAIN),
    ("epoch end", lambda d: (d / runs.HISTORY).exists(), 0.5, signal.SIGKILL, KILL_TRAIN),
    ("model mid-write", lambda d: any(d.glob(f".{runs.MODEL}.*")), 0.0, signal.SIGKILL, KILL_TRAIN),
    ("cancel mid-epoch", lambda d: read_state(d).get("step", 0) >= 1, 1.0, signal.SIGTERM, TINY_TRAIN),
]


# Moments that must still hold when the signal lands: the process is frozen (SIGSTOP),
# the condition checked again, and the signal sent only if it still holds; otherwise
# the process resumes and the moment is awaited again (the next model write).
CONFIRM = {"model mid-write": lambda d: any(d.glob(f".{runs.MODEL}.*"))}


def read_state(run_dir: Path) -> dict:
    """status.json, or {} while it is missing or unreadable."""
    try:
        return json.loads((run_dir / runs.STATUS).read_text())
    except (OSError, ValueError):
        return {}


# The trainer, with each model.keras write held open for 2 s after its temp file is
# created: a poller on a loaded machine can then land its kill mid-write for sure.
SLOW_MODEL_WRITES = """
import sys, time
import locmnist.training as training
real = training.atomic_write
def held(path, write, suffix=""):
    if str(path).endswith("model.keras"):
        return real(path, lambda tmp: (time.sleep(2.0), write(tmp)), suffix)
    return real(path, write, suffix)
training.atomic_write = held
from locmnist.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def start_train(out: Path, flags=TINY_TRAIN, slow_model_writes: bool = False) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    entry = ["-c", SLOW_MODEL_WRITES] if slow_model_writes else ["-m", "locmnist"]
    return subprocess.Popen([sys.executable, *entry, "train", *flags,
                             "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_finished_run(run_dir: Path) -> Path:
    """A real, completed tiny run (in-process, a few seconds)."""
    from locmnist.config import preset
    from locmnist.training import train

    cfg = preset("quick", epochs=1, train_digits=512, val_digits=256, batch_size=64,
                 widths=(4, 8, 8, 8), dense_units=16, time_limit_s=0)
    result = train(cfg, run_dir, evaluate_test=False)
    assert result.status == "completed" and result.model_path is not None
    return run_dir


def kill_campaign(parent: Path, seed: int = 0, timeout_s: float = 300.0,
                  plan=KILL_PLAN) -> list[dict]:
    """Start one training per plan entry side by side in ``parent``, signal each when its
    moment comes, wait for all to exit; returns what happened to each."""
    rng = random.Random(seed)
    jobs = []
    for i, (name, ready, max_delay, sig, flags) in enumerate(plan):
        out = parent / f"signalled-{i}"
        proc = start_train(out, flags, slow_model_writes=name in CONFIRM)
        jobs.append({"moment": name, "signal": sig, "dir": out, "proc": proc,
                     "ready": ready, "delay": rng.uniform(0, max_delay), "t0": time.monotonic(),
                     "armed_at": None, "sent_at": None, "exited_at": None,
                     "finished_first": False, "confirmed": False})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(j["exited_at"] is None for j in jobs):
        now = time.monotonic()
        for job in jobs:
            if job["exited_at"] is not None:
                continue
            if job["proc"].poll() is not None:
                job["exited_at"] = now
                job["finished_first"] = job["sent_at"] is None
                continue
            if job["sent_at"] is None:
                if job["armed_at"] is None and job["ready"](job["dir"]):
                    job["armed_at"] = now
                if job["armed_at"] is not None and now - job["armed_at"] >= job["delay"]:
                    confirm = CONFIRM.get(job["moment"])
                    if confirm is not None:
                        job["proc"].send_signal(signal.SIGSTOP)
                        if not confirm(job["dir"]):  # too late: the write finished
                            job["proc"].send_signal(signal.SIGCONT)
                            job["armed_at"] = None
                            continue
                        job["confirmed"] = True
                    job["proc"].send_signal(job["signal"])
                    job["sent_at"] = now
        time.sleep(0.005)
    for job in jobs:
        if job["proc"].poll() is None:
            job["proc"].kill()
        _, job["stderr"] = job["proc"].communicate(timeout=30)
        job["returncode"] = job["proc"].returncode
        job["signalled_after_s"] = (None if job["sent_at"] is None
                                    else round(job["sent_at"] - job["t0"], 2))
        job["stop_s"] = (None if job["sent_at"] is None or job["exited_at"] is None
                         else job["exited_at"] - job["sent_at"])
        expected = "cancelled" if job["signal"] == signal.SIGTERM else "failed/incomplete"
        job["problems"] = check_killed_run(job["dir"], expected)
        job["stray_temp_files"] = len(list(job["dir"].glob(".*.tmp*")))
        # A killed writer leaves its temp file: proof the kill landed mid-write.
        job["model_temp_files"] = len(list(job["dir"].glob(f".{runs.MODEL}.*")))
    return jobs


def check_killed_run(run_dir: Path, expected_state: str = "failed/incomplete") -> list[str]:
    """What is wrong with a killed or cancelled run directory (empty list: all good)."""
    from locmnist.model_files import InvalidModel, load_model_file

    problems = []
    for name in (runs.CONFIG, runs.STATUS, runs.HISTORY):
        p = run_dir / name
        if p.exists():
            try:
                json.loads(p.read_text())
            except ValueError:
                problems.append(f"{name} is not valid JSON")
    history = _json_or_none(run_dir / runs.HISTORY) or {}
    if len({len(v) for v in history.values()}) > 1:
        problems.append("history.json lists have different lengths")
    if (run_dir / runs.MODEL).exists():
        try:
            load_model_file(run_dir / runs.MODEL)
        except InvalidModel as e:
            problems.append(f"{runs.MODEL} does not load: {e}")
    if (run_dir / runs.STATUS).exists() and read_state(run_dir).get("state") == "completed":
        problems.append("a killed run claims to be completed")
    from locmnist.runs import run_info  # how the app's History/Train pages see a run

    state = run_info(run_dir).state
    if state != expected_state:
        problems.append(f"run_info says {state!r}, not {expected_state!r}")
    return problems


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- many threads, one Predictor -------------------------------------------------------

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


def corpus_inputs() -> list[bytes]:
    """Good, blank and invalid inputs mixed (small ones: the point is contention)."""
    keep = ("PNG grey, dark on white", "JPEG RGB", "PNG ink only in alpha", "TIFF", "WebP",
            "JPEG EXIF orientation 6", "all white", "faint noise", "empty file",
            "truncated PNG", "PNG bomb 40000x40000 header", "random bytes")
    by_name = {c.name: c for c in CORPUS}
    return [by_name[name].build()[0] for name in keep]


# --- many sessions, one Start button ---------------------------------------------------

def simultaneous_start_clicks(root: Path, threads: int = THREADS) -> list:
    """``threads`` sessions pressing Start training (a tiny quick run under ``root``) at
    the same instant: each result is the started run's id or the ``jobs.TrainingBusy``
    it was told. Unset LOCMNIST_TRAIN_OVERRIDES first: the server's overrides apply."""
    from locmnist import jobs

    start = threading.Barrier(threads)

    def click(_):
        start.wait()
        try:
            return jobs.start_training("quick", root=root, epochs=1, train_digits=512,
                                       batch_size=64)
        except jobs.TrainingBusy as e:
            return e

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(click, range(threads)))


def cancel_and_wait(run_dir: Path, grace_s: float = 20.0, timeout_s: float = 60.0) -> bool:
    """Cancel a run started by ``jobs`` and wait for its process to exit: whether it did."""
    from locmnist import jobs
    from locmnist.files import read_json

    jobs.cancel(run_dir, grace_s=grace_s)
    pid = (read_json(run_dir / runs.JOB) or {}).get("pid")
    deadline = time.monotonic() + timeout_s
    while runs.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not runs.pid_alive(pid)
