"""The corrections store: schema and migrations, concurrent and killed writers, the size
cap, malformed rows, and the export that ``train --extra`` / ``finetune`` read."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from locmnist.corrections import (MIGRATIONS, SCHEMA_VERSION, Correction, CorrectionStore,
                                  CorrectionStoreError, CorrectionStoreFull, Unreadable, to_png)
from locmnist.labelled import Labelled, load_labelled, to_digit, to_digits
from tests.helpers import REPO

BOX = (0.2, 0.1, 0.6, 0.9)


def seven_png(size=120, offset=0) -> bytes:
    img = Image.new("L", (size, size), 255)
    ImageDraw.Draw(img).line([(30 + offset, 20), (80 + offset, 20), (50 + offset, 100)],
                             fill=0, width=9)
    return to_png(img)


def test_new_store_has_the_schema_and_round_trips(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    png = seven_png()
    rid = store.add(png, 7, BOX, model="default.keras:abc", source="drawn")
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    [c] = store.read()
    assert c == Correction(rid, png, 7, BOX, "default.keras:abc", c.created, "drawn")
    assert abs(c.created - time.time()) < 60
    assert store.count() == 1 and store.used_bytes() == len(png)


def test_migrates_a_version_1_database(tmp_path):
    path = tmp_path / "old.sqlite"
    png = seven_png()
    with sqlite3.connect(path) as db:  # what the first release wrote
        db.execute(MIGRATIONS[0])
        db.execute("INSERT INTO corrections (png, label, xmin, ymin, xmax, ymax, model, created)"
                   " VALUES (?, 3, 0.1, 0.1, 0.5, 0.5, 'old-model', 1.5)", (png,))
        db.execute("PRAGMA user_version = 1")
    store = CorrectionStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    [c] = store.read()
    assert (c.label, c.box, c.model, c.created, c.source) == (3, (0.1, 0.1, 0.5, 0.5),
                                                             "old-model", 1.5, "")
    assert store.used_bytes() == len(png)  # the new nbytes column was filled in
    store.add(png, 4, BOX)
    assert [c.label for c in store.corrections()] == [3, 4]


def test_refuses_a_newer_schema_and_a_non_database(tmp_path):
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(CorrectionStoreError, match="schema version 3"):
        CorrectionStore(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CorrectionStoreError, match="not a corrections database"):
        CorrectionStore(junk)


@pytest.mark.parametrize("png,label,box,match", [
    (b"GIF89a....", 1, BOX, "not a PNG"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, 1, BOX, "does not decode"),
    (None, 10, BOX, "digit 0-9"),
    (None, True, BOX, "digit 0-9"),
    (None, 1, (0.5, 0.1, 0.4, 0.9), "min < max"),
    (None, 1, (0.1, 0.1, 1.5, 0.9), "normalized"),
    (None, 1, (0.1, 0.2), "normalized"),
], ids=["gif", "broken-png", "label-10", "label-bool", "box-inside-out", "box-outside",
        "box-short"])
def test_bad_corrections_are_refused_and_nothing_is_written(tmp_path, png, label, box, match):
    store = CorrectionStore(tmp_path / "c.sqlite")
    with pytest.raises(ValueError, match=match):
        store.add(png if png is not None else seven_png(), label, box)
    assert store.count() == 0


def test_size_cap_is_a_clear_error(tmp_path):
    png = seven_png()
    store = CorrectionStore(tmp_path / "c.sqlite", max_bytes=int(2.5 * len(png)))
    store.add(png, 7, BOX)
    store.add(png, 7, BOX)
    with pytest.raises(CorrectionStoreFull, match="store is full.*export it and clear it"):
        store.add(png, 7, BOX)
    assert store.count() == 2
    store.clear()
    store.add(png, 7, BOX)
    assert store.count() == 1


def test_malformed_rows_show_as_unreadable(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    good = store.add(seven_png(), 7, BOX)
    with sqlite3.connect(store.path) as db:  # SQLite stores whatever it is given
        rows = [(seven_png(), 12, 0.1, 0.1, 0.5, 0.5), (seven_png(), "seven", 0.1, 0.1, 0.5, 0.5),
                (seven_png(), 7, 0.5, 0.1, 0.2, 0.5), (seven_png(), 7, "a", 0.1, 0.5, 0.5),
                (b"\x89PNG\r\n\x1a\nbroken", 7, 0.1, 0.1, 0.5, 0.5), ("text", 7, 0.1, 0.1, 0.5, 0.5)]
        for r in rows:
            db.execute("INSERT INTO corrections (png, label, xmin, ymin, xmax, ymax, created,"
                       " nbytes) VALUES (?, ?, ?, ?, ?, ?, 0, 0)", r)
    listed = store.read()
    assert [type(r) for r in listed] == [Correction] + [Unreadable] * len(rows)
    assert listed[0].id == good
    assert all(r.reason for r in listed[1:])
    assert [c.id for c in store.corrections()] == [good]
    examples, problems = load_labelled(store.path)
    assert [e.label for e in examples] == [7] and len(problems) == len(rows)
    assert store.export_zip(tmp_path / "out.zip") == 1


WRITER = """
import sys
from PIL import Image, ImageDraw
from locmnist.corrections import CorrectionStore, to_png
store = CorrectionStore(sys.argv[1])
img = Image.new("L", (64, 64), 255)
ImageDraw.Draw(img).line([(10, 10), (40, 10), (20 + int(sys.argv[2]), 50)], fill=0, width=5)
png = to_png(img)
for i in range(int(sys.argv[3])):
    rid = store.add(png, int(sys.argv[2]), (0.2, 0.1, 0.6, 0.9), model=f"w{sys.argv[2]}")
    print(rid, flush=True)
