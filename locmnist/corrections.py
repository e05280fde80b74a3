"""The corrections store: what users said the model got wrong, in SQLite.

One row per correction: the input image (PNG bytes), the right label, the digit's
box (normalized xmin, ymin, xmax, ymax on the image, pixel edges, as in
``locmnist.boxes``), the id of the model that was wrong, and the time.

* The file lives under the runs root (``corrections.sqlite``), beside the runs
  that fine-tune on it.
* Schema changes are migrations in ``MIGRATIONS``, applied in order inside one
  transaction; ``PRAGMA user_version`` says how many have run. A file from a newer
  version is refused, not rewritten.
* WAL journal, ``synchronous=FULL`` and a busy timeout: concurrent sessions queue
  instead of failing, and a committed correction survives a killed server.
  Writes take the write lock first (``BEGIN IMMEDIATE``), so the size cap is
  checked and the row inserted as one step.
* A row that does not make sense (bad label, box or image) is reported as
  ``Unreadable``; it never raises while listing.
"""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "corrections.sqlite"
MAX_IMAGE_BYTES = 2 * 2**20          # one PNG; a 280x280 drawing is ~10 KB
MAX_STORE_BYTES = 200 * 2**20        # all images together
BUSY_TIMEOUT_MS = 30_000
LABELS_CSV = "labels.csv"
CSV_FIELDS = ("file", "label", "xmin", "ymin", "xmax", "ymax", "model", "created")

# Each entry upgrades the schema by one version; never edit a released entry.
MIGRATIONS = (
    # 1: the first schema.
    """CREATE TABLE corrections (
           id      INTEGER PRIMARY KEY,
           png     BLOB NOT NULL,
           label   INTEGER NOT NULL,
           xmin REAL NOT NULL, ymin REAL NOT NULL, xmax REAL NOT NULL, ymax REAL NOT NULL,
           model   TEXT NOT NULL DEFAULT '',
           created REAL NOT NULL)""",
    # 2: where the image came from (drawn / uploaded), and the byte count that the
    #    size cap sums, kept in a column so the check does not read every image.
    """ALTER TABLE corrections ADD COLUMN source TEXT NOT NULL DEFAULT '';
       ALTER TABLE corrections ADD COLUMN nbytes INTEGER NOT NULL DEFAULT 0;
       UPDATE corrections SET nbytes = length(png);""",
)
SCHEMA_VERSION = len(MIGRATIONS)


class CorrectionStoreError(RuntimeError):
    """The store cannot be used (not a database, from a newer version, ...)."""


class CorrectionStoreFull(CorrectionStoreError):
    """Adding this correction would pass the size cap."""


@dataclass(frozen=True)
class Correction:
    id: int
    png: bytes = b""
    label: int = 0
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    model: str = ""
    created: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class Unreadable:
    id: int
    reason: str


def default_path() -> Path:
    from locmnist.runs import runs_root

    return runs_root() / DB_NAME


def check_box(box) -> tuple[float, float, float, float]:
    """A normalized (xmin, ymin, xmax, ymax) with 0 <= min < max <= 1, or ValueError."""
    try:
        b = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"a box is four numbers, got {box!r}") from None
    if len(b) != 4 or not all(0.0 <= v <= 1.0 for v in b) or not (b[0] < b[2] and b[1] < b[3]):
        raise ValueError(f"a box is normalized (xmin, ymin, xmax, ymax) with min < max, got {box!r}")
    return b


def check_png(png: bytes) -> None:
    from PIL import Image

    if not isinstance(png, (bytes, bytearray, memoryview)) or not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
        raise ValueError("the image is not a PNG")
    try:
        with Image.open(io.BytesIO(bytes(png))) as im:
            im.verify()
    except Exception as e:
        raise ValueError(f"the PNG does not decode: {e}") from None


MAX_SIDE = 1024  # larger images are stored shrunk (aspect kept: normalized boxes still fit)


