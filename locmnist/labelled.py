"""Labelled images from outside MNIST: read them, turn them into training digits, score them.

Sources (``load_labelled``):

* a corrections database (``locmnist.corrections``, an SQLite file);
* a folder, or a zip, holding ``labels.csv`` with columns ``file,label`` and
  optionally ``xmin,ymin,xmax,ymax`` (the normalized box of the digit on the
  image) -- what ``CorrectionStore.export_zip`` writes.

``to_digits`` turns each image into an MNIST-like 28x28 digit (the ink inside its
box, longer side 20 px, centred), so extra images go through exactly the same
synthesis as MNIST digits: random size, rotation, thickness and placement on the
75x75 canvas, with the tight ink box as target.
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from locmnist.corrections import (LABELS_CSV, MAX_IMAGE_BYTES, Correction, CorrectionStore,
                                  check_box)

MAX_FILES = 100_000
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Labelled:
    name: str                    # file name or "correction 12", for messages
    png: bytes                   # the image file's bytes (any format predict accepts)
    label: int
    box: tuple[float, float, float, float] | None   # normalized on the image; None = find ink


def is_database(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def load_labelled(source: str | Path) -> tuple[list[Labelled], list[str]]:
    """(examples, problems): every usable example, and one line per one that is not."""
    p = Path(source)
    if p.is_dir():
        return _from_rows(_read_csv((p / LABELS_CSV).read_bytes() if (p / LABELS_CSV).exists()
                                    else None, p), lambda name: _read_in_dir(p, name))
    if not p.exists():
        raise FileNotFoundError(f"no such file or folder: {p}")
    if is_database(p):
        return _from_store(CorrectionStore(p))
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            members = {i.filename: i for i in z.infolist()}
            if len(members) > MAX_FILES + 1:
                raise ValueError(f"{p.name} holds more than {MAX_FILES} files")
            csv_bytes = z.read(LABELS_CSV) if LABELS_CSV in members else None
            return _from_rows(_read_csv(csv_bytes, p), lambda name: _read_in_zip(z, members, name))
    raise ValueError(f"{p} is neither a corrections database, a zip nor a folder")


def _from_store(store: CorrectionStore) -> tuple[list[Labelled], list[str]]:
    examples, problems = [], []
    for row in store.read():
        if isinstance(row, Correction):
            examples.append(Labelled(f"correction {row.id}", row.png, row.label, row.box))
        else:
            problems.append(f"correction {row.id}: unreadable ({row.reason})")
    return examples, problems


def _read_csv(raw: bytes | None, where: Path) -> list[dict]:
    if raw is None:
        raise ValueError(f"{where} has no {LABELS_CSV} (columns: file,label[,xmin,ymin,xmax,ymax])")
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{where}/{LABELS_CSV} is not a readable CSV: {e}") from None
    if rows and not {"file", "label"} <= set(rows[0]):
        raise ValueError(f"{where}/{LABELS_CSV} needs the columns file and label")
    return rows[:MAX_FILES]


def _from_rows(rows: list[dict], read) -> tuple[list[Labelled], list[str]]:
    examples, problems = [], []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        name = str(row.get("file") or "")
        try:
            label = int(str(row.get("label", "")).strip())
            if not 0 <= label <= 9:
                raise ValueError(f"label {label} is not a digit")
            coords = [row.get(k) for k in ("xmin", "ymin", "xmax", "ymax")]
            box = None if all(c in (None, "") for c in coords) else check_box(coords)
            examples.append(Labelled(name, read(name), label, box))
        except (ValueError, OSError, KeyError) as e:
            problems.append(f"{LABELS_CSV} line {i} ({name or 'no file'}): {e}")
    return examples, problems


def _safe_name(name: str) -> PurePosixPath:
    rel = PurePosixPath(name.replace("\\", "/"))
    if not name or rel.is_absolute() or ".." in rel.parts:
        raise ValueError("file names must be relative, inside the folder")
    return rel


def _read_in_dir(root: Path, name: str) -> bytes:
    path = root / _safe_name(name)
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise ValueError(f"larger than {MAX_IMAGE_BYTES // 2**20} MB")
    return path.read_bytes()


def _read_in_zip(z: zipfile.ZipFile, members: dict, name: str) -> bytes:
    info = members.get(str(_safe_name(name)))
    if info is None:
        raise ValueError("not in the zip")
    if info.file_size > MAX_IMAGE_BYTES:
        raise ValueError(f"larger than {MAX_IMAGE_BYTES // 2**20} MB")
    return z.read(info)


# --- into training digits ----------------------------------------------------------

def model_box(prep, box) -> np.ndarray:
    """A box normalized on the input image -> normalized on the 75x75 model input."""
    x0, y0, side = prep.frame
    w, h = prep.image_size
    b = np.asarray(box, np.float64) * [w, h, w, h]
    return (b - [x0, y0, x0, y0]) / side


def to_digit(example: Labelled) -> np.ndarray:
    """(28, 28) uint8: the ink inside the example's box, longer side 20 px, centred.

    Raises ``InvalidImage`` (a ValueError) for an image with no digit.
    """
    from PIL import Image

    from locmnist.preprocess import InvalidImage, prepare

    prep = prepare(example.png)
    if prep.blank_reason:
        raise InvalidImage(prep.blank_reason)
    ink = prep.model_input                                           # (75, 75) in 0..1
    n = ink.shape[0]
    if example.box is None:
        x0, y0, x1, y1 = 0, 0, n, n
    else:
        b = np.clip(model_box(prep, example.box) * n, 0, n)
        # One pixel of margin: a box dragged by hand is rarely tight to the pixel.
        x0, y0 = int(max(0, np.floor(b[0]) - 1)), int(max(0, np.floor(b[1]) - 1))
        x1, y1 = int(min(n, np.ceil(b[2]) + 1)), int(min(n, np.ceil(b[3]) + 1))
    crop = ink[y0:y1, x0:x1]
    if crop.size == 0 or crop.max() < 0.3:
        raise InvalidImage("there is no ink inside the box")
    # Tight to the ink inside the box, as MNIST is: a loose hand-drawn box changes nothing.
    rows, cols = np.flatnonzero(crop.max(1) >= 0.3), np.flatnonzero(crop.max(0) >= 0.3)
    crop = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    img = Image.fromarray(np.rint(crop * 255).astype(np.uint8))
    scale = 20.0 / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                     Image.LANCZOS)
    out = Image.new("L", (28, 28))
    out.paste(img, ((28 - img.width) // 2, (28 - img.height) // 2))
    return np.asarray(out)


def to_digits(examples: list[Labelled]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(digits (N, 28, 28) uint8, labels (N,) uint8, problems) for the usable examples."""
    digits, labels, problems = [], [], []
    for ex in examples:
        try:
            digits.append(to_digit(ex))
            labels.append(ex.label)
        except ValueError as e:  # InvalidImage included
            problems.append(f"{ex.name}: {e}")
    return (np.stack(digits) if digits else np.zeros((0, 28, 28), np.uint8),
            np.asarray(labels, np.uint8), problems)


def score_examples(predictor, examples: list[Labelled]) -> dict:
    """Accuracy (and mean IoU with the stored boxes) of a Predictor through its full
    ``predict`` path, as the app would answer each image."""
    from locmnist.boxes import iou

    right, ious, wrong = 0, [], []
    for ex in examples:
        try:
            p = predictor.predict(ex.png)
        except ValueError:
            p = None
        ok = p is not None and p.label == ex.label
        right += ok
        if not ok:
            wrong.append(ex.name)
        if p is not None and p.box_normalized is not None and ex.box is not None:
            ious.append(float(iou(np.array(p.box_normalized), np.array(ex.box))))
    n = len(examples)
    return {"n": n, "accuracy": right / n if n else None,
            "iou_mean": float(np.mean(ious)) if ious else None, "wrong": wrong}
