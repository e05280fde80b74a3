"""Measure the reliability figures for the README and print them as a markdown table.

    python -m scripts.reliability_report            # everything, ~2-4 min on 2 cores
    python -m scripts.reliability_report --no-training

(from the repo root). It runs the corpora and campaigns the tests run
(``tests/corpus.py``: hostile images and model files; ``tests/campaigns.py``: kills,
cancels and concurrency) against the model that ``Predictor.load()`` picks
($LOCMNIST_MODEL or models/default.keras).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from tests.helpers import REPO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def image_inputs(predictor, trained: bool) -> list[str]:
    from tests.corpus import CORPUS, judge, outcome

    kinds = {"digit": 0, "blank": 0, "invalid": 0}
    wrong, crashes = [], 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for case in CORPUS:
            data, page = case.build()
            try:
                kind, result = outcome(predictor, data)
            except Exception as e:  # anything but InvalidImage escaping is a failure
                crashes += 1
                wrong.append(f"{case.name}: {type(e).__name__}: {e}")
                continue
            kinds[kind] += 1
            problem = judge(case, kind, result, page, check_accuracy=trained)
            if problem:
                wrong.append(f"{case.name}: {problem}")
    ok = len(CORPUS) - len(wrong)
    row = (f"| Image inputs (`Predictor.predict`) | {len(CORPUS)} input classes: empty, "
           f"text/HTML/SVG renamed, truncated, corrupted, random bytes, pixel and text bombs, "
           f"1x1, strips, 5000x5000, 16-bit, CMYK, palette, alpha-only ink, animated GIF, "
           f"TIFF/BMP/WebP, EXIF-rotated | {ok}/{len(CORPUS)} as expected: "
           f"{kinds['digit']} right digit and box, {kinds['blank']} \"no digit\", "
           f"{kinds['invalid']} clear `InvalidImage`; {crashes} other exceptions, "
           f"{len(caught)} warnings |")
    return [row] + [f"|   failed: {w} | | |" for w in wrong]


def cli_inputs(predictor, tmp: Path) -> list[str]:
    from tests.corpus import CORPUS, outcome

    files, library = [], []
    for i, case in enumerate(CORPUS):
        f = tmp / f"input{i:02d}{case.suffix}"
        data = case.build()[0]
        f.write_bytes(data)
        files.append(str(f))
        kind, result = outcome(predictor, data)
        library.append("error" if kind == "invalid" else result.label)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "locmnist", "predict", "--json", *files],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    seconds = time.perf_counter() - t0
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip().startswith("{")]
    errors = sum(1 for r in lines if "error" in r)
    same = sum(1 for r, lib in zip(lines, library)
               if ("error" if "error" in r else r.get("label")) == lib)
    tracebacks = (proc.stdout + proc.stderr).count("Traceback")
    return [f"| CLI `predict --json` | the same {len(files)} files in one call | "
            f"{len(lines)} JSON lines, {errors} of them `{{\"error\": ...}}`, "
            f"{same}/{len(files)} identical to the library's outcome; exit code "
            f"{proc.returncode}, {tracebacks} tracebacks, {seconds:.0f} s |"]


def model_files(tmp: Path) -> list[str]:
    import keras
    from tests.corpus import Exploit, reference_list_model, with_lambda

    from locmnist.config import preset
    from locmnist.inference import Predictor
    from locmnist.model import build_model
    from locmnist.model_files import InvalidModel

    legit, hostile = [], []
    tiny = dict(widths=(4, 8, 8, 8), dense_units=16)
    for suffix in (".keras", ".h5"):
        for name, model in (("seed", build_model(preset("quick", arch="seed", **tiny))),
                            ("default", build_model(preset("quick", **tiny))),
                            ("list", reference_list_model())):
            path = tmp / f"{name}{suffix}"
            model.save(path)
            legit.append(path)
        for name, model in (("lambda", with_lambda(tmp / "code-ran")),
                            ("shape28", reference_list_model((28, 28, 1))),
                            ("oneoutput", reference_list_model(n_outputs=1))):
            path = tmp / f"{name}{suffix}"
            model.save(path)
            hostile.append(path)
        for name, content in (("empty", b""), ("garbage", b"junk" * 100),
                              ("pickle", pickle.dumps(Exploit(str(tmp / "unpickled"))))):
            path = tmp / f"{name}{suffix}"
            path.write_bytes(content)
            hostile.append(path)
    loaded = sum(1 for p in legit if Predictor.load(p).predict_canvas(
        keras.ops.zeros((1, 75, 75, 1)))[0].shape == (1, 10))
    refused = 0
    for p in hostile:
        try:
            Predictor.load(p)
        except InvalidModel:
            refused += 1
    ran = (tmp / "code-ran").exists() or (tmp / "unpickled").exists()
    return [f"| Model files (`Predictor.load`) | {len(legit)} legit (seed CNN, ours, "
            f"list outputs; .keras and .h5), {len(hostile)} hostile (Lambda code, pickle, "
            f"empty, garbage, wrong input, wrong outputs) | {loaded}/{len(legit)} load and "
            f"predict; {refused}/{len(hostile)} refused with `InvalidModel`; "
            f"user code executed: {'YES' if ran else 'never'} |"]


def training_faults(tmp: Path) -> list[str]:
    from tests.campaigns import (kill_campaign, make_finished_run, read_state, start_train,
                                 tree_hashes)

    finished = make_finished_run(tmp / "finished")
    models = tmp / "models"
    models.mkdir()
    shutil.copy(finished / "model.keras", models / "default.keras")
    before = tree_hashes(finished), tree_hashes(models)
    blocker = tmp / "a-file"
    blocker.write_text("x")
    unwritable = start_train(blocker / "run")
    jobs = kill_campaign(tmp, seed=int(time.time()))
    intact = (tree_hashes(finished), tree_hashes(models)) == before

    kills = [j for j in jobs if j["signal"] == signal.SIGKILL and not j["finished_first"]]
    survived = [j for j in kills if not j["problems"]]
    strays = sum(j["stray_temp_files"] for j in kills)
    moments = ", ".join(f"{j['moment']} ({j['signalled_after_s']} s)" for j in kills)
    rows = [f"| SIGKILL during `python -m locmnist train` | {len(kills)} kills, 5 processes "
            f"side by side: {moments} | {len(survived)}/{len(kills)} runs readable afterwards "
            f"(valid JSON, model absent or loadable, shown as incomplete); finished run and "
            f"models/ file {'byte-identical' if intact else 'CHANGED'}; {strays} stray temp "
            f"files |"]
    rows += [f"|   {j['moment']}: {'; '.join(j['problems'])} | | |" for j in kills if j["problems"]]

    for j in jobs:
        if j["signal"] != signal.SIGTERM:
            continue
        stop = "did not stop" if j["stop_s"] is None else f"stopped in {j['stop_s']:.1f} s"
        rows.append(f"| SIGTERM (Cancel) | quick preset, mid-epoch | {stop}, status "
                    f"`{read_state(j['dir']).get('state')}`, exit {j['returncode']}, run "
                    f"{'readable' if not j['problems'] else '; '.join(j['problems'])} |")

    out, err = unwritable.communicate(timeout=300)
    msg = (err.strip().splitlines() or [""])[-1]
    rows.append(f"| Unwritable run directory | `--out <file>/run` | exit "
                f"{unwritable.returncode}, "
                f"{'no traceback' if 'Traceback' not in out + err else 'TRACEBACK'}: "
                f"`{msg[:90]}` |")
    return rows


def concurrency(predictor, tmp: Path) -> list[str]:
    from tests.campaigns import (THREADS, cancel_and_wait, concurrent_predictions,
                                 corpus_inputs, simultaneous_start_clicks)
    from locmnist import jobs

    rows = []
    for threads in (THREADS, 32):
        r = concurrent_predictions(predictor, corpus_inputs(), threads=threads)
        rows.append(f"| Concurrent predictions, one shared `Predictor` | {threads} threads, "
                    f"{r['calls']} calls (good, blank and invalid inputs) | "
                    f"{len(r['errors'])} errors, {len(r['mismatches'])} answers differing from "
                    f"serial, {r['calls'] / r['seconds']:.0f} predictions/s |")
    os.environ.pop("LOCMNIST_TRAIN_OVERRIDES", None)
    results = simultaneous_start_clicks(tmp / "runs")
    started = [r for r in results if isinstance(r, str)]
    for run_id in started:
        cancel_and_wait(tmp / "runs" / run_id)
    busy = sum(isinstance(r, jobs.TrainingBusy) for r in results)
    rows.append(f"| Simultaneous Start clicks (`jobs.start_training`) | {THREADS} at once | "
                f"{len(started)} training started, {busy} told one is running |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-training", action="store_true", help="skip the kill/cancel runs")
    args = ap.parse_args()
    from tests.corpus import load_predictor

    predictor, trained = load_predictor()
    rows = ["| Check | Tried | Outcome |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, section in (("inputs", lambda: image_inputs(predictor, trained)),
                              ("cli", lambda: cli_inputs(predictor, tmp)),
                              ("models", lambda: model_files(tmp / "models-check")),
                              ("concurrency", lambda: concurrency(predictor, tmp)),
                              ("training", lambda: training_faults(tmp / "faults"))):
            if name == "training" and args.no_training:
                continue
            (tmp / "models-check").mkdir(exist_ok=True)
            (tmp / "faults").mkdir(exist_ok=True)
            print(f"... {name}", file=sys.stderr, flush=True)
            rows += section()
    if not trained:
        rows.append("| (no trained model found: digit labels were not checked) | | |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
