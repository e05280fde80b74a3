"""Reading whole numbers: ``Reader.load(path).read(image) -> Reading``.

``read`` takes what ``Predictor.predict`` takes (path, bytes, file, PIL or numpy;
any size, polarity, alpha-only ink, EXIF, photos, 16-bit, CMYK), through the
same decoding and ink map (``locmnist.preprocess.ink_image``). Then:

1. the digits' height is estimated from the ink's connected components (the
   median height of the tall ones), and the ink is rescaled so digits reach the
   detector at ``TARGET_HEIGHT`` px, in the lower half of what it learned, whatever the
   image's size or aspect (a number across a 560x200 canvas included). A stroke
   much taller or smaller than the median that no accepted digit covers gets the ink
   read again at its own scale (``OFF_SCALE``);
2. the detector runs on the ink's region plus a margin, padded to multiples of 16;
3. peaks are decoded once for every runtime (``locmnist.decoding``), one label
   per digit, and boxes are mapped back to the input's pixels, left to right;
4. the closer look: each detected digit, alone (ink outside its box masked), is
   framed as the single-digit model learned (46 px tall in 75x75) and a
   single-digit model's classifier (``Predictor``, 99%+ on single digits) gives the
   label: by default the shipped localizer tuned on these crops
   (``locmnist.crop_tuning``). The detector finds digits well but confuses similar
   ones (4.5% of the digits in rows on the test split); the single-digit model
   rarely does;
5. which candidates are digits: with an ``Acceptance`` fitted for this detector
   (``locmnist.acceptance``), one logistic score of the peak, the classifier's
   ``digit`` output and where the ink lies, settled so that every accepted
   candidate stands against the accepted boxes alone (the strokes of an N do not
   vouch for each other); otherwise the peak against ``score_threshold`` and the
   ``digit`` output's veto.

Single calls never go through ``model.predict``: a ``tf.function`` with a
(1, None, None, 1) signature is traced once and is safe to call from threads.
``read`` goes through the detector's TFLite copy instead when ``Reader.load`` made
one (``locmnist.tflite_copy``; checked against TensorFlow on load): on one thread its
XNNPACK kernels took ~4.4 ms on a 96x240 input, TensorFlow ~7.5 ms; with
``tflite_runtime.THREADS`` on the 80x208 input a 560x280 drawing of a number now
becomes, ~1.9 ms (``python -m bench.probes reader_stages``). Batches
(``detect_canvases``: evaluation) stay on TensorFlow.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from locmnist.boxes import inside_share
from locmnist.decoding import Detections, decode_batch
from locmnist.detector import OUTPUT_NAMES, pad16
from locmnist.detector_config import DetectorConfig
from locmnist.preprocess import InvalidImage, ink_image
from locmnist.results import Digit, Reading

# How ``read`` frames an image (``frame_ink``): digits TARGET_HEIGHT px tall (they were
# 15..70 px in training) with MARGIN digit heights of context. Compared by ``python -m
# scripts.reader_framing`` (validation scenes, drawn numbers and digits; README, "Reading
# numbers"). Smaller frames read drawn numbers, whose digits differ in size, far better
# (a digit well above the median height ends near the top of the learned range), and
# took more letters and shapes for digits, until the acceptance settled its candidates
# (``Acceptance.settle``): with it, 27 px and 0.5 read 184 of 200 drawn numbers (30 px
# and 0.45: 165) and left 93.3% of the validation negatives clean (94.9%). A margin of
# 0.3 cost a lone drawn 7 its reading (its box came out small, leaving ink uncovered).
TARGET_HEIGHT = 27.0
MARGIN = 0.5
INK_LEVEL = 0.3           # ink map level that counts as a stroke for sizing
MAX_SIDE = 2048           # the rescaled region's longest side is capped (time and memory)
AGNOSTIC_IOU = 0.5        # a second label on the same ink is dropped (decoding step 4)
OFF_SCALE = 1.3           # a stroke this many times taller or smaller than the median
CLOSER_LOOK_INK = 46.0    # px: a digit's height in the single-digit model's 75x75 input
# The closer look keeps the ink inside each box shrunk by this share of its height per
# side: predicted edges overshoot a little, and a neighbour's stroke at the edge turned
# 9s into 4s and 1s into 7s. On the validation scenes the classifier's wrong labels on
# true digits fell from 109 to 69 (a 1 px margin outward, the previous rule; 2 px: 141).
MASK_INSET = 0.04
# The detector's TFLite interpreter keeps the buffers of the largest input it has run for
# the life of the process (a 2048x704 input: +150 MB), where TensorFlow frees its own. So
# larger inputs, whose forward pass dwarfs any per-call overhead, go through TensorFlow.
SINGLE_MAX_PIXELS = 512 * 512


def load_detector_export(path, fmt: str):
    """A callable ``f(x (N, H, W, 1) float32) -> {heatmap, size, offset}`` for a detector
    export written by ``locmnist.export`` ("savedmodel" directory or "tflite" file)."""
    path = Path(path)
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda x: {k: v.numpy() for k, v in serve(image=tf.constant(x, tf.float32)).items()
                          if k in OUTPUT_NAMES}
    if fmt == "tflite":
        from locmnist.tflite_runtime import tflite_maps_runner

        return tflite_maps_runner(path)
    raise ValueError(f"unknown detector export format {fmt!r}")


class Reader:
    """A loaded detector plus its config; ``read`` is thread-safe.

    ``model``: a Keras detector; or ``runner``, any ``f(x (N, H, W, 1)) -> {heatmap,
    size, offset}`` (a SavedModel or TFLite export, see ``locmnist.export``).
    """

    def __init__(self, model=None, config: DetectorConfig | None = None,
                 source: str = "<in memory>", runner=None, classifier=None,
                 acceptance=None):
        self.model, self.source, self.classifier = model, source, classifier
        self.config = config or DetectorConfig()
        self.acceptance = acceptance
        if runner is None:
            import tensorflow as tf

            forward = tf.function(model, input_signature=[
                tf.TensorSpec([None, None, None, 1], tf.float32)])
            runner = lambda x: {k: v.numpy() for k, v in forward(x).items()}  # noqa: E731
        self._run = runner
        # One canvas at a time (``read``) through a faster runtime with the same outputs
        # (``Reader.load`` sets the detector's TFLite copy here); None: ``_run``.
        self._single = None

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, classifier="default",
             tflite: bool = True) -> "Reader":
        """Load a detector: a .keras file or run directory, or an export (.tflite file,
        SavedModel directory). ``None`` loads ``$LOCMNIST_DETECTOR`` or the shipped
        ``models/detector.keras``. Raises ``InvalidModel`` otherwise.

        ``classifier``: the single-digit model for the closer look (step 4): a
        ``Predictor``, a model path, "default" (``runs.default_classifier_path()``: the
        shipped localizer tuned on these crops, ``locmnist.crop_tuning``), or None
        (labels straight from the detector).

        ``tflite=False`` skips the detector's TFLite copy for ``read``: for batch-only
        use (evaluation), where converting a new detector would only cost time."""
        from locmnist.model_files import load_detector_file
        from locmnist.runs import default_detector_path

        if isinstance(classifier, (str, os.PathLike)):
            from locmnist.inference import Predictor
            from locmnist.runs import default_classifier_path

            classifier = Predictor.load(default_classifier_path() if classifier == "default"
                                        else classifier)
        path = Path(path) if path else default_detector_path()
        if path.suffix.lower() == ".tflite" or (path / "saved_model.pb").is_file():
            from locmnist.runs import sidecar

            fmt = "tflite" if path.suffix.lower() == ".tflite" else "savedmodel"
            cfg_path = sidecar(path, "config")   # written by ``export`` beside the export
            config = DetectorConfig.load(cfg_path) if cfg_path.is_file() else None
            return cls(None, config, str(path), runner=load_detector_export(path, fmt),
                       classifier=classifier)
        from locmnist.acceptance import for_detector
        from locmnist.model_files import resolve_model_path

        model, config = load_detector_file(path)
        model_file = resolve_model_path(path)
        reader = cls(model, config, str(path), classifier=classifier,
                     acceptance=for_detector(model_file, getattr(classifier, "source", None)))
        reader._single = _tflite_copy(reader, model_file) if tflite else None
        return reader

    # -- raw canvases ----------------------------------------------------------
    def raw_outputs(self, canvases: np.ndarray, single: bool = False) -> dict:
        """{heatmap, size, offset} numpy maps for canvases (N, H, W, 1) in 0..1.

        ``single``: one canvas, through the detector's single-canvas runtime (its TFLite
        copy, if any, up to SINGLE_MAX_PIXELS); batches stay on TensorFlow."""
        x = pad16(np.asarray(canvases, np.float32).reshape(*np.shape(canvases)[:3], 1))
        small = x.shape[1] * x.shape[2] <= SINGLE_MAX_PIXELS
        return (self._single if single and self._single is not None and small else self._run)(x)

    def detect_canvases(self, canvases: np.ndarray, threshold: float = 0.05,
                        agnostic_iou: float | None = None, batch_size: int = 32,
                        progress=None) -> list[Detections]:
        """Detections per canvas (N, H, W[, 1]), uint8 (0..255) or float (0..1).

        The defaults keep every peak >= 0.05 (for mAP); reading uses the config's
        ``score_threshold`` and one label per digit.
        """
        canvases = np.asarray(canvases)
        out = []
        for i in range(0, len(canvases), batch_size):
            x = canvases[i:i + batch_size]
            x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
            out += decode_batch(self.raw_outputs(x), threshold=threshold,
                                top_k=self.config.top_k, agnostic_iou=agnostic_iou)
            if progress:
                progress(min(1.0, (i + batch_size) / len(canvases)))
        return out

    @property
    def candidate_threshold(self) -> float:
        """The lowest detector peak that may become a digit (an Acceptance's ``min_peak``
        where it applies, else the config's ``score_threshold``)."""
        return self.acceptance.min_peak if self.accepting else self.config.score_threshold

    @property
    def accepting(self) -> bool:
        """Whether step 5 uses the fitted Acceptance: it needs a classifier with a
        fitted ``digit`` output, one of its features."""
        cal = getattr(self.classifier, "calibration", None)
        return (self.acceptance is not None and cal is not None and cal.rule == "digit"
                and cal.fitted)

    def read_canvas(self, canvas: np.ndarray) -> Detections:
        """Reading-level detections on one ready canvas (H, W) in 0..1 (no rescaling),
        through the detector's single-canvas runtime (``raw_outputs(single=True)``)."""
        maps = self.raw_outputs(np.asarray(canvas)[None], single=True)
        det = decode_batch(maps, threshold=self.candidate_threshold, top_k=self.config.top_k,
                           agnostic_iou=AGNOSTIC_IOU)[0]
        return self.closer_look(canvas, det)

    def closer_look(self, canvas: np.ndarray, det: Detections) -> Detections:
        """Steps 4 and 5 on candidates ``det``: labels from the single-digit classifier,
        and which candidates are digits. Unchanged without a classifier.

        With a fitted Acceptance the confidence is its probability x the classifier's
        calibrated probability of the label. Without one, the confidence is the
        detector's peak x that probability, and a classifier with a fitted ``digit``
        output (``locmnist.calibration``, rule "digit") vetoes: a detection it calls
        "not a digit" is dropped. That output was trained on the same non-digit strokes
        (``locmnist.negatives``) the detector sees, and, looking at one stroke group
        alone, it rejects letters and shapes the heatmap alone takes for digits. The
        max-softmax fallback does not veto: on a crop it rejects real digits too.

        A candidate the fitted Acceptance rejects whatever the ``digit`` output says
        (``Acceptance.possible``) is dropped without a crop: the same result, one
        single-digit model run (~0.8 ms) less."""
        if self.classifier is None or len(det) == 0:
            return det
        canvas = np.asarray(canvas, np.float32).reshape(np.shape(canvas)[:2])
        if canvas.max() > 1.0:
            canvas = canvas / 255.0
        n = len(det)
        look = np.ones(n, bool)   # the candidates whose crops the classifier sees
        if self.accepting:
            from locmnist.acceptance import features, inside_better, ink_features

            # Every feature but the classifier's ``digit`` output is known now: a candidate
            # the acceptance rejects even at the most favourable ``digit`` needs no crop.
            known = (*ink_features(canvas, det.boxes), inside_better(det.boxes, det.scores))
            look = self.acceptance.possible(det.scores, *known)
        probs, digit = np.full((n, 10), 0.1, np.float32), None   # (n, 10): unseen stay flat
        if look.any():
            # A number's few crops go as one batch: a small batch runs on the TFLite
            # copy's interpreter for that size (``tflite_runtime.SMALL_BATCH``).
            seen, _, digit_seen = self.classifier.raw_outputs(
                closer_look_inputs(canvas, det.boxes[look]))
            probs[look] = seen
            if digit_seen is not None:
                digit = np.zeros(n, np.float32)
                digit[look] = digit_seen
        cal = self.classifier.calibration
        probs = cal.probabilities(probs)
        labels = probs.argmax(axis=1)
        p_label = probs[np.arange(len(labels)), labels]
        if self.accepting and digit is not None:
            p_digit = self.acceptance.probability(features(det.scores, digit, *known))
            keep = look & (p_digit >= self.acceptance.threshold) & (
                det.scores >= self.acceptance.min_peak)
            inside = known[2]
            keep, p_digit = self.acceptance.settle(canvas, det.boxes, det.scores, digit,
                                                   inside, p_digit, keep)
            scores = p_digit * p_label
        else:
            scores = det.scores * p_label
            keep = np.ones(len(labels), bool)
            if cal.rule == "digit" and cal.fitted and digit is not None:
                keep = cal.accept(probs, digit)
        keep &= look
        return Detections(det.boxes[keep], scores[keep].astype(np.float32),
                          labels[keep].astype(np.int64))

    # -- any image -------------------------------------------------------------
    def read(self, image) -> Reading:
        """The digits in ``image``, left to right, and the number they spell.

        Raises ``InvalidImage`` (a ValueError) with a message fit for users.
        """
        ink, factor, size, reason = ink_image(image)
        if reason is None and not (ink >= INK_LEVEL).any():
            reason = "no digit found: no ink strokes"
        if reason:
            return Reading((), size, reason, np.zeros((16, 16), np.float32))
        strokes = tall_strokes(ink)                               # (K, 4) ink px
        heights = strokes[:, 3] - strokes[:, 1]
        median = float(np.median(heights))
        x, boxes, dets = self._read_at(ink, median)
        covered = _covered(strokes, boxes)
        # Other scales: a digit written much taller (or smaller) than the others reaches
        # the detector far from the median height it was framed for, is missed, and its
        # ink, left uncovered, costs every other candidate its acceptance too ("305" with
        # a tall 0 read as ""). So when such strokes are left uncovered, the ink is read
        # again framed for the tallest of them, and for the smallest, and the reading that
        # covers the most tall strokes is kept (the first one on a tie).
        ratio = heights / median
        taller = heights[~covered & (ratio >= OFF_SCALE)]
        smaller = heights[~covered & (ratio <= 1 / OFF_SCALE)]
        for height in ([taller.max()] if len(taller) else []) + (
                [smaller.min()] if len(smaller) else []):
            x2, boxes2, dets2 = self._read_at(ink, float(height))
            covered2 = _covered(strokes, boxes2)
            if covered2.sum() > covered.sum():
                x, boxes, dets, covered = x2, boxes2, dets2, covered2
        if not np.isfinite(dets.scores).all():
            return Reading((), size, "the model gave no valid output (NaN)", x)
        w, h = size
        digits = []
        # ink px -> input px, clipped to the image (one array op: np.clip on each scalar
        # cost ~10 us a call, 0.2 ms for a number of four digits)
        clipped = np.minimum(np.maximum(boxes * factor, 0.0), [w, h, w, h])
        for b, score, label in zip(clipped.tolist(), dets.scores.tolist(), dets.labels.tolist()):
            b = tuple(b)
            if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                continue  # a box wholly in the margin: nothing of the image is in it
            digits.append(Digit(int(label), float(score), b, (b[0] / w, b[1] / h, b[2] / w,
                                                                b[3] / h)))
        digits.sort(key=lambda d: d.box[0] + d.box[2])
        message = "" if digits else "no digit found"
        return Reading(tuple(digits), size, message, x)

    def _read_at(self, ink: np.ndarray, height: float):
        """(model input (H, W), boxes (N, 4) in ink px, reading-level Detections) of the
        ink framed so that strokes ``height`` ink px tall reach the detector at
        TARGET_HEIGHT."""
        x, (ox, oy, sx, sy) = frame_ink(ink, height)
        dets = self.read_canvas(x)
        boxes = (np.array([ox, oy, ox, oy]) + np.asarray(dets.boxes, np.float64).reshape(-1, 4)
                 / np.array([sx, sy, sx, sy]))                     # model px -> ink px
        return x, boxes, dets


def _tflite_copy(reader: Reader, model_file: Path):
    """The detector's TFLite copy as a maps runner (``tflite_runtime.maps_runner``), from
    the cache or converted now, or None when it does not convert or its outputs differ
    from TensorFlow's: then ``read`` stays on TensorFlow. Only a faster runtime."""
    from locmnist.tflite_copy import tflite_copy
    from locmnist.tflite_runtime import maps_runner

    try:
        lite = tflite_copy(reader.model, model_file, maps_runner)
        x = np.random.default_rng(0).random((1, 48, 80, 1), dtype=np.float32)
        ours, theirs = reader._run(x), lite(x)
        if all(np.allclose(ours[k], theirs[k], atol=1e-4) for k in OUTPUT_NAMES):
            return lite
        return None
    except Exception:  # an unusual user model, a read-only cache: TensorFlow
        return None


def closer_look_inputs(canvas: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 75, 75, 1) single-digit inputs: each box's ink alone (outside its box, inset
    by MASK_INSET, masked, so a neighbour's strokes do not intrude), centred on the box,
    the box CLOSER_LOOK_INK px tall."""
    h, w = canvas.shape
    canvas = np.asarray(canvas, np.float32)
    out = np.zeros((len(boxes), 75, 75, 1), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        inset = MASK_INSET * (y1 - y0)
        ix0, iy0 = max(0, int(np.floor(x0 + inset))), max(0, int(np.floor(y0 + inset)))
        ix1, iy1 = min(w, int(np.ceil(x1 - inset))), min(h, int(np.ceil(y1 - inset)))
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        side = max(x1 - x0, y1 - y0, 1.0) * 75 / CLOSER_LOOK_INK
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # The crop window, zeros but for the box's own ink (what cropping a copy of the
        # canvas masked outside the box would give, without copying the whole canvas).
        wx0, wy0 = round(cx - side / 2), round(cy - side / 2)
        window = np.zeros((round(cy + side / 2) - wy0, round(cx + side / 2) - wx0), np.float32)
        sx0, sy0 = max(ix0, wx0), max(iy0, wy0)
        sx1, sy1 = min(ix1, wx0 + window.shape[1]), min(iy1, wy0 + window.shape[0])
        if sx1 > sx0 and sy1 > sy0:
            window[sy0 - wy0:sy1 - wy0, sx0 - wx0:sx1 - wx0] = canvas[sy0:sy1, sx0:sx1]
        x = np.asarray(Image.fromarray(window, mode="F").resize(
            (75, 75), Image.BOX if side > 75 else Image.BILINEAR), np.float32)
        peak = float(x.max())
        out[k, ..., 0] = np.clip(x / peak, 0, 1) if peak > 0.05 else x
    return out


def tall_strokes(ink: np.ndarray) -> np.ndarray:
    """(K, 4) boxes, in ``ink``'s pixels, of its tall strokes: connected components
    (8-neighbour) of ink >= INK_LEVEL at least 40% as tall as the tallest, so specks and
    fragments are left out. (0, 4) without ink."""
    from scipy import ndimage

    mask = ink >= INK_LEVEL
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return np.zeros((0, 4))
    # Labelled on the ink's bounding box only: labelling costs per pixel (a 560x280
    # drawing: 0.7 ms on the whole ink map, 0.3 ms on its box).
    labels, _ = ndimage.label(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1],
                              structure=np.ones((3, 3), bool))
    boxes = np.array([(c.start, r.start, c.stop, r.stop)
                      for r, c in ndimage.find_objects(labels)], np.float64)
    boxes += np.array([cols[0], rows[0], cols[0], rows[0]])
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[heights >= 0.4 * heights.max()]


def digit_height(ink: np.ndarray) -> float:
    """The digits' ink height in ink pixels: the median height of the tall strokes
    (``tall_strokes``), so a row or a scatter of digits gives a typical digit's height,
    not the whole ink's."""
    strokes = tall_strokes(ink)
    if not len(strokes):
        return float(ink.shape[0])
    return float(np.median(strokes[:, 3] - strokes[:, 1]))


def _covered(strokes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K,) bool: which strokes (K, 4) have at least half their box inside one of ``boxes``
    (N, 4), both in the same pixels."""
    if not len(boxes) or not len(strokes):
        return np.zeros(len(strokes), bool)
    return (inside_share(strokes, boxes) >= 0.5).any(axis=1)


def frame_ink(ink: np.ndarray, height: float | None = None
              ) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """(model input (H, W) float32 in 0..1, (x0, y0, sx, sy)): ink x = x0 + model x / sx.

    Strokes ``height`` ink px tall (default: ``digit_height``) reach the detector at
    TARGET_HEIGHT, with MARGIN such heights of context around the ink."""
    mask = ink >= INK_LEVEL
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    dh = digit_height(ink) if height is None else float(height)
    scale = TARGET_HEIGHT / max(dh, 1.0)
    m = MARGIN * dh
    x0, y0 = cols[0] - m, rows[0] - m
    x1, y1 = cols[-1] + 1 + m, rows[-1] + 1 + m
    scale = min(scale, MAX_SIDE / max(x1 - x0, y1 - y0))
    out_w, out_h = max(16, round((x1 - x0) * scale)), max(16, round((y1 - y0) * scale))
    x0, y0 = int(np.floor(x0)), int(np.floor(y0))
    x1, y1 = x0 + int(np.ceil(out_w / scale)), y0 + int(np.ceil(out_h / scale))
    crop = Image.fromarray(ink, mode="F").crop((x0, y0, x1, y1))  # zeros outside the image
    resample = Image.BOX if scale < 1 else Image.BILINEAR
    x = np.asarray(crop.resize((out_w, out_h), resample), np.float32)
    peak = float(x.max())
    if 0.05 < peak < 1.0:
        x = x / peak  # thin strokes fade when shrunk: restore contrast, as prepare() does
    # The exact scales after rounding (x and y differ slightly).
    return np.clip(x, 0.0, 1.0), (float(x0), float(y0), out_w / (x1 - x0), out_h / (y1 - y0))


__all__ = ["Reader", "Reading", "Digit", "InvalidImage"]