def to_png(image) -> bytes:
    """PNG bytes of a PIL image or a uint8 numpy array (H, W[, C]), at most MAX_SIDE wide/high."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        import numpy as np

        image = Image.fromarray(np.asarray(image).astype("uint8"))
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))), Image.BOX)
    if image.mode not in ("1", "L", "LA", "RGB", "RGBA", "P", "I;16"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class CorrectionStore:
    """``CorrectionStore(path).add(png, label, box, model)``; every call opens its own
    connection, so one store object is safe to share between threads and sessions."""

    def __init__(self, path: str | Path | None = None, max_bytes: int = MAX_STORE_BYTES):
        self.path = Path(path) if path else default_path()
        self.max_bytes = max_bytes
        with self._connect() as db:
            self._migrate(db)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError as e:
            db.close()
            raise CorrectionStoreError(f"{self.path} is not a corrections database: {e}") from None
        return _Closing(db)

    def _migrate(self, db) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CorrectionStoreError(
                f"{self.path} has schema version {version}; this locmnist knows up to "
                f"{SCHEMA_VERSION}. Upgrade locmnist to use it.")
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:  # another process may have migrated while we waited for the lock
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for v in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[v].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {max(version, SCHEMA_VERSION)}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- writing ---------------------------------------------------------------
    def add(self, png: bytes, label: int, box, model: str = "", source: str = "") -> int:
        """Store one correction; returns its id once it is committed to disk."""
        check_png(png)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
            raise ValueError(f"the label is a digit 0-9, got {label!r}")
        box = check_box(box)
        png = bytes(png)
        if len(png) > MAX_IMAGE_BYTES:
            raise ValueError(f"the image is {len(png) / 2**20:.1f} MB; the limit is "
                             f"{MAX_IMAGE_BYTES // 2**20} MB")
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # the write lock: the cap check and insert are one step
            try:
                used = db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM corrections").fetchone()[0]
                if used + len(png) > self.max_bytes:
                    raise CorrectionStoreFull(
                        f"the corrections store is full ({used / 2**20:.1f} MB of "
                        f"{self.max_bytes / 2**20:.0f} MB); export it and clear it to add more")
                cur = db.execute(
                    "INSERT INTO corrections (png, label, xmin, ymin, xmax, ymax, model, created,"
                    " source, nbytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (png, label, *box, str(model), time.time(), str(source), len(png)))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(cur.lastrowid)

    def delete(self, ids) -> None:
        with self._connect() as db:
            db.executemany("DELETE FROM corrections WHERE id = ?", [(int(i),) for i in ids])

    def clear(self) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM corrections")

    # -- reading ---------------------------------------------------------------
    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM corrections").fetchone()[0]

    def used_bytes(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COALESCE(SUM(nbytes), 0) FROM corrections").fetchone()[0]

    def read(self, with_images: bool = True, ids=None) -> list[Correction | Unreadable]:
        """Every row (or those with ``ids``), oldest first: a ``Correction``, or
        ``Unreadable`` saying what is wrong."""
        cols = "id, png, label, xmin, ymin, xmax, ymax, model, created, source"
        if not with_images:
            cols = cols.replace("png", "NULL")
        where, args = "", ()
        if ids is not None:  # one JSON parameter: no limit on how many ids
            where, args = " WHERE id IN (SELECT value FROM json_each(?))", (
                json.dumps(sorted({int(i) for i in ids})),)
        with self._connect() as db:
            rows = db.execute(f"SELECT {cols} FROM corrections{where} ORDER BY id",
                              args).fetchall()
        return [_parse_row(r, with_images) for r in rows]

    def corrections(self, ids=None) -> list[Correction]:
        return [c for c in self.read(ids=ids) if isinstance(c, Correction)]

    # -- export ------------------------------------------------------------------
    def export_zip(self, dest: str | Path, ids=None) -> int:
        """Write the readable corrections as ``images/*.png`` + ``labels.csv``; returns how many.

        ``ids`` limits the export to those corrections (the app gives a public visitor
        only the ones their own session saved); ``None`` exports them all. The folder
        unzipped (or the zip itself) is what ``train --extra`` and ``finetune
        --corrections`` read.
        """
        from locmnist.files import atomic_write

        good = self.corrections(ids)

        def write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(LABELS_CSV, labels_csv(good))
                for c in good:
                    z.writestr(f"images/{c.id:06d}.png", c.png)

        atomic_write(dest, write, suffix=".zip")
        return len(good)


def labels_csv(corrections: list[Correction]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_FIELDS)
    for c in corrections:
        w.writerow([f"images/{c.id:06d}.png", c.label, *(f"{v:.6f}" for v in c.box), c.model,
                    f"{c.created:.3f}"])
    return buf.getvalue()


def _parse_row(row, with_images: bool) -> Correction | Unreadable:
    rid, png, label, *box, model, created, source = row
    try:
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= 9:
            raise ValueError(f"label {label!r} is not a digit")
        box = check_box(box)
        if with_images:
            check_png(png)
        return Correction(int(rid), bytes(png) if with_images else b"", label, box,
                          str(model or ""), float(created or 0.0), str(source or ""))
    except (ValueError, TypeError) as e:
        return Unreadable(int(rid), str(e))


class _Closing:
    """A connection that closes at the end of a ``with`` (sqlite3's own only commits)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc) -> None:
        self.db.close()

