"""The shipped default model: a looser floor on a slice of the test split, and the
wild set (drawn / photographed / typed digits) through the full predict path."""
import pytest


@pytest.fixture(scope="module")
def predictor():
    from locmnist.inference import Predictor

    return Predictor.load()


def test_default_model_floor_on_a_test_slice(predictor):
    from locmnist.evaluation import evaluate_model

    m = evaluate_model(predictor, limit=2000)
    assert m["accuracy"] >= 0.98
    assert m["iou_mean"] >= 0.85 and m["iou_ge_0.5"] >= 0.98


def test_default_model_on_wild_digits(predictor):
    from locmnist.wild import evaluate_wild

    r = evaluate_wild(predictor, per_kind=30, seed=123)
    for kind, s in r["by_kind"].items():
        assert s["accuracy"] >= 0.85, (kind, s)
        assert s["iou_ge_0.5"] >= 0.9, (kind, s)


def test_shipped_config_rebuilds_the_model(predictor):
    from locmnist.model import build_model

    assert predictor.config is not None
    assert build_model(predictor.config).count_params() == predictor.model.count_params()


def test_shipped_model_says_not_a_digit_and_keeps_digits(predictor):
    """The shipped model has a fitted ``digit`` output: letters, shapes and scribbles
    are refused, digits are not (a slice of the negative and digit test splits)."""
    from locmnist.evaluation import evaluate_model

    assert predictor.calibration.rule == "digit" and predictor.calibration.fitted
    m = evaluate_model(predictor, limit=700)          # 700 digits and 700 negatives, every kind
    assert m["reject_rate_negatives"] >= 0.95
    assert m["digits_rejected"] <= 0.005
