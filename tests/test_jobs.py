"""The training-job manager: lock, states, overrides, and cancelling real processes."""
import json
import os
import subprocess
import sys
import time

import pytest

from locmnist import jobs, runs
from tests.helpers import dead_pid, make_run, wait_for


def test_lock_is_exclusive_and_a_dead_holder_is_cleared(tmp_path):
    jobs._take_lock(tmp_path, "first")
    assert jobs.active_run_id(tmp_path) == "first"  # held by this (live) process
    with pytest.raises(jobs.TrainingBusy) as busy:
        jobs._take_lock(tmp_path, "second")
    assert busy.value.run_id == "first"
    # The holder dies: the lock is stale, cleared, and can be taken again.
    (tmp_path / runs.LOCK).write_text(json.dumps({"pid": dead_pid(), "run_id": "first"}))
    assert jobs.active_run_id(tmp_path) is None
    assert not (tmp_path / runs.LOCK).exists()
    jobs._take_lock(tmp_path, "third")
    assert jobs.active_run_id(tmp_path) == "third"


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
    ticks = runs.start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc start times on this system")
    lock = {"pid": os.getpid(), "start_ticks": ticks + 1, "run_id": "old"}
    (tmp_path / runs.LOCK).write_text(json.dumps(lock))
    assert jobs.active_run_id(tmp_path) is None


def test_overrides_and_bad_settings_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        jobs.env_overrides()
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", '{"learning_rate": 1}')
    with pytest.raises(ValueError, match="may only set"):
        jobs.env_overrides()
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", '{"epochs": 1}')
    assert jobs.env_overrides() == {"epochs": 1}
    with pytest.raises(ValueError, match="min_height"):
        jobs.start_training("quick", root=tmp_path, min_height=60.0, max_height=20.0)
    assert list(tmp_path.iterdir()) == []  # no lock, no run directory left behind


def test_cancel_escalates_to_sigkill_after_the_grace_period(tmp_path):
    # A process that ignores SIGTERM stands in for a trainer stuck in a long call.
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    assert stubborn.stdout.readline().strip() == b"ready"
    run = make_run(tmp_path, "stuck", {"state": "running", "pid": stubborn.pid},
                   job={"pid": stubborn.pid, "start_ticks": runs.start_ticks(stubborn.pid)})
    assert runs.run_info(run).state == "running"
    jobs.cancel(run, grace_s=1.0)
    assert stubborn.wait(timeout=10) == -9
    # The killer thread writes the reason just after the kill lands: wait for both.
    info = wait_for(lambda: (i := runs.run_info(run)).state == "cancelled" and i.error and i, 5,
                    "cancelled, with its reason")
    assert "killed" in info.error


@pytest.mark.slow
def test_real_training_is_exclusive_and_cancellable(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", json.dumps(
        {"epochs": 30, "train_digits": 2048, "val_digits": 256, "batch_size": 64,
         "widths": [4, 8, 8, 8], "dense_units": 16, "time_limit_s": 0}))
    run_id = jobs.start_training("quick", root=tmp_path)
    run_dir = tmp_path / run_id
    assert jobs.active_run_id(tmp_path) == run_id
    with pytest.raises(jobs.TrainingBusy):  # a second Start, from anywhere
        jobs.start_training("quick", root=tmp_path)
    wait_for(lambda: runs.run_info(run_dir).status.get("step", 0) > 0, 120, "training steps")
    assert runs.run_info(run_dir).state == "running"
    jobs.cancel(run_dir)
    info = wait_for(lambda: (i := runs.run_info(run_dir)).state != "running" and i, 60,
                    "the run to stop")
    assert info.state == "cancelled", runs.log_tail(run_dir)
    # The lock goes with the process (which exits just after writing its final status).
    wait_for(lambda: jobs.active_run_id(tmp_path) is None, 30, "the lock to be released")
    assert not (tmp_path / runs.LOCK).exists()
    argv = json.loads((run_dir / runs.JOB).read_text())["argv"]
    assert "--no-progress" in argv and argv[argv.index("--widths") + 1] == "4,8,8,8"


def test_only_the_starting_session_or_an_admin_may_cancel(tmp_path):
    """Issue 12 finding 4: any visitor could cancel anyone's run."""
    mine = make_run(tmp_path, "mine", job={"pid": dead_pid(), "owner": jobs._owner_hash("s1")})
    assert jobs.may_cancel(mine, "s1")
    assert not jobs.may_cancel(mine, "s2") and not jobs.may_cancel(mine, None)
    assert jobs.may_cancel(mine, "s2", admin=True)
    cli = make_run(tmp_path, "cli", job={"pid": dead_pid()})      # no owner: the admin's
    assert not jobs.may_cancel(cli, "s1") and jobs.may_cancel(cli, None, admin=True)
    broken = make_run(tmp_path, "broken", job=[1])
    assert not jobs.may_cancel(broken, "s1")


def test_browser_runs_are_bounded_and_stopped_at_the_wall_clock_cap(tmp_path, monkeypatch):
    """Issue 12 finding 4: a visitor's run never outlives the public cap, and asks
    for no more than the public epochs and digits."""
    from locmnist.settings import ServerSettings

    monkeypatch.delenv("LOCMNIST_TRAIN_OVERRIDES", raising=False)
    limits = ServerSettings(max_epochs=3, max_train_digits=4096, max_run_seconds=12)
    with pytest.raises(ValueError, match="at most 3 epochs"):
        jobs.start_training("quick", root=tmp_path, limits=limits, epochs=4, train_digits=512)
    with pytest.raises(ValueError, match="4,096 training digits"):
        jobs.start_training("quick", root=tmp_path, limits=limits, epochs=1, train_digits=0)
    started = time.monotonic()
    # Three epochs of 4096 digits is far more than 12 s on these machines.
    run_id = jobs.start_training("quick", root=tmp_path, limits=limits, epochs=3,
                                 train_digits=4096, batch_size=64)
    job = json.loads((tmp_path / run_id / runs.JOB).read_text())
    assert job["cap_s"] == 12 and job["fields"]["time_limit_s"] == 9
    pid = job["pid"]
    wait_for(lambda: not jobs.pid_alive(pid), 14, "the capped run to end")
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left
        os.killpg(pid, 0)
    assert time.monotonic() - started < 14
    info = runs.run_info(tmp_path / run_id)
    assert not info.live and jobs.active_run_id(tmp_path) is None
