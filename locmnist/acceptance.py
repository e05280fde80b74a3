"""Which detections are digits: one logistic score from what the reader sees.

The detector's centre peak alone cannot tell digits from letters and shapes: real
digits often peak at only 0.2-0.6, and a letter's fragment as high. So the reader
keeps every peak down to ``min_peak`` as a candidate and accepts one when

    sigmoid(w . (logit(peak), logit(digit), log1p(leak), uncovered, inside) + b) >= threshold

* ``peak``: the detector's centre peak;
* ``digit``: the single-digit model's "is this a digit" output on the candidate's
  closer-look crop (``locmnist.reader.closer_look_inputs``);
* ``leak``: ink connected to the candidate's own ink that lies outside every
  candidate's box, per pixel of ink in its box. A digit's strokes end inside its
  box (or in a neighbour's, itself a candidate); a box on a fragment of a star, a
  word or a scribble leaks;
* ``uncovered``: the share of the canvas's ink outside every candidate's box: a
  number is all digits, a word or a drawing is mostly not;
* ``inside``: the largest share of the candidate's box inside the box of a candidate
  with a higher peak: the loop of a 9 or the stem of a 4 found again as a digit of
  its own (one label per digit only drops boxes that overlap at IoU > 0.5).

Accepted candidates must then stand as digits on their own (``Acceptance.settle``):
``leak`` and ``uncovered`` are measured again against the accepted candidates' boxes
only, and a candidate that falls below the threshold is dropped, until none does. Two
candidates on the two strokes of an N, a V or an M cover each other's ink; once the
weaker one is rejected, the stronger one's stroke leaks into ink no digit covers.

The weights, threshold and ``min_peak`` are fitted on validation scenes
(``python -m locmnist.acceptance_fit``; never the test split) for one detector and
one classifier, and saved beside the detector (``models/detector.acceptance.json``)
with both model files' SHA-256: a retrained detector or single-digit model does not
inherit them (the reader then falls back to ``score_threshold`` and the veto).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from locmnist.boxes import inside_share

FEATURES = ("peak", "digit", "leak", "uncovered", "inside")
INK = 0.3          # ink map level that counts as a stroke (as the reader's sizing)
EPS = 1e-4


@dataclass(frozen=True)
class Acceptance:
    weights: tuple[float, ...]      # one per FEATURES
    bias: float
    threshold: float                # accept where the probability is at least this
    min_peak: float                 # candidates: detector peaks at least this high
    detector_sha256: str = ""       # the detector these were fitted for ("" = any)
    classifier_sha256: str = ""     # the single-digit model whose ``digit`` output they use
    validation: dict = field(default_factory=dict)   # what the fit measured

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES):
            raise ValueError(f"need {len(FEATURES)} weights ({', '.join(FEATURES)})")
        if not 0.0 < self.min_peak < 1.0 or not 0.0 <= self.threshold <= 1.0:
            raise ValueError("min_peak must be in (0, 1) and threshold in [0, 1]")

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(N,) probability that each candidate is a digit, from ``features`` (N, 5)."""
        z = np.asarray(x, np.float64).reshape(-1, len(FEATURES)) @ np.asarray(self.weights)
        return 1.0 / (1.0 + np.exp(-(z + self.bias)))

    def possible(self, peak, leak, uncovered, inside) -> np.ndarray:
        """(N,) bool: the candidates that some ``digit`` output could get accepted.

        Every other feature is known before the classifier looks at the candidates'
        crops, and the probability is monotonic in logit(digit), itself clipped to
        [EPS, 1 - EPS]: at both ends it bounds what any crop could give. The reader
        skips the crops of the rest, whose rejection is certain (1e-9 covers rounding).
        """
        n = len(np.reshape(peak, -1))
        best = np.max([self.probability(features(peak, np.full(n, d), leak, uncovered, inside))
                       for d in (0.0, 1.0)], axis=0)
        return (best >= self.threshold - 1e-9) & (np.reshape(peak, -1) >= self.min_peak)

    def settle(self, canvas: np.ndarray, boxes: np.ndarray, peak, digit, inside,
               prob: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keep (N,) bool, probability (N,)): the candidates ``keep`` that the first
        decision accepted (``prob``: features against every candidate's box), narrowed
        until each is accepted with ``leak`` and ``uncovered`` measured against the
        accepted boxes only; a kept candidate's probability is its last round's.

        ``inside`` stays as it was (against every higher peak). A round either accepts
        every candidate left or drops at least one, so it ends within N rounds; removing
        boxes only adds leak and uncovered ink, which the fitted (negative) weights count
        against a candidate. When every candidate is accepted, the boxes are the first
        decision's: nothing to measure again.
        """
        keep, prob = np.asarray(keep, bool).copy(), np.asarray(prob, np.float64).copy()
        peak, digit, inside = (np.asarray(v, np.float64).reshape(-1) for v in (peak, digit, inside))
        while keep.any() and not keep.all():
            idx = np.flatnonzero(keep)
            leak, uncovered = ink_features(canvas, np.asarray(boxes)[idx])
            prob[idx] = self.probability(features(peak[idx], digit[idx], leak, uncovered,
                                                  inside[idx]))
            rejected = prob[idx] < self.threshold
            if not rejected.any():
                break
            keep[idx[rejected]] = False
        return keep, prob

    def save(self, path: str | Path) -> None:
        from locmnist.files import atomic_write_text

        d = asdict(self)
        d["features"] = list(FEATURES)
        atomic_write_text(path, json.dumps(d, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Acceptance":
        d = json.loads(Path(path).read_text())
        if not isinstance(d, dict):
            raise ValueError(f"{path}: not a JSON object")
        if tuple(d.get("features", ())) != FEATURES:
            raise ValueError(f"{path}: features {d.get('features')} are not {FEATURES}")
        return cls(tuple(float(w) for w in d["weights"]), float(d["bias"]),
                   float(d["threshold"]), float(d["min_peak"]),
                   str(d.get("detector_sha256", "")), str(d.get("classifier_sha256", "")),
                   dict(d.get("validation", {})))


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def for_detector(path: str | Path, classifier_path: str | Path | None = None) -> Acceptance | None:
    """The acceptance saved beside a detector file, if it was fitted for that file and
    for the single-digit model file ``classifier_path`` (when that is a file).

    Like a calibration, a file that cannot be read (damaged, hand-edited) never blocks
    reading: None, and the reader keeps its plain rule.
    """
    from locmnist.runs import model_file, sidecar

    classifier_path = None if classifier_path is None else model_file(classifier_path)
    p = sidecar(path, "acceptance")
    if not p.is_file() or not Path(path).is_file():
        return None
    try:
        acc = Acceptance.load(p)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if acc.detector_sha256 and acc.detector_sha256 != file_sha256(path):
        return None   # fitted for another detector: its weights would mean nothing here
    if (acc.classifier_sha256 and classifier_path is not None and classifier_path.is_file()
            and acc.classifier_sha256 != file_sha256(classifier_path)):
        return None   # another single-digit model: its ``digit`` output is another feature
    return acc


def inside_better(boxes: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """(N,) the largest share of each box's area inside a box with a higher peak."""
    share = inside_share(boxes, boxes)
    p = np.asarray(peaks, np.float64).reshape(-1)
    share[~(p[None, :] > p[:, None])] = 0.0         # only boxes with a higher peak count
    return share.max(axis=1) if len(share) else np.zeros(0)


def ink_features(canvas: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(leak (N,), uncovered (N,)) for candidate boxes (N, 4) on a canvas (H, W) in 0..1."""
    from scipy import ndimage

    ink = np.asarray(canvas) >= INK
    n = len(boxes)
    # Each box as a (rows, cols) slice: per-box work stays inside its box.
    boxes_px = [(slice(max(0, round(y0)), max(0, round(y1))),
                 slice(max(0, round(x0)), max(0, round(x1))))
                for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4)]
    union = np.zeros(ink.shape, bool)
    for box in boxes_px:
        union[box] = True
    labels, n_labels = ndimage.label(ink, structure=np.ones((3, 3), bool))
    bare = ink & ~union                         # the ink no box covers
    counts = np.bincount(labels[bare], minlength=n_labels + 1)   # its pixels per component
    counts[0] = 0
    leak = np.zeros(n)
    for k, box in enumerate(boxes_px):
        own = labels[box][ink[box]]             # component ids of the box's own ink
        leak[k] = counts[np.unique(own)].sum() / max(len(own), 1)
    uncovered = bare.sum() / max(int(ink.sum()), 1)
    return leak, np.full(n, uncovered)


def features(peak, digit, leak, uncovered, inside) -> np.ndarray:
    """(N, 5) model inputs in FEATURES order."""
    def logit(p):
        p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
        return np.log(p / (1 - p))

    return np.stack([logit(peak), logit(digit),
                     np.log1p(np.asarray(leak, np.float64)),
                     np.asarray(uncovered, np.float64), np.asarray(inside, np.float64)],
                    axis=1).reshape(-1, len(FEATURES))
