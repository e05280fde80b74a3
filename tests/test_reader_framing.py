"""``python -m scripts.reader_framing``: the framing comparison behind the README's choice."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_malformed_setting_is_a_clear_usage_error():
    for bad in ("30", "30,x", "0,0.3", "30,-1"):
        proc = subprocess.run([sys.executable, "-m", "scripts.reader_framing", "--settings", bad],
                              cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert proc.returncode == 2, bad
        assert "HEIGHT,MARGIN" in proc.stderr and "Traceback" not in proc.stderr


def test_the_tuning_numbers_are_not_the_benchmarks():
    from bench.probes import DRAWN_NUMBERS_SEED
    from scripts.reader_framing import TUNING_SEED

    assert TUNING_SEED != DRAWN_NUMBERS_SEED
