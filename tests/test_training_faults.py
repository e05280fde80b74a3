"""Training under faults: ``python -m locmnist train`` processes SIGKILLed at random
moments (including in the middle of writing the model), SIGTERM cancels, and run
directories that cannot be written.

A killed run must never damage a finished run or a model file next to it, and
must itself be readable afterwards: valid ``status.json`` / ``history.json``, a
``model.keras`` that is absent or loads, and ``runs.run_info`` calling it incomplete.
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
# The campaign: 5 SIGKILLs, each when a condition on its run directory holds plus a
# random delay, and one SIGTERM (the app's Cancel), all side by side.
KILL_PLAN = [
    # (moment, ready(run_dir), max extra delay s, signal, flags)
    ("during start-up", lambda d: True, 3.0, signal.SIGKILL, KILL_TRAIN),
    ("config written", lambda d: (d / "config.json").exists(), 1.0, signal.SIGKILL, KILL_TRAIN),
    ("training steps", lambda d: _state(d).get("step", 0) >= 1, 2.0, signal.SIGKILL, KILL_TRAIN),
    ("epoch end", lambda d: (d / "history.json").exists(), 0.5, signal.SIGKILL, KILL_TRAIN),
    ("model mid-write", lambda d: any(d.glob(".model.keras.*")), 0.0, signal.SIGKILL, KILL_TRAIN),
    ("cancel mid-epoch", lambda d: _state(d).get("step", 0) >= 1, 1.0, signal.SIGTERM, TINY_TRAIN),
]


# Moments that must still hold when the signal lands: the process is frozen (SIGSTOP),
# the condition checked again, and the signal sent only if it still holds; otherwise
# the process resumes and the moment is awaited again (the next model write).
CONFIRM = {"model mid-write": lambda d: any(d.glob(".model.keras.*"))}


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


def kill_campaign(parent: Path, seed: int = 0, timeout_s: float = 300.0,
                  plan=KILL_PLAN) -> list[dict]:
    """Start one training per plan entry side by side in ``parent``, signal each when its
    moment comes, wait for all to exit; returns what happened to each."""
    rng = random.Random(seed)
    jobs = []
    for i, (name, ready, max_delay, sig, flags) in enumerate(plan):
        out = parent / f"signalled-{i}"
        jobs.append({"moment": name, "signal": sig, "dir": out, "proc": start_train(out, flags),
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
        job["model_temp_files"] = len(list(job["dir"].glob(".model.keras.*")))
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


# --- tests --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A finished run and a models/ file, then the whole campaign and an unwritable-
    directory run at once (side by side: the suite stays short)."""
    tmp = tmp_path_factory.mktemp("faults")
    finished = make_finished_run(tmp / "finished")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(finished / "model.keras", models / "default.keras")
    before = {"finished": tree_hashes(finished), "models": tree_hashes(models)}
    blocker = tmp / "a-file"
    blocker.write_text("not a directory")
    unwritable = start_train(blocker / "run")
    jobs = kill_campaign(tmp, seed=int(os.environ.get("LOCMNIST_KILL_SEED", "0")))
    out, err = unwritable.communicate(timeout=120)
    return {"jobs": {j["moment"]: j for j in jobs}, "before": before, "finished": finished,
            "models": models, "blocker": blocker,
            "unwritable": (unwritable.returncode, out + err)}


@pytest.mark.slow
def test_sigkill_never_corrupts_finished_work(campaign):
    assert tree_hashes(campaign["finished"]) == campaign["before"]["finished"], \
        "a finished run was modified"
    assert tree_hashes(campaign["models"]) == campaign["before"]["models"], \
        "a model file next to the runs changed"
    kills = [j for j in campaign["jobs"].values() if j["signal"] == signal.SIGKILL]
    assert len(kills) == 5
    mid_write = campaign["jobs"]["model mid-write"]
    assert mid_write["confirmed"], "the kill did not land while model.keras was written"
    assert mid_write["model_temp_files"] >= 1   # the killed writer's temp file is left
    for job in kills:
        assert not job["finished_first"], f"{job['moment']}: the run ended before the kill"
        assert job["returncode"] == -signal.SIGKILL, job
        assert job["problems"] == [], f"{job['moment']}: {job['problems']}"
    # Killed after an epoch, the history so far is there to read.
    history = json.loads((campaign["jobs"]["epoch end"]["dir"] / "history.json").read_text())
    assert history["epoch"][0] == 1.0 and len(history["loss"]) == len(history["epoch"])


@pytest.mark.slow
def test_sigterm_cancels_quickly_and_keeps_status(campaign):
    job = campaign["jobs"]["cancel mid-epoch"]
    assert not job["finished_first"] and job["stop_s"] is not None
    assert "Traceback" not in job["stderr"], job["stderr"][-2000:]
    assert _state(job["dir"])["state"] == "cancelled"
    assert job["returncode"] == 1
    assert job["problems"] == []
    # Generous for a loaded 2-core machine: Keras still validates the partial epoch.
    assert job["stop_s"] < 60, f"took {job['stop_s']:.1f} s to stop after SIGTERM"


@pytest.mark.slow
def test_unwritable_run_directory_is_a_clear_error(campaign):
    """A run directory under a regular file cannot exist (this works even as root,
    for whom permission bits do not apply)."""
    returncode, output = campaign["unwritable"]
    assert returncode == 2
    assert "Traceback" not in output, output[-2000:]
    assert "cannot write to run directory" in output
    assert campaign["blocker"].read_text() == "not a directory"


READ_ONLY_CHECK = """
import sys
from pathlib import Path
from locmnist.config import preset
from locmnist.training import train
try:
    train(preset("quick", epochs=1, train_digits=64, batch_size=64), Path(sys.argv[1]))
except OSError as e:
    print("refused:", e)
"""


def test_read_only_parent_is_a_clear_error(tmp_path):
    """Permission bits bind only an unprivileged process: as root, the check runs in a
    child without the capabilities that override them (setpriv)."""
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    unprivileged = [] if os.geteuid() != 0 else [
        "setpriv", "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search"]
    try:
        done = subprocess.run([*unprivileged, sys.executable, "-c", READ_ONLY_CHECK,
                               str(parent / "run")], capture_output=True, text=True,
                              timeout=300, cwd=REPO,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    finally:
        parent.chmod(0o700)
    assert "refused: cannot write to run directory" in done.stdout, done.stdout + done.stderr
    assert not (parent / "run").exists()


def test_a_full_disk_keeps_the_original_error(tmp_path, monkeypatch):
    """Issue 12 finding 8: the failure status write failed too, and hid the real error."""
    import errno

    import keras

    import locmnist.training as training
    from locmnist.config import preset

    real_write = training.atomic_write_json

    def write(path, obj):
        if isinstance(obj, dict) and obj.get("state") == "failed":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, obj)

    class Boom(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("the real problem")

    monkeypatch.setattr(training, "atomic_write_json", write)
    cfg = preset("quick", epochs=1, train_digits=128, val_digits=0, batch_size=64,
                 widths=(4, 8, 8, 8), dense_units=16)
    with pytest.raises(RuntimeError, match="the real problem"):
        training.train(cfg, tmp_path / "run", callbacks=[Boom()], evaluate_test=False)
