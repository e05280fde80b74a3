"""``python -m bench``: locmnist against the reference recipe, in machine-independent units.

Machine speed varies about 4x from day to day on the same kind of machine, so
one run measures everything together and expresses it in units of that run:

* **E**, one epoch of the reference recipe (``--preset seed``: 60k digits,
  batch 512), measured at the start of the run (and again at the end when the
  run trains presets, to show how much the machine drifted). Every training time
  is given in E and in seconds, with the machine named;
* latency as a ratio to ``model.predict`` of the same model in the same process;
* the whole ``python -m locmnist train --preset quick`` process, as a user runs it;
* ``quick`` on a simulated 4x slower machine (every training step sleeps three
  times its own duration), to show its result does not depend on speed;
* time to accuracy: each preset trains in its own process and is scored on the
  test split after every epoch with the training clock paused; a detector preset
  (``detect``, ``detect-quick``) on the detection test split's mAP;
* synthesis throughput and peak memory.

Each measurement runs in a fresh process (``bench.probes``), so they stay apart
(threads, caches, memory) and each process's peak memory can be read.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from locmnist.detector_config import DETECTOR_PRESETS

REPO = Path(__file__).resolve().parent.parent


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--presets", default="quick,default,seed",
                   help="comma-separated presets whose test-accuracy curve is measured "
                        "(default: quick,default,seed; empty for none); detect and "
                        "detect-quick give a test-mAP curve")
    p.add_argument("--budget", type=float, default=900.0,
                   help="training seconds per preset curve (quick keeps its own cap)")
    p.add_argument("--seed-budget", type=float,
                   help="training seconds for the reference recipe's curve (default: --budget)")
    p.add_argument("--detector-eval-every", type=int, default=1,
                   help="score a detector preset on the detection test split every N epochs "
                        "(and after the last one)")
    p.add_argument("--eval-splits", default="standard,seed",
                   help="test splits scored after each epoch (default: standard,seed)")
    p.add_argument("--eval-limit", type=int, default=0,
                   help="score only the first N test canvases (0 = all 10,000)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every training, e.g. train_digits=2048 "
                        "(for quick trials; results are then not the presets')")
    p.add_argument("--skip-training", action="store_true",
                   help="E, latency, throughput and memory only")
    p.add_argument("--skip-process", action="store_true",
                   help="do not time the whole 'train --preset quick' process")
    p.add_argument("--slowdown", type=float, default=4.0,
                   help="simulated slower machine for quick: each step takes this many times "
                        "as long (0 = skip)")
    p.add_argument("--reference-epochs", type=int, default=2,
                   help="epochs of the reference recipe run to measure E (the last is E; "
                        "0 = no E)")
    p.add_argument("--model", help="model for latency and memory (default: shipped model)")
    p.add_argument("--latency-runs", type=int, default=300)
    p.add_argument("--synthesis-seconds", type=float, default=5.0)
    p.add_argument("--tuning", action="store_true",
                   help="also measure jit_compile x steps_per_execution training throughput")
    p.add_argument("--tuning-steps", type=int, default=100)
    p.add_argument("--out", help="also write the JSON report to this file")
    return p


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


def _env() -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_probe(probe: str, params: dict, timeout_s: float) -> dict:
    """Run one probe in a fresh process; returns its result (or an ``error``)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.probes", probe, json.dumps(params)],
                              capture_output=True, text=True, timeout=timeout_s, env=_env(),
                              cwd=REPO)
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
            "python": platform.python_version(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        overrides = parse_overrides(args.override)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from locmnist.files import atomic_write_json

    report = measure(args, overrides)
    if args.out:
        atomic_write_json(args.out, report)
    if args.json:
        print(json.dumps(report))
    else:
        from bench.report import format_report

        print(format_report(report))
    return 0


def measure(args, overrides: dict) -> dict:
    presets = [p for p in args.presets.split(",") if p] if not args.skip_training else []
    splits = [s for s in args.eval_splits.split(",") if s]
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "device": device_info(), "settings": {
                  "presets": presets, "budget_s": args.budget,
                  "seed_budget_s": args.seed_budget or args.budget, "eval_splits": splits,
                  "eval_limit": args.eval_limit, "overrides": overrides,
                  "slowdown": args.slowdown, "reference_epochs": args.reference_epochs,
                  "test_split_versions": _split_versions()}}
    model = str(args.model) if args.model else None
    ref_params = {"epochs": args.reference_epochs, "overrides": overrides}
    report["reference_epoch"] = []
    if args.reference_epochs:  # 0: no E (latency ratios and throughput only)
        _say("E: the reference recipe's epoch ...")
        report["reference_epoch"].append(run_probe("reference_epoch", ref_params,
                                                   timeout_s=3600 * args.reference_epochs))
    _say("latency ...")
    report["latency"] = run_probe("latency", {"model_path": model, "runs": args.latency_runs},
                                  timeout_s=900)
    _say("the number reader's latency ...")
    report["reader_latency"] = run_probe("reader_latency", {
        "model_path": model, "detector_path": None, "runs": args.latency_runs}, timeout_s=900)
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
        if not args.skip_training and not args.skip_process:
            _say("the whole 'train --preset quick' process ...")
            report["quick_process"] = run_probe("train_process", {
                "preset": "quick", "overrides": overrides, "out_dir": str(Path(tmp) / "process")},
                timeout_s=3600)
        if not args.skip_training and args.slowdown:
            _say(f"quick on a simulated {args.slowdown:g}x slower machine ...")
            report["quick_slow"] = run_probe("slow_train", {
                "preset": "quick", "slowdown": args.slowdown, "overrides": overrides,
                "eval_limit": args.eval_limit, "out_dir": str(Path(tmp) / "slow")},
                timeout_s=7200)
        for name in presets:
            if name in DETECTOR_PRESETS:  # a fixed amount of work: trained to the end
                _say(f"training {name}, scoring mAP on the detection test split each epoch ...")
                report["training"][name] = run_probe("detector_curve", {
                    "preset": name, "overrides": overrides, "eval_limit": args.eval_limit,
                    "every": args.detector_eval_every, "out_dir": str(Path(tmp) / name)},
                    timeout_s=4 * 3600)
                continue
            budget = (args.seed_budget or args.budget) if name == "seed" else args.budget
            _say(f"training {name} for up to {budget:.0f} s ...")
            report["training"][name] = run_probe("train_curve", {
                "preset": name, "budget_s": budget, "overrides": overrides, "eval_splits": splits,
                "eval_limit": args.eval_limit, "out_dir": str(Path(tmp) / name)},
                timeout_s=budget * 4 + 900)
    if args.reference_epochs and {"default", "seed", *DETECTOR_PRESETS} & set(presets):
        # The long runs: measure the machine's speed again, at the end.
        _say("E again, at the end ...")
        report["reference_epoch"].append(run_probe("reference_epoch", ref_params,
                                                   timeout_s=3600 * args.reference_epochs))
    if args.tuning:
        report["tuning"] = [run_probe("train_throughput", {
            "jit_compile": jit, "steps_per_execution": spe, "steps": args.tuning_steps},
            timeout_s=900) for jit in (False, True) for spe in (1, 8)]
    from bench.report import summarize

    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report["summary"] = summarize(report)
    return report


def _split_versions() -> dict | None:
    """Which version of each published test split these numbers are on (never compare
    numbers from two versions)."""
    from locmnist import synthesis

    return getattr(synthesis, "SPLIT_VERSIONS", None)


def _say(msg: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')}: {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
