"""Shared test fixtures: quiet TensorFlow, MNIST, a tiny config (pytest.ini puts the repo
on the path; shared helper functions live in tests/helpers.py)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mnist():
    from locmnist.data import load_mnist

    return load_mnist()


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """An empty runs root for this test ($LOCMNIST_RUNS), without the server's training
    overrides; the app's test modules use it for every test."""
    monkeypatch.setenv("LOCMNIST_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("LOCMNIST_TRAIN_OVERRIDES", raising=False)
    return tmp_path / "runs"


@pytest.fixture
def tiny_cfg():
    from tests.helpers import tiny_config

    return tiny_config()


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory):
    """A real, barely trained detector run directory (no test-split evaluation)."""
    from locmnist.detector_training import train_detector
    from tests.helpers import tiny_detector_config

    out = tmp_path_factory.mktemp("tiny-detector")
    train_detector(tiny_detector_config(), out, evaluate_test=False)
    return out
