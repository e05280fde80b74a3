"""Training under faults: ``python -m locmnist train`` processes SIGKILLed at random
moments (including in the middle of writing the model), SIGTERM cancels, and run
directories that cannot be written.

A killed run must never damage a finished run or a model file next to it, and
must itself be readable afterwards: valid ``status.json`` / ``history.json``, a
``model.keras`` that is absent or loads, and ``runs.run_info`` calling it incomplete.
The campaign lives in ``tests/campaigns.py``; ``scripts/reliability_report.py`` runs
it too, for the README's table.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.campaigns import (kill_campaign, make_finished_run, read_state, start_train,
                             tree_hashes)
from tests.helpers import REPO


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
    assert read_state(job["dir"])["state"] == "cancelled"
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


def _tiny_localizer(tmp_path, callbacks):
    from locmnist.config import preset
    from locmnist.training import train

    cfg = preset("quick", epochs=1, train_digits=128, val_digits=0, batch_size=64,
                 widths=(4, 8, 8, 8), dense_units=16)
    return train(cfg, tmp_path / "run", callbacks=callbacks, evaluate_test=False)


def _tiny_detector(tmp_path, callbacks):
    from locmnist.detector_training import train_detector
    from tests.helpers import tiny_detector_config

    return train_detector(tiny_detector_config(val_digits=0), tmp_path / "run",
                          callbacks=callbacks, evaluate_test=False)


@pytest.mark.parametrize("train", [_tiny_localizer, _tiny_detector],
                         ids=["localizer", "detector"])
def test_a_full_disk_keeps_the_original_error(tmp_path, monkeypatch, train):
    """Issue 12 finding 8: the failure status write failed too, and hid the real error.
    Both trainers end through ``training.fit_and_finish``; the detector had no guard."""
    import errno

    import keras

    import locmnist.training as training

    real_write = training.atomic_write_json

    def write(path, obj):
        if isinstance(obj, dict) and obj.get("state") == "failed":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, obj)

    class Boom(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("the real problem")

    monkeypatch.setattr(training, "atomic_write_json", write)
    with pytest.raises(RuntimeError, match="the real problem"):
        train(tmp_path, [Boom()])
