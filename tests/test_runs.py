"""The run layout: the runs root, file and sidecar names, default models, reading runs."""
import os
import re
from pathlib import Path

from locmnist import runs
from tests.helpers import dead_pid, make_run


def test_runs_root_is_the_repos_unless_the_environment_says_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv(runs.RUNS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # never relative to the working directory
    assert runs.runs_root() == Path(runs.__file__).resolve().parent.parent / "runs"
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "elsewhere"))
    assert runs.runs_root() == tmp_path / "elsewhere"


def test_default_model_path(monkeypatch, tmp_path):
    monkeypatch.delenv(runs.MODEL_ENV, raising=False)
    assert runs.default_model_path() == runs.REPO_ROOT / "models" / "default.keras"
    assert runs.DETECTOR_MODEL == runs.REPO_ROOT / "models" / "detector.keras"
    monkeypatch.setenv(runs.MODEL_ENV, str(tmp_path / "mine.keras"))
    assert runs.default_model_path() == tmp_path / "mine.keras"


def test_the_readers_classifier_is_its_own_unless_a_model_is_chosen(monkeypatch, tmp_path):
    monkeypatch.delenv(runs.MODEL_ENV, raising=False)
    assert runs.default_classifier_path() == runs.REPO_ROOT / "models" / "reader-classifier.keras"
    monkeypatch.setenv(runs.MODEL_ENV, str(tmp_path / "mine.keras"))
    assert runs.default_classifier_path() == tmp_path / "mine.keras"


def test_sidecar_names():
    assert runs.sidecar(Path("runs/r1/model.keras"), "config") == Path("runs/r1/config.json")
    assert runs.sidecar(Path("runs/r1/model.keras"), "history") == Path("runs/r1/history.json")
    assert runs.sidecar(Path("models/default.keras"), "config") == Path(
        "models/default.config.json")
    assert runs.sidecar(Path("x/ref.h5"), "metrics") == Path("x/ref.metrics.json")


def test_model_file_of_a_run_directory(tmp_path):
    assert runs.model_file(tmp_path) == tmp_path / "model.keras"
    assert runs.model_file(tmp_path / "a.keras") == tmp_path / "a.keras"


def test_new_run_ids_start_with_the_time():
    assert re.fullmatch(r"\d{8}-\d{6}-seed-[0-9a-f]{4}", runs.new_run_id("seed"))


def test_run_states_from_status_and_process(tmp_path):
    gone = dead_pid()
    make_run(tmp_path, "a-done", {"state": "completed", "pid": gone, "has_model": False})
    make_run(tmp_path, "b-crashed", {"state": "running", "pid": gone})
    make_run(tmp_path, "c-live", {"state": "running", "pid": os.getpid()})
    make_run(tmp_path, "d-killed-early", job={"pid": gone})
    make_run(tmp_path, "e-cancelled-early", job={"pid": gone}, cancel=True)
    make_run(tmp_path, "f-failed", {"state": "failed", "pid": gone, "error": "ValueError: boom"})
    (tmp_path / "not-a-run").mkdir()  # no status.json, no job.json: not listed
    states = {r.id: r.state for r in runs.list_runs(tmp_path)}
    assert states == {"a-done": "completed", "b-crashed": runs.INCOMPLETE, "c-live": "running",
                      "d-killed-early": runs.INCOMPLETE, "e-cancelled-early": "cancelled",
                      "f-failed": "failed"}
    failed = runs.run_info(tmp_path / "f-failed")
    assert failed.error == "ValueError: boom" and not failed.live
    assert runs.run_info(tmp_path / "b-crashed").error  # never a failure without a reason
    assert runs.run_info(tmp_path / "c-live").model_path == tmp_path / "c-live" / "model.keras"


def test_latest_run_is_the_one_started_last(tmp_path):
    assert runs.latest_run_id(tmp_path) is None and runs.list_runs(tmp_path / "none") == []
    old = make_run(tmp_path, "zz-old", {"state": "completed"})
    os.utime(old / runs.STATUS, (1, 1))
    make_run(tmp_path, "aa-new", {"state": "completed"})
    assert runs.latest_run_id(tmp_path) == "aa-new"
    assert [r.id for r in runs.list_runs(tmp_path)] == ["aa-new", "zz-old"]


def test_a_process_whose_threads_still_exit_is_alive_and_holds_its_flock(tmp_path):
    """A trainer's main thread can finish before its other threads (TensorFlow's) do: the
    leader is a zombie, yet the threads share its files, so the training lock stays held.
    Such a process counts as alive until the lock is gone (CI once saw it otherwise)."""
    import subprocess
    import sys
    import time

    lock, flag = tmp_path / "lock", tmp_path / "exiting"
    # The main thread leaves with pthread_exit; a second thread keeps the process (and
    # its flock) for 2 more seconds, as a large thread pool would take to wind down.
    code = f"""
import ctypes, fcntl, os, threading, time
fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
threading.Thread(target=lambda: (time.sleep(2), os._exit(0))).start()
open({str(flag)!r}, "w").close()
ctypes.CDLL(None).pthread_exit(None)
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    ticks = None
    while not flag.exists():
        ticks = ticks or runs.start_ticks(proc.pid)
        time.sleep(0.01)
    time.sleep(0.3)  # the leader is a zombie by now
    assert Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert runs.flock_held(lock)
    assert runs.pid_alive(proc.pid, ticks)
    proc.wait(timeout=10)
    assert not runs.pid_alive(proc.pid) and not runs.flock_held(lock)


def test_recorded_paths_inside_the_repo_are_relative(tmp_path):
    from locmnist.runs import DEFAULT_MODEL, recorded_path

    assert recorded_path(DEFAULT_MODEL) == "models/default.keras"
    assert recorded_path(tmp_path / "m.keras") == str(tmp_path / "m.keras")
