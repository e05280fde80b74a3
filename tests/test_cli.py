"""The CLI's JSON contracts and its handling of bad input (real subprocesses)."""
import json

import pytest
from PIL import Image, ImageDraw

from tests.helpers import run_cli, tiny_config


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real (barely trained) model file, so the CLI tests do not need the shipped one."""
    from locmnist.training import train

    out = tmp_path_factory.mktemp("cli-model")
    train(tiny_config(epochs=1), out, evaluate_test=False)
    return out / "model.keras"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    seven = Image.new("L", (200, 150), 255)
    ImageDraw.Draw(seven).line([(60, 30), (130, 30), (90, 130)], fill=0, width=12)
    seven.save(d / "seven.png")
    Image.new("L", (64, 64), 0).save(d / "blank.png")
    (d / "text.png").write_text("<html>not an image</html>")
    (d / "empty.jpg").write_bytes(b"")
    return d


def test_predict_json_schema_and_bad_input(tiny_model, images):
    files = ["seven.png", "text.png", "blank.png", "missing.png", "empty.jpg"]
    r = run_cli("predict", "--model", str(tiny_model), "--json", *[str(images / f) for f in files])
    assert r.returncode == 2, r.stderr          # some inputs failed
    assert "Traceback" not in r.stdout + r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [l["file"] for l in lines] == [str(images / f) for f in files]   # input order
    good, text, blank, missing, empty = lines
    assert set(good) >= {"file", "label", "confidence", "probabilities", "box", "box_normalized"}
    assert isinstance(good["label"], int) and len(good["probabilities"]) == 10
    x0, y0, x1, y1 = good["box"]
    assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 150                    # input pixels
    assert good["box_normalized"] == pytest.approx([x0 / 200, y0 / 150, x1 / 200, y1 / 150], abs=1e-3)
    assert blank["label"] is None and blank["box"] is None and "error" not in blank
    for bad in (text, missing, empty):
        assert bad["label"] is None and bad["error"] and "Traceback" not in bad["error"]


def test_predict_all_good_exits_zero(tiny_model, images):
    r = run_cli("predict", "--model", str(tiny_model), str(images / "seven.png"))
    assert r.returncode == 0 and "seven.png" in r.stdout


def test_evaluate_json_keys(tiny_model):
    r = run_cli("evaluate", "--model", str(tiny_model), "--json", "--limit", "300")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("accuracy", "box_mse", "iou_mean", "iou_ge_0.5", "iou_ge_0.6", "iou_ge_0.75", "n",
                "per_class_accuracy"):
        assert key in out
    assert out["n"] == 300 and len(out["per_class_accuracy"]) == 10
    for key in ("ece", "digits_rejected", "accuracy_accepted", "reject_rate_negatives",
                "reject_threshold", "temperature", "tradeoff", "reliability",
                "min_confidence", "digits_unsure", "confidence_tradeoff"):
        assert key in out
    assert out["n_negatives"] == 300 and 0 <= out["reject_rate_negatives"] <= 1
    assert len(out["reliability"]) == 15 and out["tradeoff"][0]["threshold"] == 0.0


def test_predict_json_says_not_a_digit(tiny_model, images, tmp_path):
    """Saved with a threshold nothing reaches, the same model answers "not a digit"."""
    import shutil

    from locmnist.calibration import Calibration, sidecar_path

    picky = tmp_path / "picky.keras"
    shutil.copyfile(tiny_model, picky)
    Calibration(rule="digit", threshold=1.5, fitted=True).save(sidecar_path(picky))
    r = run_cli("predict", "--model", str(picky), "--json", str(images / "seven.png"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["label"] is None and out["message"] == "not a digit" and out["box"] is None
    assert len(out["probabilities"]) == 10 and out["confidence"] == max(out["probabilities"])


def test_predict_json_says_not_sure_under_the_floor(tiny_model, images, tmp_path):
    """A digit the rule accepts but no digit likely enough: "not sure which digit"."""
    import shutil

    from locmnist.calibration import Calibration, sidecar_path

    unsure = tmp_path / "unsure.keras"
    shutil.copyfile(tiny_model, unsure)
    Calibration(rule="digit", threshold=0.0, min_confidence=1.0, fitted=True).save(
        sidecar_path(unsure))
    r = run_cli("predict", "--model", str(unsure), "--json", str(images / "seven.png"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["label"] is None and out["message"] == "not sure which digit"
    assert out["box"] is None and out["confidence"] == max(out["probabilities"])


def test_calibrate_refits_from_the_models_own_validation_data(tiny_model, tmp_path):
    """calibrate rebuilds the validation data from the saved config: the same fit as
    training's, written over the old file."""
    import shutil

    from locmnist.calibration import sidecar_path

    shutil.copytree(tiny_model.parent, tmp_path / "run")
    path = sidecar_path(tmp_path / "run" / tiny_model.name)
    trained = json.loads(path.read_text())
    path.write_text('{"temperature": 3.0, "rule": "digit", "threshold": 0.01}')
    r = run_cli("calibrate", "--model", str(tmp_path / "run"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    refit = json.loads(path.read_text())
    assert refit == {k: v for k, v in out.items() if k != "model"}
    assert refit["temperature"] == pytest.approx(trained["temperature"], rel=1e-4)
    assert refit["threshold"] == pytest.approx(trained["threshold"], rel=1e-4)
    assert "min_confidence" in refit
    r = run_cli("calibrate", "--model", str(tmp_path / "missing"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no model file" in r.stderr


def test_bad_model_is_a_clear_error(images):
    r = run_cli("predict", "--model", str(images / "text.png"), "--json", str(images / "seven.png"))
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert "error" in json.loads(r.stdout.splitlines()[0])


def test_train_writes_a_run_directory_where_the_app_lists_it(tmp_path):
    """Without --out the run goes to the runs root ($LOCMNIST_RUNS here), not the cwd."""
    from locmnist import runs

    root, elsewhere = tmp_path / "runs", tmp_path / "cwd"
    elsewhere.mkdir()
    r = run_cli("train", "--preset", "quick", "--epochs", "1", "--train-digits", "256",
                "--batch-size", "64", "--time-limit", "60", cwd=elsewhere,
                LOCMNIST_RUNS=str(root))
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(elsewhere.iterdir())
    [run] = runs.list_runs(root)
    assert run.state == "completed" and run.id.split("-")[2] == "quick"
    for name in (runs.MODEL, runs.CONFIG, runs.HISTORY, runs.METRICS):
        assert (run.dir / name).is_file()
    assert "epoch 1/1" in r.stderr and "test accuracy" in r.stderr
