"""Helpers shared by several test modules (not a test module itself: no tests here)."""
from __future__ import annotations

import subprocess
import sys
import time

from locmnist import runs
from locmnist.files import atomic_write_json


def dead_pid() -> int:
    """A pid that just exited (and was reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def make_run(root, name, status=None, job=None, cancel=False):
    """A run directory as a trainer (status.json) or the app (job.json, CANCEL) leaves it."""
    d = root / name
    d.mkdir(parents=True)
    if status is not None:
        atomic_write_json(d / runs.STATUS, status)
    if job is not None:
        atomic_write_json(d / runs.JOB, job)
    if cancel:
        (d / runs.CANCEL).touch()
    return d


def wait_for(predicate, timeout, what):
    """``predicate()``'s first truthy value within ``timeout`` seconds, else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
