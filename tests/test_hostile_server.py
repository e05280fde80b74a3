"""The hostile-session campaign's fast form against a real server (issue 12):
``python -m scripts.hostile_server --fast``. Crafted canvas payloads and models, malformed
run directories and an upload flood; after each group, every page renders, the
server's peak RSS stays under 2 GB, and a bystander's answer does not change. (Start/Cancel
from several sessions is in the full form only; tests/test_jobs.py covers its rules.)"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True, scope="module")
def chromium_is_installed():
    """The suite needs the browser (.ci/run installs it): a missing one fails, not skips."""
    assert CHROMIUM.exists(), "needs Chromium at /usr/bin/chromium (apt-get install chromium)"


def test_fast_hostile_campaign():
    done = subprocess.run([sys.executable, "-m", "scripts.hostile_server", "--fast", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.stdout.strip(), done.stderr[-3000:]
    rows = json.loads(done.stdout)
    print("\n".join(f"{r['attack']}: {r['sent']} -> {r['outcome']} "
                    f"(peak {r['peak_mb']} MB, pages {r['pages']})" for r in rows))
    assert done.returncode == 0, done.stderr[-3000:]
    assert max(r["peak_mb"] for r in rows) < 2048
    assert all(r["pages"] in ("all 4", "-") for r in rows), rows
    assert sum(r["pages"] == "all 4" for r in rows) >= 5   # checked after every attack group
    assert "unchanged" in rows[-1]["outcome"]
