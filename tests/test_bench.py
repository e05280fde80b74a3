"""``python -m bench`` in a tiny configuration: the report's schema, and that its
numbers are measurements (consistent with each other), not constants."""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO

BUDGET_S = 8


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    from locmnist.config import preset
    from locmnist.model import build_model

    model_path = tmp / "small.keras"  # latency and memory need a model, not a trained one
    build_model(preset("quick", widths=(4, 8, 8, 8), dense_units=16)).save(model_path)
    out = tmp / "bench.json"
    cmd = [sys.executable, "-m", "bench", "--json", "--presets", "quick",
           "--budget", str(BUDGET_S), "--eval-limit", "200", "--eval-splits", "standard,seed",
           "--latency-runs", "20", "--synthesis-seconds", "0.3", "--model", str(model_path),
           "--slowdown", "2", "--out", str(out)]
    for o in ("train_digits=512", "val_digits=128", "widths=4,8,8,8", "dense_units=16",
              "epochs=3"):
        cmd += ["--override", o]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == printed  # --out holds the same report
    return printed


def test_device_and_settings(report):
    dev = report["device"]
    assert dev["cpu_cores"] >= 1 and isinstance(dev["gpus"], list) and dev["tensorflow"]
    s = report["settings"]
    assert s["presets"] == ["quick"] and s["budget_s"] == BUDGET_S
    assert s["overrides"]["widths"] == [4, 8, 8, 8] and s["overrides"]["train_digits"] == 512


def test_training_curve_is_measured(report):
    run = report["training"]["quick"]
    assert "error" not in run, run
    curve = run["curve"]
    assert run["epochs_done"] == len(curve) >= 1 and run["eval_n"] == {"standard": 200, "seed": 200}
    times = [p["train_s"] for p in curve]
    assert times == sorted(times) and times[0] > 0
    # Stopped by the budget (first batch past it) or by running out of epochs.
    assert run["stopped_by_budget"] or len(curve) == 3
    assert times[-1] < BUDGET_S + 30
    for p in curve:
        for split in ("standard", "seed"):
            m = p[split]
            assert 0 <= m["accuracy"] <= 1 and 0 <= m["iou_ge_0.6"] <= m["iou_ge_0.5"] <= 1
            assert m["accuracy"] * 200 == pytest.approx(round(m["accuracy"] * 200))  # n = 200
    # Evaluation time is reported and excluded from the training clock.
    assert run["eval_s_total"] > 0
    assert run["process_wall_s"] > times[-1] + run["eval_s_total"]
    assert 100 < run["peak_rss_mb"] < 16_000


def test_summary_is_derived_from_the_curve(report):
    curve = report["training"]["quick"]["curve"]
    s = report["summary"]["training"]["quick"]
    for split in ("standard", "seed"):
        for acc, hit in s["time_to_accuracy"][split].items():
            expected = next((p for p in curve if p[split]["accuracy"] >= float(acc)), None)
            assert (hit is None) == (expected is None)
            if hit:
                assert hit["train_s"] == expected["train_s"]
        e_s = report["summary"]["E"]["E_s"]
        within = s["at_budget_E"][split]["17"]
        last = [p for p in curve if p["train_s"] <= 17 * e_s]
        if last:
            assert within["epoch"] == last[-1]["epoch"]
            assert within["accuracy"] == last[-1][split]["accuracy"]
        else:
            assert within is None
    targets = {t["target"]: t for t in report["summary"]["targets"]}
    hit = s["time_to_accuracy"]["standard"]["0.978"]
    assert targets["quick: time to 97.8% test accuracy"]["met"] == (
        hit is not None and hit["train_s"] / e_s <= 1)
    lat = report["latency"]["ours"]
    ratio = lat["model_predict"]["p50_ms"] / lat["predictor_predict"]["p50_ms"]
    assert targets["`Predictor.predict`, one 280x280 drawing, vs `model.predict`"]["met"] == (
        ratio >= 25 and lat["model_predict"]["p95_ms"] / lat["predictor_predict"]["p95_ms"] >= 25)


def test_unit_e_is_measured(report):
    runs = report["reference_epoch"]
    assert len(runs) == 1 and all("error" not in r for r in runs), runs
    for r in runs:
        # 512 override digits in batches of 512: one step an epoch, two epochs, E the last.
        assert r["steps_per_epoch"] == 1 and len(r["epoch_s"]) == 2 and r["E_s"] == r["epoch_s"][-1]
    e = report["summary"]["E"]
    assert e["E_s"] == runs[0]["E_s"] and e["measured_s"] == [runs[0]["E_s"]]
    assert report["settings"]["test_split_versions"]["standard"] >= 1


