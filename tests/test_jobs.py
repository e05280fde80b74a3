"""The training-job manager: lock, states, overrides, and cancelling real processes."""
import json
import os
import subprocess
import sys
import time

import pytest

from locmnist import jobs, runs
from tests.helpers import dead_pid, make_run, wait_for


def hold(target: str, path) -> subprocess.Popen:
    """Another process holding a lock (``target``: "server" lock of root, or "run" dir lock)."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom locmnist import jobs, runs\n"
            + ("jobs._take_lock(Path(sys.argv[1]), 'first')\n" if target == "server" else
               "held = runs.run_dir_lock(Path(sys.argv[1]))\nheld.__enter__()\n")
            + "print('held', flush=True)\ntime.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"held"
    return p


def test_lock_is_exclusive_and_released_when_its_holder_dies(tmp_path):
    holder = hold("server", tmp_path)
    try:
        assert jobs.active_run_id(tmp_path) == "first"
        with pytest.raises(jobs.TrainingBusy) as busy:
            jobs._take_lock(tmp_path, "second")
        assert busy.value.run_id == "first"
    finally:
        holder.kill()
        holder.wait()
    # No stale lock to clear: flock went with the process.
    assert jobs.active_run_id(tmp_path) is None
    fd = jobs._take_lock(tmp_path, "third")
    assert jobs.active_run_id(tmp_path) == "third"
    os.close(fd)
    assert jobs.active_run_id(tmp_path) is None


def test_a_lock_file_naming_a_live_or_reused_pid_holds_nothing(tmp_path):
    """The old scheme trusted a pid in the file: a reused pid held the lock forever."""
    (tmp_path / runs.LOCK).write_text(json.dumps({"pid": os.getpid(), "run_id": "old"}))
    assert jobs.active_run_id(tmp_path) is None
    os.close(jobs._take_lock(tmp_path, "new"))


def test_two_trainings_never_share_a_run_directory(tmp_path):
    """Issue 12 finding 8: two CLI trainings into one --out destroyed each other's files."""
    from locmnist.config import preset
    from locmnist.training import train

    holder = hold("run", tmp_path)
    try:
        assert runs.run_locked(tmp_path)
        with pytest.raises(runs.RunBusy, match="another training"):
            train(preset("quick", epochs=1, train_digits=256), tmp_path)
        assert not (tmp_path / runs.CONFIG).exists()   # nothing of the holder's was touched
    finally:
        holder.kill()
        holder.wait()
    assert runs.run_locked(tmp_path) is False


def test_a_launch_that_cannot_record_its_job_leaves_no_orphan(tmp_path, monkeypatch):
    """Issue 12 finding 8: if writing job.json failed, the trainer ran on, unwatchable."""
    import errno
    import subprocess as sp

    launched = []
    real_popen = sp.Popen

    def popen(*a, **k):
        launched.append(real_popen(*a, **k))
        return launched[-1]

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jobs.subprocess, "Popen", popen)
    monkeypatch.setattr(jobs, "atomic_write_json", full_disk)
    monkeypatch.delenv("LOCMNIST_TRAIN_OVERRIDES", raising=False)
    with pytest.raises(OSError, match="No space left"):
        jobs.start_training("quick", root=tmp_path, epochs=1, train_digits=512)
    assert len(launched) == 1
    assert launched[0].poll() is not None, "the trainer was left running"
    assert jobs.active_run_id(tmp_path) is None


def test_a_cli_run_with_a_reused_pid_is_not_alive(tmp_path):
    """A CLI run has no job.json: its status pid and start time decide, never the pid alone."""
    ticks = runs.start_ticks(os.getpid())
    assert ticks is not None
    run = make_run(tmp_path, "cli", {"state": "running", "pid": os.getpid(),
                                     "start_ticks": ticks + 1})
    assert runs.run_info(run).state == runs.INCOMPLETE
    run2 = make_run(tmp_path, "cli2", {"state": "running", "pid": os.getpid(),
                                       "start_ticks": ticks})
    assert runs.run_info(run2).state == "running"


def test_overrides_and_bad_settings_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        jobs.env_overrides()
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", '{"learning_rat": 1}')
    with pytest.raises(ValueError, match=r"cannot set \['learning_rat'\]"):
        jobs.env_overrides()
    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", '{"epochs": "many"}')
    with pytest.raises(ValueError, match="epochs must be an integer"):
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
    limits = ServerSettings(max_epochs=3, max_train_digits=20_000, max_run_seconds=12)
    with pytest.raises(ValueError, match="at most 3 epochs"):
        jobs.start_training("quick", root=tmp_path, limits=limits, epochs=4, train_digits=512)
    with pytest.raises(ValueError, match="20,000 training digits"):
        jobs.start_training("quick", root=tmp_path, limits=limits, epochs=1, train_digits=0)
    started = time.monotonic()
    # Three epochs of 20,000 digits take minutes on these machines, far beyond the cap and
    # the 25 s allowed below (the cap plus room for a busy machine to schedule the kill).
    run_id = jobs.start_training("quick", root=tmp_path, limits=limits, epochs=3,
                                 train_digits=20_000, batch_size=64)
    job = json.loads((tmp_path / run_id / runs.JOB).read_text())
    assert job["cap_s"] == 12 and job["fields"]["time_limit_s"] == 9
    pid = job["pid"]
    wait_for(lambda: not jobs.pid_alive(pid), 25, "the capped run to end")

    def group_gone() -> bool:  # the trainer's children may be reaped a moment after timeout exits
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, 10, "nothing of its process group to be left")
    assert time.monotonic() - started < 35
    info = runs.run_info(tmp_path / run_id)
    assert not info.live and jobs.active_run_id(tmp_path) is None


@pytest.mark.parametrize("preset", ["quick", "detect-quick"])
def test_a_run_of_either_model_kind_gets_the_flags_train_accepts(tmp_path, monkeypatch, preset):
    """The Train form's fields and the server's overrides become `train` flags that the CLI
    parses back into the same config; a localizer-only override skips a detector run."""
    from locmnist.cli import _parser

    monkeypatch.setenv("LOCMNIST_TRAIN_OVERRIDES", json.dumps(
        {"train_digits": 512, "widths": [4, 8, 8, 8], "dense_units": 16,
         "canvases_per_epoch": 640, "time_limit_s": 0}))
    launched = {}
    monkeypatch.setattr(jobs, "_launch", lambda root, run_id, argv, **kw: launched.update(
        argv=argv) or run_id)
    jobs.start_training(preset, tmp_path, epochs=2, min_height=20.0, max_height=40.0)
    args = _parser().parse_args([*launched["argv"], "--out", str(tmp_path / "run")])
    if preset == "detect-quick":
        from locmnist.detector_cli import detector_config_from_args

        cfg = detector_config_from_args(args)
        assert (cfg.kind, cfg.canvases_per_epoch) == ("detector", 640)
        assert "--dense-units" not in launched["argv"]
    else:
        from locmnist.config import Config, field_overrides, preset as make

        cfg = make(preset, **field_overrides(args, Config))
        assert cfg.dense_units == 16 and "--canvases-per-epoch" not in launched["argv"]
    assert (cfg.epochs, cfg.train_digits, cfg.widths, cfg.min_height, cfg.max_height,
            cfg.time_limit_s) == (2, 512, (4, 8, 8, 8), 20.0, 40.0, 0.0)
