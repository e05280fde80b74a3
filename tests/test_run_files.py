"""Run directories read defensively (issue 12, finding 5): a malformed file shows that
run as unreadable with its reason, and never breaks list_runs or a page."""
from __future__ import annotations

import json
import os
import time

import pytest

from locmnist import runs
from locmnist.run_files import Job, Status, Unreadable, parse_history
from tests.helpers import dead_pid, make_run

GOOD = {"state": "completed", "pid": 1, "epoch": 2, "epochs": 2, "step": 5, "steps": 5}


def write(d, name, text):
    (d / name).write_text(text)


# (file, content, the reason shown)
MALFORMED = [
    (runs.STATUS, "[1]", "status.json: a list"),
    (runs.STATUS, '"x"', "status.json: a str"),
    (runs.STATUS, "5", "status.json: a int"),
    (runs.STATUS, "{", "status.json: not valid JSON"),
    (runs.STATUS, '{"state": "running", "pid": "12"}', "pid is \"12\""),
    (runs.STATUS, '{"state": "running", "epochs": true}', "epochs is true"),
    (runs.STATUS, '{"state": "hacked"}', "unknown state"),
    (runs.STATUS, '{"pid": 3}', "no state"),
    (runs.STATUS, '{"state": "running", "elapsed_s": NaN}', "elapsed_s"),
    (runs.JOB, '{"pid": "12"}', "job.json: pid is \"12\""),
    (runs.JOB, '{"pid": -1}', "job.json: pid is -1"),
    (runs.JOB, "[]", "job.json: a list"),
    (runs.CONFIG, "7", "config.json: a int"),
]


@pytest.mark.parametrize("name,content,reason", MALFORMED)
def test_a_malformed_file_makes_one_run_unreadable(tmp_path, name, content, reason):
    make_run(tmp_path, "a-good-one", GOOD)
    time.sleep(0.01)
    bad = make_run(tmp_path, "the-bad-one", GOOD if name != runs.STATUS else None)
    write(bad, name, content)
    listed = {r.id: r for r in runs.list_runs(tmp_path)}   # never raises
    assert listed["a-good-one"].state == "completed"
    assert listed["the-bad-one"].state == runs.UNREADABLE and not listed["the-bad-one"].live
    assert listed["the-bad-one"].error.startswith("unreadable: ")
    assert reason in listed["the-bad-one"].error


def test_a_huge_or_unreadable_file_is_reported_not_read(tmp_path):
    bad = make_run(tmp_path, "huge", None)
    with open(bad / runs.STATUS, "wb") as f:
        f.truncate(64 * 2**20)  # sparse
    assert "larger than" in runs.run_info(bad).error


def test_schemas_accept_what_the_trainer_and_app_write():
    s = Status.parse({**GOOD, "elapsed_s": 1.5, "eta_s": None, "error": None,
                      "has_model": True, "updated": 1.0, "extra": "ignored"})
    assert s.state == "completed" and s.eta_s is None and s.has_model is True
    j = Job.parse({"pid": 5, "start_ticks": 9, "argv": ["x"], "fields": {}, "cap_s": 600})
    assert (j.pid, j.cap_s) == (5, 600)
    with pytest.raises(Unreadable):
        parse_history({"loss": [1, "x"]})
    assert parse_history({"loss": [1.0, 0.5], "epoch": [1, 2]})["epoch"] == [1, 2]


def test_pruning_keeps_the_newest_and_every_live_run(tmp_path):
    old = time.time() - 30 * 86400
    ids = []
    for i in range(6):
        d = make_run(tmp_path, f"run{i}", GOOD)
        stamp = old if i == 0 else time.time() - 100 + i
        os.utime(d / runs.STATUS, (stamp, stamp))
        ids.append(d.name)
    live = make_run(tmp_path, "live", {"state": "running", "pid": 0},
                    job={"pid": os.getpid()})
    write(make_run(tmp_path, "broken", None), runs.STATUS, "[1]")
    deleted = runs.prune_runs(tmp_path, keep=3, max_age_s=7 * 86400)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert "live" in left and live.exists()
    assert "run0" in deleted                       # too old
    # the 3 newest finished runs, an unreadable one included
    assert [i for i in ids if i in left] == ["run4", "run5"] and "broken" in left
    assert len([r for r in runs.list_runs(tmp_path) if not r.live]) == 3


def test_a_dead_pid_in_a_live_status_is_incomplete_not_a_crash(tmp_path):
    d = make_run(tmp_path, "dead", {"state": "running", "pid": dead_pid()})
    assert runs.run_info(d).state == runs.INCOMPLETE
    assert json.loads((d / runs.STATUS).read_text())["state"] == "running"  # only read