def test_quick_process_and_slow_machine(report):
    proc = report["quick_process"]
    assert "error" not in proc, proc
    assert proc["epochs_done"] == 3 and 0 <= proc["accuracy"] <= 1
    assert proc["wall_s"] > proc["train_s"] > 0 and proc["train_peak_rss_mb"] > 100
    slow = report["quick_slow"]
    assert "error" not in slow, slow
    # Work-based: the slowed run still does every planned step (3 epochs of 512 // 128).
    assert slow["steps_done"] == slow["steps_planned"] == 12 and slow["status"] == "completed"
    assert slow["slept_s"] > 0 and slow["n"] == 200


def test_latency_is_measured(report):
    lat = report["latency"]
    assert "error" not in lat, lat
    assert lat["image_shape"] == [280, 280, 4]
    for who in ("ours", "reference_cnn"):
        for name in ("predictor_predict", "predictor_forward_only", "model_predict",
                     "eager_call", "tflite_predict", "tflite_forward_only"):
            t = lat[who][name]
            assert 0 < t["p50_ms"] <= t["p95_ms"] < 10_000, (who, name, t)
        # model.predict builds a data pipeline per call: it is the slowest path.
        assert lat[who]["model_predict"]["p50_ms"] > lat[who]["predictor_forward_only"]["p50_ms"]


def test_throughput_and_memory_are_measured(report):
    one, every = report["synthesis"]["one_core"], report["synthesis"]["all_cores"]
    assert one["cpus"] == 1 and every["cpus"] >= 1
    for run in (one, every):
        for data in ("standard", "seed"):
            assert 100 < run[data]["direct_canvases_per_s"] < 10_000_000
            assert 100 < run[data]["pipeline_canvases_per_s"] < 10_000_000
    mem = report["predict_memory"]
    assert mem["images"] == 200 and 100 < mem["peak_rss_mb"] < 16_000


def test_reader_latency_target_is_the_measured_ratio(report):
    rl = report["reader_latency"]
    assert "error" not in rl, rl
    ratio = rl["reader_read_560x280"]["p50_ms"] / rl["predictor_predict_280"]["p50_ms"]
    target = next(t for t in report["summary"]["targets"] if t["target"].startswith(
        "`Reader.read`"))
    assert target["met"] == (round(ratio, 2) <= 4)
    assert repr(rl["text"]) in target["value"]
    drawn = rl["drawn_numbers"]
    assert drawn["numbers"] == 200 and len(drawn["misread"]) == min(10, 200 - drawn["right"])
    assert all(t != g for t, g in drawn["misread"])
    assert f"{drawn['right']}/200 drawn numbers read right" in target["value"]


def test_detector_curve_probe_scores_epochs_off_the_clock(tmp_path):
    """A tiny detect-quick run: a test-split mAP point every 2nd epoch and after the last,
    on a training clock that leaves the evaluations out; the summary's targets read it."""
    params = {"preset": "detect-quick", "out_dir": str(tmp_path / "run"), "eval_limit": 60,
              "every": 2, "overrides": {"epochs": 3, "canvases_per_epoch": 64, "batch_size": 32,
                            "widths": [4, 4, 8, 8], "head_width": 8, "val_digits": 40,
                            "train_digits": 400}}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.probes", "detector_curve",
                           json.dumps(params)], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall_s = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert run["kind"] == "detector" and run["status"] == "completed" and run["eval_n"] == 60
    curve = run["curve"]
    assert [p["epoch"] for p in curve] == [2, 3] and run["epochs_done"] == 3  # every 2nd, last
    assert 0 < curve[0]["train_s"] < curve[1]["train_s"]
    assert wall_s > curve[-1]["train_s"] + run["eval_s_total"] and run["eval_s_total"] > 0
    assert all(0 <= p["map"] <= p["map50"] <= 1 for p in curve)

    from bench.report import format_report, in_e, summarize

    e_s = curve[-1]["train_s"] / 3       # as if the whole run took 3 E
    report = {"settings": {"eval_splits": []}, "reference_epoch": [{"E_s": e_s}],
              "training": {"detect-quick": run, "detect": run}, "started": "now",
              "device": {"cpu": "x", "cpus_usable": 2, "cpu_cores": 2, "gpus": [],
                         "tensorflow": "2"}}
    for p in curve:                      # pretend the last epoch reached 0.9
        p["map50"] = 0.95 if p["epoch"] == 3 else 0.5
    report["summary"] = summarize(report)
    targets = {t["target"].split(":")[0]: t for t in report["summary"]["targets"]}
    quick = targets["detect-quick"]
    e_s = report["summary"]["E"]["E_s"]
    assert quick["met"] is True
    assert quick["value"].startswith(f"{in_e(curve[-1]['train_s'], e_s)} E")
    assert targets["detect"]["met"] is True and "mAP@0.5 0.950" in targets["detect"]["value"]
    report["reference_epoch"] = [{"E_s": curve[-1]["train_s"] / 40}]   # 40 E: too slow
    report["summary"] = summarize(report)
    targets = {t["target"].split(":")[0]: t for t in report["summary"]["targets"]}
    assert targets["detect-quick"]["met"] is False and targets["detect"]["met"] is False
    e_s = report["summary"]["E"]["E_s"]
    assert f"epoch 3: {in_e(curve[-1]['train_s'], e_s)} E" in format_report(report)


