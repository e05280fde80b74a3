"""Training under faults: ``python -m locmnist train`` processes SIGKILLed at random
moments (including in the middle of writing the model), SIGTERM cancels, and run
directories that cannot be written.

A killed run must never damage a finished run or a model file next to it, and
must itself be readable afterwards: valid ``status.json`` / ``history.json``, a
``model.keras`` that is absent or loads, and ``jobs.run_info`` calling it incomplete.
``scripts/reliability_report.py`` runs the same campaign for the README's table.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The Train page's preset, as small as the CLI's flags make it (it has none for the
# 5,000 validation digits or the widths): SIGTERM is measured on this.
TINY_TRAIN = ["--preset", "quick", "--epochs", "3", "--train-digits", "512",
              "--batch-size", "64", "--no-progress"]
# Kills: the reference CNN without validation, so 5 runs side by side reach their
# epoch ends and model writes in seconds; 20 epochs so none finishes first.
KILL_TRAIN = ["--preset", "seed", "--epochs", "20", "--train-digits", "512",
              "--batch-size", "64", "--no-progress"]
# When each of the 5 kills lands: a condition on the run directory, then a random delay.
KILL_MOMENTS = [
    ("during start-up", lambda d: True, 3.0),
    ("config written", lambda d: (d / "config.json").exists(), 1.0),
    ("training steps", lambda d: _state(d).get("step", 0) >= 1, 2.0),
    ("epoch end", lambda d: (d / "history.json").exists(), 0.5),
    ("model mid-write", lambda d: any(d.glob(".model.keras.*")), 0.0),
]


def _state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def start_train(out: Path, flags=TINY_TRAIN) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "locmnist", "train", *flags,
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


def kill_campaign(parent: Path, seed: int = 0, timeout_s: float = 240.0) -> list[dict]:
    """Start one training per KILL_MOMENTS entry side by side in ``parent`` and SIGKILL
    each when its moment comes; returns what happened to each."""
    rng = random.Random(seed)
    jobs = []
    for i, (name, ready, max_delay) in enumerate(KILL_MOMENTS):
        out = parent / f"killed-{i}"
        jobs.append({"moment": name, "dir": out, "proc": start_train(out, KILL_TRAIN), "ready": ready,
                     "delay": rng.uniform(0, max_delay), "t0": time.monotonic(),
                     "armed_at": None, "killed_after_s": None, "finished_first": False})
    deadline = time.monotonic() + timeout_s
    pending = list(jobs)
    while pending and time.monotonic() < deadline:
        now = time.monotonic()
        for job in list(pending):
            if job["proc"].poll() is not None:        # it finished before its moment came
                job["finished_first"] = True
                pending.remove(job)
                continue
            if job["armed_at"] is None and job["ready"](job["dir"]):
                job["armed_at"] = now
            if job["armed_at"] is not None and now - job["armed_at"] >= job["delay"]:
                job["proc"].send_signal(signal.SIGKILL)
                job["killed_after_s"] = round(now - job["t0"], 2)
                pending.remove(job)
        time.sleep(0.005)
    for job in jobs:
        if job["proc"].poll() is None:
            job["proc"].kill()
        job["proc"].communicate(timeout=30)
        job["returncode"] = job["proc"].returncode
        job["problems"] = check_killed_run(job["dir"])
        job["stray_temp_files"] = len(list(job["dir"].glob(".*.tmp*")))
    return jobs


def check_killed_run(run_dir: Path, expected_state: str = "failed/incomplete") -> list[str]:
    """What is wrong with a killed or cancelled run directory (empty list: all good)."""
    from locmnist.model_files import InvalidModel, load_model_file

    problems = []
    for name in ("config.json", "status.json", "history.json"):
        p = run_dir / name
        if p.exists():
            try:
                json.loads(p.read_text())
            except ValueError:
                problems.append(f"{name} is not valid JSON")
    history = _json_or_none(run_dir / "history.json") or {}
    if len({len(v) for v in history.values()}) > 1:
        problems.append("history.json lists have different lengths")
    if (run_dir / "model.keras").exists():
        try:
            load_model_file(run_dir / "model.keras")
        except InvalidModel as e:
            problems.append(f"model.keras does not load: {e}")
    if (run_dir / "status.json").exists() and _state(run_dir).get("state") == "completed":
        problems.append("a killed run claims to be completed")
    try:
        from locmnist.jobs import run_info  # how the app's History/Train pages see a run
    except ImportError:  # the app's job module is optional for the library
        return problems
    state = run_info(run_dir).state
    if state != expected_state:
        problems.append(f"run_info says {state!r}, not {expected_state!r}")
    return problems


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- tests --------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_never_corrupts_finished_work(tmp_path):
    finished = make_finished_run(tmp_path / "finished")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(finished / "model.keras", models / "default.keras")
    before = {"finished": tree_hashes(finished), "models": tree_hashes(models)}

    jobs = kill_campaign(tmp_path, seed=int(os.environ.get("LOCMNIST_KILL_SEED", "0")))

    assert tree_hashes(finished) == before["finished"], "a finished run was modified"
    assert tree_hashes(models) == before["models"], "a model file next to the runs changed"
    for job in jobs:
        assert not job["finished_first"], f"{job['moment']}: the run ended before the kill"
        assert job["returncode"] == -signal.SIGKILL, job
        assert job["problems"] == [], f"{job['moment']}: {job['problems']}"
    # Killed late, the history so far is there to read.
    assert _json_or_none(jobs[3]["dir"] / "history.json")["epoch"] == [1.0]


@pytest.mark.slow
def test_sigterm_cancels_quickly_and_keeps_status(tmp_path):
    out = tmp_path / "cancelled"
    proc = start_train(out)
    deadline = time.monotonic() + 180
    while _state(out).get("step", 0) < 1 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    stop_s = time.monotonic() - t0
    assert "Traceback" not in err, err[-2000:]
    assert _state(out)["state"] == "cancelled"
    assert proc.returncode == 1
    assert stop_s < 30, f"took {stop_s:.1f} s to stop after SIGTERM"
    assert check_killed_run(out, expected_state="cancelled") == []


def test_unwritable_run_directory_is_a_clear_error(tmp_path):
    """A run directory under a regular file cannot exist (this works even as root,
    for whom permission bits do not apply)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "locmnist", "train", *TINY_TRAIN,
                           "--out", str(blocker / "run")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "cannot write to run directory" in proc.stderr
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_parent_is_a_clear_error(tmp_path):
    from locmnist.config import preset
    from locmnist.training import train

    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(OSError, match="cannot write to run directory"):
            train(preset("quick", epochs=1, train_digits=64, batch_size=64), parent / "run")
    finally:
        parent.chmod(0o700)
