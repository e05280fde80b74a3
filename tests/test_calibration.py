import json

import numpy as np
import pytest

from locmnist import calibration as cal_mod
from locmnist.calibration import Calibration, ece, fit, fit_temperature, load_for, tradeoff


def _overconfident(n=4000, t_true=2.5, seed=0):
    """Labels drawn from softmax(z), reported as softmax(z * t_true): too confident by t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, (n, 10))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in p_true])
    shown = np.exp(z * t_true) / np.exp(z * t_true).sum(1, keepdims=True)
    return shown, labels


def test_temperature_scaling_recovers_the_overconfidence():
    probs, labels = _overconfident()
    t = fit_temperature(probs, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    fixed = cal_mod.rescale(probs, t)
    assert (fixed.argmax(1) == probs.argmax(1)).all()                 # labels never change
    before = ece(probs.max(1), probs.argmax(1) == labels)
    after = ece(fixed.max(1), fixed.argmax(1) == labels)
    assert before > 0.1 and after < 0.03


def test_ece_by_hand():
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.3, 0.3])
    correct = np.array([1, 1, 1, 0, 0, 1], bool)
    # Bin 0.9: acc 0.75, gap 0.15 (4 of 6); bin 0.3: acc 0.5, gap 0.2 (2 of 6).
    assert ece(conf, correct) == pytest.approx(4 / 6 * 0.15 + 2 / 6 * 0.2)
    assert ece(np.array([]), np.array([], bool)) == 0.0


def test_threshold_respects_the_budget_and_the_cap():
    scores = np.linspace(0.0, 1.0, 1001)        # 1001 validation digits
    t = cal_mod.choose_threshold(scores, budget=0.01)
    assert (scores < t).mean() <= 0.01 and t == pytest.approx(0.01)
    confident = np.full(500, 0.99)              # a model that separates perfectly
    assert cal_mod.choose_threshold(confident, budget=0.002) == cal_mod.MAX_THRESHOLD


def test_fit_with_a_digit_output_reports_validation_rates():
    probs, labels = _overconfident(1000)
    rng = np.random.default_rng(1)
    digit = rng.uniform(0.6, 1.0, 1000)
    neg_digit = rng.uniform(0.0, 0.55, 200)
    c = fit(probs, labels, digit, probs[:200], neg_digit, budget=0.002)
    assert c.rule == "digit" and c.fitted and c.threshold <= 0.5
    assert c.validation["digits_rejected"] <= 0.002
    neg_answered = c.answers(c.probabilities(probs[:200]), neg_digit)
    assert c.validation["negatives_rejected"] == (~neg_answered).mean()
    assert c.validation["negatives_rejected"] >= (neg_digit < c.threshold).mean()
    without = fit(probs, labels, None)
    assert without.rule == "softmax"


def test_tradeoff_curve_is_monotone():
    rng = np.random.default_rng(2)
    scores = rng.uniform(0.3, 1, 500)
    correct = rng.uniform(0, 1, 500) < scores       # confident ones are more often right
    rows = tradeoff(scores, correct, rng.uniform(0, 0.5, 300))
    rejected = [r["digits_rejected"] for r in rows]
    negs = [r["negatives_rejected"] for r in rows]
    assert rejected == sorted(rejected) and negs == sorted(negs)
    assert rows[0]["threshold"] == 0.0 and rows[0]["digits_rejected"] == 0.0
    assert rows[-1]["accuracy_accepted"] > rows[0]["accuracy_accepted"]


def test_saved_calibration_round_trips_and_bad_files_fall_back(tmp_path):
    model = tmp_path / "default.keras"
    c = Calibration(temperature=1.7, rule="digit", threshold=0.3, fitted=True,
                    validation={"digits": 5})
    c.save(cal_mod.sidecar_path(model))
    assert (tmp_path / "default.calibration.json").is_file()
    assert load_for(model, has_digit_output=True) == c
    # A digit-rule calibration for a model without that output is not applied.
    assert load_for(model, has_digit_output=False) == Calibration.fallback(False)
    (tmp_path / "default.calibration.json").write_text('{"temperature": -3, "rule": "x"}')
    assert load_for(model, has_digit_output=True) == Calibration.fallback(True)
    assert cal_mod.sidecar_path(tmp_path / "run" / "model.keras").name == "calibration.json"
    assert load_for(None, False).rule == "softmax"


def test_fallback_rule_rejects_a_flat_softmax():
    fb = Calibration.fallback(False)
    probs = np.array([[0.1] * 10, [0.01] * 9 + [0.91]])
    assert fb.accept(fb.probabilities(probs), None).tolist() == [False, True]
    with pytest.raises(ValueError):
        Calibration(rule="vote")
    json.dumps(fb.to_dict())


def test_floor_respects_what_is_left_of_the_budget_and_the_cap():
    conf = np.linspace(0.2, 1.0, 1000)
    assert cal_mod.choose_floor(conf, 0) == 0.0                   # nothing left to reject
    f = cal_mod.choose_floor(conf, 5)
    assert (conf < f).sum() == 5 and f == conf[5]
    assert cal_mod.choose_floor(conf, 900) == cal_mod.MAX_CONFIDENCE_FLOOR
    assert cal_mod.choose_floor(np.full(10, 0.99), 3) == cal_mod.MAX_CONFIDENCE_FLOOR


def test_fit_puts_a_not_sure_floor_under_the_least_confident_digits():
    """The floor rejects the least confident digits, the rule's rejections counted first,
    within one budget; the wrong answers go first, so accuracy on the rest rises."""
    probs, labels = _overconfident(2000)
    digit = np.ones(2000)
    digit[:2] = 0.1                                  # two digits the rule already refuses
    c = fit(probs, labels, digit, budget=0.01)
    calibrated = c.probabilities(probs)
    answered = c.answers(calibrated, digit)
    assert c.rule == "digit" and 0 < c.min_confidence <= cal_mod.MAX_CONFIDENCE_FLOOR
    assert (~answered).sum() <= 20 and c.validation["digits_rejected"] == (~answered).mean()
    assert c.validation["digits_unsure"] == pytest.approx((~answered).mean() - 2 / 2000)
    correct = calibrated.argmax(1) == labels
    assert correct[answered].mean() > correct.mean()
    # The softmax rule's threshold already is a floor on that score: no second one.
    assert fit(probs, labels, None, budget=0.01).min_confidence == 0.0


def test_older_calibration_files_have_no_floor(tmp_path):
    model = tmp_path / "old.keras"
    cal_mod.sidecar_path(model).write_text(json.dumps(
        {"temperature": 1.1, "rule": "digit", "threshold": 0.5, "fitted": True}))
    c = load_for(model, has_digit_output=True)
    assert c.min_confidence == 0.0 and c.fitted
    with pytest.raises(ValueError):
        Calibration(min_confidence=1.5)