def test_bad_override_is_one_clear_line():
    proc = subprocess.run([sys.executable, "-m", "bench", "--override", "nonsense"],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 2
    assert "KEY=VALUE" in proc.stderr and "Traceback" not in proc.stderr


def test_the_number_drawing_holds_strokes_not_blocks():
    """Half of ``wild.drawn``'s digits are white ink on an opaque canvas: pasting their
    alpha (255 everywhere) drew solid squares, and the reader 'missed' those digits."""
    import numpy as np

    from bench.probes import number_drawing

    img = number_drawing("2026", np.random.default_rng(0))
    for k in range(4):
        cell = img[70:210, k * 140:(k + 1) * 140, 3]
        assert 0.005 < (cell > 127).mean() < 0.3, k       # strokes: a little of the cell


def test_reader_stages_times_what_read_runs():
    """The stage profile behind the README's latency table: the shipped models, the
    detector's TFLite copy on the drawing's 80x192 input, every stage measured."""
    from bench.probes import reader_stages

    r = reader_stages(None, None, runs=3)
    assert r["detector_runtime"] == "tflite" and r["detector_input"] == [80, 192]
    assert r["text"] == "2026" and r["candidates"] == 4
    assert set(r["p50_ms"]) == {"ink_map", "frame_ink", "detector", "decode", "closer_look",
                                "read", "predict"}
    assert all(v > 0 for v in r["p50_ms"].values())
    assert r["ratio_p50"] == pytest.approx(r["p50_ms"]["read"] / r["p50_ms"]["predict"],
                                           abs=0.01)


# --- python -m bench.seeds ------------------------------------------------------

TINY = ["train_digits=512", "val_digits=128", "widths=4,8,8,8", "crop_widths=4,4,4",
        "dense_units=16", "epochs=1", "time_limit_s=0"]


def _seeds(tmp_path, *args):
    cmd = [sys.executable, "-m", "bench.seeds", "--json", "--preset", "quick",
           "--dir", str(tmp_path), *args]
    for o in TINY:
        cmd += ["--override", o]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_seeds_trains_each_seed_then_resumes_without_retraining(tmp_path):
    proc = _seeds(tmp_path, "--seeds", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.loads(proc.stdout)
    run = tmp_path / "quick-s3"
    metrics = json.loads((run / "metrics.json").read_text())
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    assert first["per_seed"]["3"]["accuracy"] == metrics["accuracy"]   # read from the run
    assert first["summary"]["accuracy"]["n"] == 1
    stamp = (run / "model.keras").stat().st_mtime_ns

    # A run directory holding another seed is an error, and is left as it is.
    (tmp_path / "quick-s4").mkdir()
    (tmp_path / "quick-s4" / "config.json").write_text(
        (run / "config.json").read_text())          # says seed 3, preset quick
    again = _seeds(tmp_path, "--seeds", "3,4")
    assert again.returncode == 1
    report = json.loads(again.stdout)
    assert report["per_seed"]["3"] == first["per_seed"]["3"]             # not retrained
    assert (run / "model.keras").stat().st_mtime_ns == stamp
    assert "holds something else" in report["per_seed"]["4"]["error"]
    assert not (tmp_path / "quick-s4" / "model.keras").exists()


def test_seeds_summary_is_mean_and_spread():
    from bench.seeds import format_report, summarize

    per_seed = {"0": {"accuracy": 0.995, "iou_mean": 0.95}, "1": {"accuracy": 0.993,
                "iou_mean": 0.94}, "2": {"error": "training failed"}}
    s = summarize(per_seed)
    assert s["accuracy"]["n"] == 2 and s["accuracy"]["mean"] == pytest.approx(0.994)
    assert s["accuracy"]["std"] == pytest.approx(0.001414, rel=1e-3)
    assert (s["accuracy"]["min"], s["accuracy"]["max"]) == (0.993, 0.995)
    text = format_report({"preset": "default", "seeds": [0, 1, 2], "split_version": 2,
                          "per_seed": per_seed, "summary": s})
    assert "**99.40%**" in text and "error: training failed" in text
