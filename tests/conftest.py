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
def tiny_cfg():
    from tests.helpers import tiny_config

    return tiny_config()


def tiny_detector_config(**overrides):
    """A detector config that trains in seconds on 2 cores (for tests only)."""
    from locmnist.detector_config import detector_preset

    base = dict(epochs=1, canvases_per_epoch=64, batch_size=16, val_digits=40,
                widths=(8, 8, 16, 16), head_width=8, canvas_height=64, canvas_width=96,
                max_height=40.0, learning_rate=3e-3, warmup_epochs=0.0, time_limit_s=0.0)
    base.update(overrides)
    return detector_preset("detect-quick", **base)


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory):
    """A real, barely trained detector run directory (no test-split evaluation)."""
    from locmnist.detector_training import train_detector

    out = tmp_path_factory.mktemp("tiny-detector")
    train_detector(tiny_detector_config(), out, evaluate_test=False)
    return out
