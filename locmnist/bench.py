"""``python -m locmnist bench``: locmnist against the reference recipe, side by side.

One run measures, on the same published test split(s):

* time to accuracy and fixed budgets: each preset trains in its own process,
  scored on the full test split after every epoch with the training clock
  paused (``bench_probes.train_curve``); 60 s / 300 s results are the last
  evaluation at or before that much training;
* single-image latency: ``Predictor.predict`` vs ``model.predict`` vs the eager
  call vs TFLite, for our model and the reference CNN;
* synthesis throughput on one core and on all cores;
* peak memory of each training process and of a predicting process.

The machine is shared and noisy, so results come with ratios (ours / reference)
and the device they ran on. Nothing needs a GPU; one is used when present.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_QUOTED = {  # the numbers for the reference notebook, for context only
    "seconds_per_epoch": 34, "first_978_s": 933, "first_978_epoch": 26,
    "final_accuracy_45_epochs": 0.981, "final_iou_ge_0.6": 0.958, "final_s": 1535,
    "memory_gb": 4.8, "model_predict_ms": 38.5, "eager_ms": 5.3}


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--presets", default="quick,default,seed",
                        help="comma-separated presets to train (default: quick,default,seed)")
    parser.add_argument("--budget", type=float, default=900.0,
                        help="training seconds per preset (quick also keeps its own 60 s)")
    parser.add_argument("--seed-budget", type=float,
                        help="training seconds for the reference recipe (default: --budget)")
    parser.add_argument("--eval-splits", default="standard,seed",
                        help="test splits scored after each epoch (default: standard,seed)")
    parser.add_argument("--eval-limit", type=int, default=0,
                        help="score only the first N test canvases (0 = all 10,000)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every preset, e.g. train_digits=2048 "
                             "(for quick trials; results are then not the presets')")
    parser.add_argument("--skip-training", action="store_true",
                        help="latency, throughput and memory only")
    parser.add_argument("--model", help="model for latency and memory (default: shipped model)")
    parser.add_argument("--latency-runs", type=int, default=300)
    parser.add_argument("--synthesis-seconds", type=float, default=5.0)
    parser.add_argument("--tuning", action="store_true",
                        help="also measure jit_compile x steps_per_execution training throughput")
    parser.add_argument("--tuning-steps", type=int, default=100)
    parser.add_argument("--out", help="also write the JSON report to this file")


def parse_overrides(items: list[str]) -> dict:
    """``["train_digits=512", "widths=4,8,8,8"]`` -> {"train_digits": 512, "widths": [4, 8, 8, 8]}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--override wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(f"[{value}]" if "," in value else value)
        except ValueError:
            out[key] = value  # a plain string such as data=seed
    from locmnist.config import Config

    try:
        Config().replace(**out)  # unknown keys or bad values fail here, before any run
    except TypeError as e:
        raise ValueError(f"--override: {e}") from None
    return out


def run_probe(probe: str, params: dict, timeout_s: float) -> dict:
    """Run one probe in a fresh process; returns its result (or an ``error``)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "locmnist.bench_probes", probe,
                               json.dumps(params)], capture_output=True, text=True,
                              timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"{probe} did not finish within {timeout_s:.0f} s"}
    wall_s = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{probe} failed (exit {proc.returncode}): {tail}"}
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_wall_s"] = round(wall_s, 2)
    return result


def device_info() -> dict:
    import tensorflow as tf

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cpu_cores": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "gpus": gpus, "tensorflow": tf.__version__,
            "python": platform.python_version()}


def run(args) -> int:
    from locmnist.files import atomic_write_json

    report = measure(args)
    if args.out:
        atomic_write_json(args.out, report)
    if args.json:
        print(json.dumps(report))
    else:
        from locmnist.bench_report import format_report

        print(format_report(report))
    return 0


def measure(args) -> dict:
    presets = [p for p in args.presets.split(",") if p] if not args.skip_training else []
    splits = [s for s in args.eval_splits.split(",") if s]
    overrides = parse_overrides(args.override)
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "device": device_info(), "settings": {
                  "presets": presets, "budget_s": args.budget,
                  "seed_budget_s": args.seed_budget or args.budget, "eval_splits": splits,
                  "eval_limit": args.eval_limit, "overrides": overrides},
              "reference_quoted": REFERENCE_QUOTED}
    model = str(args.model) if args.model else None
    _say("latency ...")
    report["latency"] = run_probe("latency", {"model_path": model, "runs": args.latency_runs},
                                  timeout_s=900)
    _say("synthesis throughput ...")
    report["synthesis"] = {
        "one_core" if one else "all_cores": run_probe(
            "synthesis", {"one_core": one, "seconds": args.synthesis_seconds},
            timeout_s=300 + 8 * args.synthesis_seconds) for one in (True, False)}
    _say("memory of a predicting process ...")
    report["predict_memory"] = run_probe("predict_memory", {"model_path": model, "images": 200},
                                         timeout_s=600)
    report["training"] = {}
    with tempfile.TemporaryDirectory(prefix="locmnist-bench-") as tmp:
        for name in presets:
            budget = (args.seed_budget or args.budget) if name == "seed" else args.budget
            _say(f"training {name} for up to {budget:.0f} s ...")
            report["training"][name] = run_probe("train_curve", {
                "preset": name, "budget_s": budget, "overrides": overrides, "eval_splits": splits,
                "eval_limit": args.eval_limit, "out_dir": str(Path(tmp) / name)},
                timeout_s=budget * 4 + 900)
    if args.tuning:
        report["tuning"] = [run_probe("train_throughput", {
            "jit_compile": jit, "steps_per_execution": spe, "steps": args.tuning_steps},
            timeout_s=900) for jit in (False, True) for spe in (1, 8)]
    from locmnist.bench_report import summarize

    report["summary"] = summarize(report)
    return report


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)
