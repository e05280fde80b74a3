"""Confidences that mean what they say, and when to answer "not a digit".

A ``Calibration`` is saved beside every model we train (``calibration.json`` in
a run directory, ``x.calibration.json`` beside a shipped ``x.keras``; the names
are ``locmnist.runs``'s). It holds:

* ``temperature``: the softmax is re-scaled as softmax(log p / T), with T fitted
  on the validation digits by minimising their negative log-likelihood
  (temperature scaling, Guo et al. 2017). It changes confidences, never the label;
* ``rule`` and ``threshold``: a canvas is "not a digit" when its score is below
  the threshold. ``rule="digit"``: the score is the model's ``digit`` output (is
  there a digit at all; see ``locmnist.model``). ``rule="softmax"``: the score is
  the calibrated top probability, the fallback for models without that output
  (reference-format and ``seed`` models);
* the threshold is chosen from data: the highest one that rejects at most
  ``cfg.reject_budget`` of the validation digits, capped at 0.5 (a sigmoid's
  even odds). ``tradeoff`` gives the whole curve it is picked from;
* ``min_confidence`` (rule "digit" only): a digit the model is sure is there, but
  whose calibrated top probability is below this floor, is answered "not sure"
  (selective classification: most wrong answers are the least confident ones).
  Fitted like the threshold, on what is left of the same budget, capped at 0.5,
  so "not a digit" and "not sure" together reject at most ``reject_budget`` of
  the validation digits. The multi-digit reader does not apply it: a detection's
  confidence already multiplies in the classifier's (``locmnist.reader``).

A model without a saved calibration gets ``Calibration.fallback``: T = 1 and
threshold 0.5 on its digit output, or on its top softmax probability.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RULES = ("digit", "softmax")
FALLBACK_THRESHOLD = 0.5
MAX_THRESHOLD = 0.5
MAX_CONFIDENCE_FLOOR = 0.5
ECE_BINS = 15


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    rule: str = "softmax"
    threshold: float = FALLBACK_THRESHOLD
    min_confidence: float = 0.0         # below it, a digit is answered "not sure"
    fitted: bool = False                # False: the fallback, nothing was fitted
    validation: dict | None = None      # what the fit saw: counts and rates, for the record

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {self.temperature!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence!r}")

    @classmethod
    def fallback(cls, has_digit_output: bool) -> "Calibration":
        return cls(rule="digit" if has_digit_output else "softmax")

    def probabilities(self, probs: np.ndarray) -> np.ndarray:
        """Temperature-scaled probabilities, same shape as ``probs`` (..., 10)."""
        return rescale(probs, self.temperature)

    def scores(self, calibrated: np.ndarray, digit: np.ndarray | None) -> np.ndarray:
        """(N,) the score the threshold applies to, from calibrated probabilities (N, 10)."""
        if self.rule == "digit" and digit is not None:
            return np.asarray(digit, np.float64).reshape(len(calibrated))
        return np.asarray(calibrated).max(axis=-1)

    def accept(self, calibrated: np.ndarray, digit: np.ndarray | None) -> np.ndarray:
        """(N,) bool: True where the model names a digit, False for "not a digit"."""
        return self.scores(calibrated, digit) >= self.threshold

    def confident(self, calibrated: np.ndarray) -> np.ndarray:
        """(N,) bool: False where the calibrated top probability is under the floor."""
        return np.asarray(calibrated).max(axis=-1) >= self.min_confidence

    def answers(self, calibrated: np.ndarray, digit: np.ndarray | None) -> np.ndarray:
        """(N,) bool: True where a digit is named: accepted, and confident enough."""
        return self.accept(calibrated, digit) & self.confident(calibrated)

    # -- persistence -------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(temperature=float(d["temperature"]), rule=str(d["rule"]),
                   threshold=float(d["threshold"]),
                   min_confidence=float(d.get("min_confidence", 0.0)),  # older files: none
                   fitted=bool(d.get("fitted", True)), validation=d.get("validation"))

    def save(self, path: str | os.PathLike) -> None:
        from locmnist.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2))


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """Where a model's calibration lives: a run's ``calibration.json``, or ``x.calibration.json``
    beside any other ``x.keras`` (names from ``locmnist.runs``)."""
    from locmnist.runs import model_file, sidecar

    return sidecar(model_file(model_path), "calibration")


def load_for(model_path: str | os.PathLike | None, has_digit_output: bool) -> Calibration:
    """The saved calibration of a model file, or the fallback when there is none.

    A calibration that cannot be read (damaged, hand-edited, for another kind of
    model) never blocks inference: the fallback is used instead.
    """
    if model_path is not None:
        try:
            cal = Calibration.from_dict(json.loads(sidecar_path(model_path).read_text()))
            if cal.rule == "digit" and not has_digit_output:
                raise ValueError("a digit-output calibration for a model without one")
            return cal
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return Calibration.fallback(has_digit_output)


# --- fitting ---------------------------------------------------------------------

def rescale(probs: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the NLL of softmax(log p / T): golden-section on log T."""
    lo, hi = np.log(0.05), np.log(20.0)
    f = lambda lt: nll(rescale(probs, float(np.exp(lt))), labels)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = f(a), f(b)
    for _ in range(40):  # the NLL is unimodal in log T; 40 steps: |interval| < 1e-7
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = f(b)
    return float(np.exp((lo + hi) / 2))


