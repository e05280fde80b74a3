"""``python -m bench.seeds``: one preset trained with several seeds, mean and spread.

A result from one seed says little when the margin to a target is a tenth of a
point. This trains ``python -m locmnist train --preset P --seed N`` for each seed,
each in its own process exactly as a user runs it, into ``<dir>/<preset>-s<N>``,
and reads the test-split metrics that training wrote (``metrics.json``: the same
figures as ``evaluate --json`` on the full published split). A run directory that
already holds a completed run of that preset and seed is read, not retrained, so
an interrupted campaign resumes; any other content there is an error, never
overwritten.

Accuracy does not depend on the machine's speed (``default`` is a fixed amount of
work), so runs trained on different days can be pooled; training seconds can not,
and are printed for information only (``python -m bench`` gives times in E).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.__main__ import REPO, _env, _say

KEYS = ("accuracy", "iou_mean", "iou_ge_0.5", "ece", "digits_rejected", "accuracy_accepted",
        "reject_rate_negatives")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.seeds",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--dir", required=True, help="directory holding one run directory per seed")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config field for every run (quick trials; not the preset's result)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="also write the JSON report to this file")
    return p


def seed_run(run_dir: Path, preset: str, seed: int, overrides: list[str]) -> dict:
    """Train (unless already completed) and return the run's metrics, or an ``error``."""
    from locmnist import runs
    from locmnist.run_files import Unreadable, load_json, parse_metrics

    info = runs.run_info(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        cfg = info.config or {}
        if info.state != "completed" or cfg.get("preset") != preset or cfg.get("seed") != seed:
            return {"error": f"{run_dir} holds something else ({info.state}, preset "
                             f"{cfg.get('preset')}, seed {cfg.get('seed')}); move it away"}
    else:
        _say(f"training {preset} seed {seed} into {run_dir} ...")
        flags = _flags(overrides)
        proc = subprocess.run([sys.executable, "-m", "locmnist", "train", "--preset", preset,
                               "--seed", str(seed), "--out", str(run_dir), "--no-progress",
                               *flags], cwd=REPO, env=_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"training failed (exit {proc.returncode}): {tail}"}
    try:
        metrics = parse_metrics(load_json(run_dir / runs.METRICS))
    except Unreadable as e:
        return {"error": str(e)}
    out = {k: metrics[k] for k in KEYS if k in metrics}
    out["split_version"] = metrics.get("split_version")
    out["train_seconds"] = metrics.get("train_seconds")
    return out


def _flags(overrides: list[str]) -> list[str]:
    """``["time_limit_s=0"]`` -> ``["--time-limit=0"]``: the train CLI's own flag names
    (``locmnist.config.flag``), so an unknown field fails in training, loudly."""
    from locmnist.config import Config, flag, settable_fields

    fields = {f.name: f for f in settable_fields(Config)}
    out = []
    for item in overrides:
        key, _, value = item.partition("=")
        out.append(f"{flag(fields[key])}={value}" if key in fields else f"--{key}={value}")
    return out


def summarize(per_seed: dict) -> dict:
    """Mean, sample standard deviation, min and max of each metric over the good runs."""
    good = [r for r in per_seed.values() if "error" not in r]
    out = {}
    for k in KEYS:
        values = [r[k] for r in good if k in r]
        if values:
            out[k] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
                      "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                      "n": len(values)}
    return out


def format_report(report: dict) -> str:
    lines = [f"preset {report['preset']}, seeds {report['seeds']} "
             f"(test split v{report.get('split_version')})",
             "| seed | accuracy | mean IoU | IoU >= 0.5 | ECE | digits rejected | "
             "negatives rejected |", "|---|---|---|---|---|---|---|"]

    def pct(x):
        return "—" if x is None else f"{100 * x:.2f}%"

    for seed, r in report["per_seed"].items():
        if "error" in r:
            lines.append(f"| {seed} | error: {r['error']} |||||")
            continue
        lines.append(f"| {seed} | {pct(r.get('accuracy'))} | {r.get('iou_mean', 0):.3f} | "
                     f"{pct(r.get('iou_ge_0.5'))} | {pct(r.get('ece'))} | "
                     f"{pct(r.get('digits_rejected'))} | {pct(r.get('reject_rate_negatives'))} |")
    s = report["summary"]
    if "accuracy" in s:
        a, i = s["accuracy"], s["iou_mean"]
        lines.append(f"| mean of {a['n']} | **{pct(a['mean'])}** (std {100 * a['std']:.3f} "
                     f"points, {pct(a['min'])}–{pct(a['max'])}) | {i['mean']:.3f} "
                     f"({i['min']:.3f}–{i['max']:.3f}) |||||")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        print(f"error: --seeds wants integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    per_seed = {str(s): seed_run(root / f"{args.preset}-s{s}", args.preset, s, args.override)
                for s in seeds}
    versions = {r.get("split_version") for r in per_seed.values() if "error" not in r}
    if len(versions) > 1:  # never pool numbers from two versions of the split
        print(f"error: runs on different test split versions {sorted(versions)}",
              file=sys.stderr)
        return 2
    report = {"preset": args.preset, "seeds": seeds, "overrides": args.override,
              "split_version": versions.pop() if versions else None,
              "per_seed": per_seed, "summary": summarize(per_seed)}
    if args.out:
        from locmnist.files import atomic_write_json

        atomic_write_json(args.out, report)
    print(json.dumps(report) if args.json else format_report(report))
    return 1 if any("error" in r for r in per_seed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
