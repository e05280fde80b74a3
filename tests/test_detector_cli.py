"""The CLI's detector side: predict --json carries digits and text; evaluate --task detect."""
import json

from PIL import Image, ImageDraw

from tests.helpers import run_cli


def test_predict_json_adds_digits_and_text(tiny_detector, tmp_path):
    number = Image.new("L", (400, 160), 255)
    ImageDraw.Draw(number).line([(100, 30), (100, 130)], fill=0, width=12)
    ImageDraw.Draw(number).line([(200, 30), (270, 30), (230, 130)], fill=0, width=12)
    number.save(tmp_path / "number.png")
    Image.new("L", (64, 64), 0).save(tmp_path / "blank.png")
    (tmp_path / "junk.png").write_text("not an image")
    files = [str(tmp_path / f) for f in ("number.png", "blank.png", "junk.png")]
    r = run_cli("predict", "--detector", str(tiny_detector), "--json", *files)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr   # junk.png failed
    good, blank, junk = (json.loads(line) for line in r.stdout.splitlines())
    # every field predict had before, plus the detector's
    assert set(good) >= {"file", "label", "confidence", "probabilities", "box",
                         "box_normalized", "digits", "text"}
    assert good["text"] == "".join(str(d["label"]) for d in good["digits"])
    for d in good["digits"]:
        assert set(d) == {"label", "confidence", "box", "box_normalized"}
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 160
    assert blank["digits"] == [] and blank["text"] == "" and blank["label"] is None
    assert junk["digits"] == [] and junk["text"] == "" and junk["error"]


def test_evaluate_task_detect_json(tiny_detector):
    r = run_cli("evaluate", "--task", "detect", "--model", str(tiny_detector), "--json",
                "--limit", "120")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("map50", "map", "ap_per_class", "number_accuracy", "single_digit_one_right",
                "negatives_clean", "false_detection_rate", "n_canvases",
                "read_number_accuracy", "read_single_digit_one_right", "read_negatives_clean"):
        assert key in out, key
    assert out["n_canvases"] == 120 and len(out["ap_per_class"]) == 10


def test_detector_presets_take_the_cli_overrides():
    from locmnist.cli import _parser
    from locmnist.detector_cli import detector_config_from_args

    args = _parser().parse_args(["train", "--preset", "detect-quick", "--epochs", "2",
                                 "--seed", "5", "--time-limit", "60"])
    cfg = detector_config_from_args(args)
    assert (cfg.preset, cfg.epochs, cfg.seed, cfg.time_limit_s) == ("detect-quick", 2, 5, 60.0)