"""


def writer(path, who: int, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(who), str(n)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def test_concurrent_writers_from_several_processes_lose_nothing(tmp_path):
    path = tmp_path / "c.sqlite"
    procs = [writer(path, who, 25) for who in range(4)]  # the first ones also race to migrate
    ids = {}
    for who, p in enumerate(procs):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        ids[who] = [int(v) for v in out.split()]
        assert len(ids[who]) == 25
    rows = CorrectionStore(path).corrections()
    assert len(rows) == 100 and len({r.id for r in rows}) == 100
    for who, written in ids.items():
        assert sorted(r.id for r in rows if r.model == f"w{who}") == sorted(written)
        assert all(r.label == who for r in rows if r.model == f"w{who}")


def test_a_writer_killed_mid_write_loses_no_committed_correction(tmp_path):
    path = tmp_path / "c.sqlite"
    CorrectionStore(path)
    committed = []
    for round_, delay in enumerate((0.3, 0.7)):
        steady = writer(path, 9, 10_000)        # another session, writing meanwhile
        victim = writer(path, round_, 10_000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(committed) < 20 * (round_ + 1):
            committed.append(int(victim.stdout.readline()))
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)      # at whatever point of a write it is
        victim.wait()
        committed += [int(v) for v in victim.stdout.read().split()]  # printed before the kill
        steady.send_signal(signal.SIGKILL)
        steady.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {c.id for c in CorrectionStore(path).corrections()}
    assert len(committed) >= 40 and set(committed) <= stored
    assert not [r for r in CorrectionStore(path).read() if isinstance(r, Unreadable)]


# --- export, and what reads it ------------------------------------------------------

def test_export_of_some_ids_holds_only_those(tmp_path):
    """What the app gives a public visitor: the corrections their own session saved."""
    store = CorrectionStore(tmp_path / "c.sqlite")
    ids = [store.add(seven_png(offset=k), k, BOX) for k in range(4)]
    assert store.export_zip(tmp_path / "mine.zip", ids=[ids[1], ids[3], 999]) == 2
    examples, problems = load_labelled(tmp_path / "mine.zip")
    assert problems == [] and [e.label for e in examples] == [1, 3]
    assert store.export_zip(tmp_path / "none.zip", ids=[]) == 0
    assert load_labelled(tmp_path / "none.zip") == ([], [])
    assert [c.id for c in store.corrections(ids=ids[:2])] == ids[:2]


def test_export_round_trips_as_a_zip_and_as_a_folder(tmp_path):
    store = CorrectionStore(tmp_path / "c.sqlite")
    added = [(seven_png(offset=k), k, (0.1 + k / 100, 0.1, 0.7, 0.9)) for k in range(5)]
    for png, label, box in added:
        store.add(png, label, box)
    assert store.export_zip(tmp_path / "out.zip") == 5
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(tmp_path / "out.zip") as z:
        z.extractall(folder)
    for source in (tmp_path / "out.zip", folder, store.path):
        examples, problems = load_labelled(source)
        assert problems == []
        assert [(e.png, e.label) for e in examples] == [(p, k) for p, k, _ in added]
        assert np.allclose([e.box for e in examples], [b for _, _, b in added], atol=1e-6)


def test_labelled_folder_problems_are_listed_not_raised(tmp_path):
    (tmp_path / "a.png").write_bytes(seven_png())
    (tmp_path / "b.png").write_bytes(b"not an image")
    (tmp_path / "labels.csv").write_text(
        "file,label\na.png,7\nb.png,3\nmissing.png,1\n../escape.png,1\na.png,eleven\n")
    examples, problems = load_labelled(tmp_path)
    assert [(e.name, e.label, e.box) for e in examples] == [("a.png", 7, None), ("b.png", 3, None)]
    assert len(problems) == 3 and "relative" in problems[1]
    digits, labels, bad = to_digits(examples)  # the non-image fails here, named
    assert digits.shape == (1, 28, 28) and labels.tolist() == [7] and "b.png" in bad[0]
    with pytest.raises(ValueError, match="no labels.csv"):
        load_labelled(tmp_path / "..")


def test_to_digit_is_the_ink_in_the_box_mnist_style():
    img = Image.new("L", (200, 100), 255)
    d = ImageDraw.Draw(img)
    d.line([(20, 20), (20, 80)], fill=0, width=6)         # a 1 on the left (in the box)
    d.ellipse([120, 20, 170, 80], outline=0, width=6)     # a 0 on the right (outside)
    box = (10 / 200, 15 / 100, 30 / 200, 85 / 100)
    digit = to_digit(Labelled("x", to_png(img), 1, box))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows, cols = np.nonzero(digit > 80)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)     # longer side ~20 px, as in MNIST
    assert cols.max() - cols.min() + 1 <= 6                # only the 1's stroke: no 0 in it
    assert abs((rows.min() + rows.max()) / 2 - 13.5) <= 1.5 and abs(cols.mean() - 13.5) <= 2.5