def choose_threshold(digit_scores: np.ndarray, budget: float) -> float:
    """The highest threshold (<= MAX_THRESHOLD) that rejects at most ``budget`` of the digits."""
    s = np.sort(np.asarray(digit_scores, np.float64).ravel())
    if not len(s):
        return FALLBACK_THRESHOLD
    allowed = int(np.floor(budget * len(s)))  # digits that may fall below the threshold
    return float(min(MAX_THRESHOLD, s[allowed]))  # s[allowed] itself is accepted (>=)


def choose_floor(confidence: np.ndarray, allowed: int) -> float:
    """The highest floor (<= MAX_CONFIDENCE_FLOOR) under which at most ``allowed`` of
    these top probabilities fall; 0.0 when none may."""
    c = np.sort(np.asarray(confidence, np.float64).ravel())
    if allowed < 1 or not len(c):
        return 0.0
    if allowed >= len(c):
        return MAX_CONFIDENCE_FLOOR
    return float(min(MAX_CONFIDENCE_FLOOR, c[allowed]))  # c[allowed] itself is kept (>=)


def fit(probs: np.ndarray, labels: np.ndarray, digit: np.ndarray | None,
        negative_probs: np.ndarray | None = None, negative_digit: np.ndarray | None = None,
        budget: float = 0.002) -> Calibration:
    """Fit temperature and threshold on validation digits (and report validation negatives).

    ``probs`` (N, 10) and ``labels`` (N,) of validation digits; ``digit`` their
    digit-output scores (N,) or None for a model without that output.
    """
    t = fit_temperature(probs, labels)
    rule = "digit" if digit is not None else "softmax"
    base = Calibration(temperature=t, rule=rule)
    calibrated = base.probabilities(probs)
    threshold = choose_threshold(base.scores(calibrated, digit), budget)
    floor = 0.0
    if rule == "digit":  # the softmax rule's threshold already is a floor on the same score
        accepted = Calibration(temperature=t, rule=rule, threshold=threshold).accept(
            calibrated, digit)
        allowed = int(np.floor(budget * len(labels))) - int((~accepted).sum())
        floor = choose_floor(calibrated[accepted].max(axis=1), allowed)
    cal = Calibration(temperature=t, rule=rule, threshold=threshold, min_confidence=floor,
                      fitted=True)
    record = {"digits": int(len(labels)), "budget": budget,
              "digits_rejected": float((~cal.answers(calibrated, digit)).mean()),
              "digits_unsure": float((cal.accept(calibrated, digit)
                                      & ~cal.confident(calibrated)).mean()),
              "ece_before": ece(probs.max(1), probs.argmax(1) == labels),
              "ece_after": ece(calibrated.max(1), calibrated.argmax(1) == labels)}
    if negative_probs is not None and len(negative_probs):
        neg_cal = cal.probabilities(negative_probs)
        record["negatives"] = int(len(negative_probs))
        record["negatives_rejected"] = float((~cal.answers(neg_cal, negative_digit)).mean())
    return Calibration(temperature=t, rule=rule, threshold=threshold, min_confidence=floor,
                       fitted=True, validation=record)


# --- measuring ---------------------------------------------------------------------

def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width confidence bin: its range, count, mean confidence and accuracy."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                    "confidence": float(confidence[m].mean()) if m.any() else None,
                    "accuracy": float(correct[m].mean()) if m.any() else None})
    return out


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over bins."""
    n = len(confidence)
    if not n:
        return 0.0
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(confidence, correct, bins) if b["n"]))


def tradeoff(digit_scores: np.ndarray, correct: np.ndarray, negative_scores: np.ndarray,
             thresholds: np.ndarray | None = None) -> list[dict]:
    """The rejection trade-off: per threshold, the share of digits rejected, the accuracy
    on the digits accepted, and the share of negatives rejected."""
    digit_scores = np.asarray(digit_scores, np.float64)
    negative_scores = np.asarray(negative_scores, np.float64)
    correct = np.asarray(correct, bool)
    if thresholds is None:
        thresholds = np.unique(np.concatenate([[0.0], np.linspace(0.05, 0.95, 19),
                                               [0.001, 0.01, 0.02, 0.99, 0.999]]))
    rows = []
    for t in thresholds:
        acc = digit_scores >= t
        rows.append({"threshold": float(t),
                     "digits_rejected": float(1 - acc.mean()) if len(acc) else 0.0,
                     "accuracy_accepted": float(correct[acc].mean()) if acc.any() else None,
                     "negatives_rejected": float((negative_scores < t).mean())
                     if len(negative_scores) else None})
    return rows
