"""Every way an image can enter, good and hostile: ``prepare``, ``Predictor.predict``
and ``python -m locmnist predict --json``.

Each input of the corpus (``tests/corpus.py``), built from real MNIST digits or
raw bytes, must give exactly one of three outcomes:

* ``digit``   a Prediction with the right label and a box on the digit;
* ``blank``   a Prediction with label None ("no digit"), never a guess;
* ``invalid`` an ``InvalidImage`` (the CLI: a JSON ``{"error": ...}`` line).

``scripts/reliability_report.py`` runs the same corpus for the README's table.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from locmnist.boxes import iou
from locmnist.preprocess import InvalidImage, prepare
from tests.corpus import (CORPUS, digit_file, encode, exif_rotated_jpeg, judge, load_predictor,
                          outcome, page, png_with_header_size)
from tests.helpers import REPO


@pytest.fixture(scope="module")
def predictor():
    return load_predictor()


# --- tests ------------------------------------------------------------------------

@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_predict_gives_one_clear_outcome(case, predictor):
    model = predictor
    data, page_ = case.build()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning is recorded, none may appear
        kind, result = outcome(model, data)
    assert not caught, [str(w.message) for w in caught]
    assert time.perf_counter() - t0 < 20, "took too long"
    problem = judge(case, kind, result, page_, check_accuracy=True)
    assert problem is None, problem


@pytest.mark.parametrize("case", [c for c in CORPUS if c.expect == "invalid"],
                         ids=[c.name for c in CORPUS if c.expect == "invalid"])
def test_prepare_refuses_with_invalid_image(case):
    data, _ = case.build()
    with pytest.raises(InvalidImage) as err:
        prepare(data)
    assert str(err.value) and "Traceback" not in str(err.value)


def test_every_source_type_is_accepted(tmp_path):
    """Path, str, bytes, file-like, PIL and numpy give the same model input."""
    p = page(7)
    data = encode(Image.fromarray(p.paper()), "PNG")
    f = tmp_path / "seven.png"
    f.write_bytes(data)
    ref = prepare(data).model_input
    for source in (f, str(f), io.BytesIO(data), Image.open(io.BytesIO(data)), p.paper()):
        np.testing.assert_allclose(prepare(source).model_input, ref, atol=1e-6)


def test_a_callers_pil_image_is_left_as_it_was():
    """Large JPEGs we open are decoded at reduced scale; one the caller opened is not
    shrunk under its feet (the app shows it afterwards)."""
    data, p = digit_file(7, "JPEG", size=(3000, 2400), height=1500)()
    img = Image.open(io.BytesIO(data))
    prep = prepare(img)
    assert img.size == (3000, 2400) and prep.image_size == (3000, 2400)
    np.testing.assert_allclose(prep.frame, prepare(data).frame, rtol=0.02, atol=8)


def test_bomb_is_refused_before_decoding():
    """The 40000x40000 claim must be refused from the header: no pixel buffer allocated."""
    import tracemalloc

    data = png_with_header_size(40000, 40000)
    tracemalloc.start()
    with pytest.raises(InvalidImage, match="limit|pixels"):
        prepare(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * 2**20


def test_oversized_file_is_refused_before_reading(tmp_path):
    from locmnist import preprocess

    big = tmp_path / "huge.png"
    with open(big, "wb") as f:
        f.truncate(preprocess.MAX_FILE_BYTES + 1)  # sparse: no real disk use
    with pytest.raises(InvalidImage, match="MB"):
        prepare(big)


def test_missing_file_and_unsupported_source(tmp_path):
    with pytest.raises(InvalidImage, match="no such file"):
        prepare("/nonexistent/digit.png")
    with pytest.raises(InvalidImage, match="no such file"):
        prepare(tmp_path)  # a directory
    with pytest.raises(InvalidImage):
        prepare(12345)
    closed = io.BytesIO(b"\x89PNG")
    closed.close()
    with pytest.raises(InvalidImage, match="could not read"):
        prepare(closed)
    f = tmp_path / "seven.png"
    f.write_bytes(encode(Image.fromarray(page(7).paper()), "PNG"))
    with open(f, encoding="latin-1") as text_mode, pytest.raises(InvalidImage, match="binary"):
        prepare(text_mode)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotation_maps_box_to_upright_image(orientation, predictor):
    model = predictor
    data, upright = exif_rotated_jpeg(orientation)
    prep = prepare(data)
    h, w = upright.ink.shape
    assert prep.image_size == (w, h), "EXIF orientation must be applied"
    pred = model.predict(data)
    assert pred.label == 7
    # The digit sits in the upright image's top-left quarter.
    x0, y0, x1, y1 = pred.box
    assert x1 <= w * 0.6 and y1 <= h * 0.6, pred.box
    assert float(iou(np.array([pred.box]), np.array([upright.box]))[0]) >= 0.5


def test_cli_predict_json_reports_each_file(tmp_path):
    """One JSON line per input, errors as {"error": ...}, exit code 2, no traceback;
    the good files after a bad one are still predicted."""
    names = ["empty file", "PNG grey, dark on white", "HTML renamed .jpg",
             "PNG bomb 40000x40000 header", "all white", "JPEG EXIF orientation 6",
             "truncated JPEG"]
    cases = {c.name: c for c in CORPUS}
    files = []
    for i, name in enumerate(names):
        f = tmp_path / f"{i}{cases[name].suffix}"
        f.write_bytes(cases[name].build()[0])
        files.append(str(f))
    files.append(str(tmp_path / "missing.png"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "locmnist", "predict", "--json", *files],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=180)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert proc.returncode == 2
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["file"] for r in lines] == files
    by_name = dict(zip(names + ["missing"], lines))
    for name in ("empty file", "HTML renamed .jpg", "PNG bomb 40000x40000 header",
                 "truncated JPEG", "missing"):
        assert by_name[name].get("error"), by_name[name]
    assert by_name["all white"]["label"] is None and "error" not in by_name["all white"]
    assert "message" in by_name["all white"]
    for name in ("PNG grey, dark on white", "JPEG EXIF orientation 6"):
        assert "error" not in by_name[name] and len(by_name[name]["box"]) == 4
    assert by_name["PNG grey, dark on white"]["label"] == 7
    assert by_name["JPEG EXIF orientation 6"]["label"] == 7
