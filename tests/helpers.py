"""Helpers shared by several test modules (not a test module itself: no tests here)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from locmnist import runs
from locmnist.files import atomic_write_json

REPO = Path(__file__).resolve().parent.parent
APP_TIMEOUT = 120  # the first run of a page may import TensorFlow and load a model


def tiny_config(**overrides):
    """A config that trains in a few seconds on 2 cores (for tests only)."""
    from locmnist.config import preset

    base = dict(epochs=2, train_digits=1024, val_digits=256, batch_size=64,
                widths=(8, 16, 16, 16), crop_widths=(8, 8, 8), dense_units=32, time_limit_s=0.0,
                learning_rate=3e-3, warmup_epochs=0.0)
    base.update(overrides)
    return preset("quick", **base)


def tiny_detector_config(**overrides):
    """A detector config that trains in seconds on 2 cores (for tests only)."""
    from locmnist.detector_config import detector_preset

    base = dict(epochs=1, canvases_per_epoch=64, batch_size=16, val_digits=40,
                widths=(8, 8, 16, 16), head_width=8, canvas_height=64, canvas_width=96,
                max_height=40.0, learning_rate=3e-3, warmup_epochs=0.0, time_limit_s=0.0,
                styles_fraction=0.05, aspect_jitter=0.2)   # the options' code paths
    base.update(overrides)
    return detector_preset("detect-quick", **base)


def run_cli(*args, timeout=300, cwd=REPO, **env):
    """``python -m locmnist ARGS`` in a real subprocess; extra keywords are env variables."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "locmnist", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


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


# --- the app under AppTest -------------------------------------------------------------

def wait_until_no_run_is_active(root: Path, timeout: float = 60) -> None:
    """Wait (at most ``timeout`` s) until no training holds the lock under ``root``."""
    from locmnist import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and jobs.active_run_id(root):
        time.sleep(0.5)


def _page(name: str) -> None:
    import importlib

    importlib.import_module(f"app_pages.{name}").render()


def page(name: str):
    """One page of the app on its own, as st.navigation would run it (an AppTest)."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_function(_page, args=(name,), default_timeout=APP_TIMEOUT)


def rerun_until_run_ends(at, run_id: str, timeout: float):
    """Rerun the Train page ``at`` once a second until it shows run ``run_id``'s final
    panel (its "Run <id>: <state>" subheader; a live run's says just "Run <id>"), at most
    ``timeout`` s. The caller asserts which state it reached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        at.run()
        if any(s.value.startswith(f"Run {run_id}: ") for s in at.subheader):
            return


def mnist_test_png(index: int) -> tuple[bytes, int]:
    """(PNG, label) of a real MNIST test digit: dark ink on white paper, 4x enlarged, off-centre."""
    from PIL import Image

    from locmnist.data import load_mnist

    mnist = load_mnist()
    digit = Image.fromarray(255 - mnist.x_test[index]).resize((112, 112), Image.BICUBIC)
    paper = Image.new("L", (200, 160), 255)
    paper.paste(digit, (60, 30))
    buf = io.BytesIO()
    paper.save(buf, "PNG")
    return buf.getvalue(), int(mnist.y_test[index])
