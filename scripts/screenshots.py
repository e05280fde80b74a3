"""Regenerate the README's screenshots (docs/predict.png, docs/train.png, ...).

Runs the browser end-to-end test against a real `streamlit run app.py`, with a
training run long enough (5 epochs) to show live curves, and its screenshots
written to docs/. Needs Chromium at /usr/bin/chromium and the shipped model.

    python scripts/screenshots.py
"""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHOWCASE_RUN = {"epochs": 5, "train_digits": 4096, "batch_size": 64, "time_limit_s": 0}


def main() -> int:
    env = {**os.environ, "LOCMNIST_SCREENSHOTS": str(REPO / "docs"),
           "LOCMNIST_TRAIN_OVERRIDES": json.dumps(SHOWCASE_RUN),
           "LOCMNIST_SCREENSHOT_EPOCHS": "3", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "e2e", "-p", "no:cacheprovider",
           str(REPO / "tests" / "test_e2e_browser.py")]
    code = subprocess.call(cmd, cwd=REPO, env=env)
    for stale in (REPO / "docs").glob("last-*.png"):  # failure aids, not documentation
        stale.unlink()
    print("screenshots:", ", ".join(sorted(p.name for p in (REPO / "docs").glob("*.png"))))
    return code


if __name__ == "__main__":
    sys.exit(main())
