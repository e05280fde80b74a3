"""Turning ``bench`` measurements into targets, ratios and a readable table."""
from __future__ import annotations

BUDGETS_S = (60, 300)
ACCURACIES = (0.978, 0.99)
OURS = ("quick", "default")
REFERENCE = "seed"


def first_reaching(curve: list, split: str, accuracy: float) -> dict | None:
    """The first per-epoch evaluation at or above ``accuracy`` (no extrapolation)."""
    for point in curve:
        if split in point and point[split]["accuracy"] >= accuracy:
            return {"train_s": point["train_s"], "epoch": point["epoch"]}
    return None


def at_budget(curve: list, split: str, budget_s: float) -> dict | None:
    """The last per-epoch evaluation at or before ``budget_s`` of training."""
    points = [p for p in curve if p["train_s"] <= budget_s and split in p]
    if not points:
        return None
    return {"epoch": points[-1]["epoch"], "train_s": points[-1]["train_s"], **points[-1][split]}


def _training_summary(run: dict, splits: list) -> dict:
    curve = run.get("curve", [])
    out = {"epochs_done": run.get("epochs_done"), "peak_rss_mb": run.get("peak_rss_mb"),
           "stopped_by_budget": run.get("stopped_by_budget"), "budget_s": run.get("budget_s"),
           "final": curve[-1] if curve else None}
    if "process_wall_s" in run:
        # The whole process minus the bench's own test evaluations: what a plain
        # `train` run costs, save its single final evaluation.
        out["process_s_without_bench_evals"] = round(run["process_wall_s"] - run["eval_s_total"], 1)
    out["time_to_accuracy"] = {s: {str(a): first_reaching(curve, s, a) for a in ACCURACIES}
                               for s in splits}
    out["at_budget"] = {s: {str(b): at_budget(curve, s, b) for b in BUDGETS_S} for s in splits}
    return out


def _ratio(a, b, digits: int = 2):
    return None if a in (None, 0) or b in (None, 0) else round(a / b, digits)


def _target(name: str, wanted: str, value, met) -> dict:
    return {"target": name, "wanted": wanted, "value": value, "met": met}


def summarize(report: dict) -> dict:
    splits = report["settings"]["eval_splits"]
    training = {k: _training_summary(v, splits) for k, v in report.get("training", {}).items()
                if "error" not in v}
    lat = report.get("latency", {})
    ours_lat, ref_lat = lat.get("ours", {}), lat.get("reference_cnn", {})
    p50 = lambda d, k: d.get(k, {}).get("p50_ms")
    targets = []
    quick = training.get("quick")
    if quick and "standard" in splits:
        q60 = quick["at_budget"]["standard"]["60"]
        targets.append(_target("quick: within 60 s", "accuracy >= 0.98 and IoU>=0.5 on >= 95%",
                               q60, None if q60 is None else
                               q60["accuracy"] >= 0.98 and q60["iou_ge_0.5"] >= 0.95))
        secs = quick.get("process_s_without_bench_evals")
        targets.append(_target("train --preset quick, whole process", "<= 120 s", secs,
                               None if secs is None else secs <= 120))
    default = training.get("default")
    if default and "standard" in splits and default["final"]:
        last = at_budget(report["training"]["default"]["curve"], "standard", 900)
        targets.append(_target("default: within 15 min", "accuracy >= 0.993 and mean IoU >= 0.88",
                               last, None if last is None else
                               last["accuracy"] >= 0.993 and last["iou_mean"] >= 0.88))
    if p50(ours_lat, "predictor_predict") is not None:
        ours_p50 = p50(ours_lat, "predictor_predict")
        speedup = _ratio(p50(ours_lat, "model_predict"), ours_p50, 1)
        targets.append(_target("Predictor.predict p50", "<= 5 ms", ours_p50, ours_p50 <= 5))
        targets.append(_target("Predictor.predict vs model.predict", ">= 10x faster", speedup,
                               speedup is not None and speedup >= 10))
    synth = report.get("synthesis", {}).get("all_cores", {}).get("standard", {})
    if "pipeline_canvases_per_s" in synth:
        rate = synth["pipeline_canvases_per_s"]
        targets.append(_target("synthesis (training pipeline, all cores)", ">= 20,000 canvases/s",
                               rate, rate >= 20000))
    rss = [training[k]["peak_rss_mb"] for k in OURS if k in training]
    if rss:
        targets.append(_target("training peak RSS (ours)", "<= 3 GB", max(rss),
                               max(rss) <= 3 * 1024))

    ratios = {}
    ref = training.get(REFERENCE)
    for name in OURS:
        if name in training and ref:
            ratios[f"{name}_vs_reference"] = {
                "time_to_accuracy (ours/ref, lower is better)": {
                    s: {a: _ratio((training[name]["time_to_accuracy"][s][a] or {}).get("train_s"),
                                  (ref["time_to_accuracy"][s][a] or {}).get("train_s"))
                        for a in training[name]["time_to_accuracy"][s]} for s in splits},
                "peak_rss (ours/ref)": _ratio(training[name]["peak_rss_mb"], ref["peak_rss_mb"]),
            }
    if ours_lat and ref_lat:
        ratios["latency"] = {
            "reference model.predict / our Predictor.predict": _ratio(
                p50(ref_lat, "model_predict"), p50(ours_lat, "predictor_predict"), 1),
            "reference eager call / our Predictor.predict": _ratio(
                p50(ref_lat, "eager_call"), p50(ours_lat, "predictor_predict"), 1),
            "our Predictor.predict / our TFLite predict": _ratio(
                p50(ours_lat, "predictor_predict"), p50(ours_lat, "tflite_predict"), 1)}
    return {"targets": targets, "training": training, "ratios": ratios}


def format_report(report: dict) -> str:
    """A plain-text rendering of ``report`` (the JSON holds everything)."""
    dev = report["device"]
    gpu = ", ".join(dev["gpus"]) or "no GPU"
    lines = [f"device: {dev['cpu']} ({dev['cpus_usable']} of {dev['cpu_cores']} cores), {gpu}, "
             f"TensorFlow {dev['tensorflow']}", ""]
    summary = report["summary"]
    lines.append("targets")
    for t in summary["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        value = t["value"]
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"  [{mark:>6}] {t['target']}: {value}  (wanted {t['wanted']})")
    for name, s in summary["training"].items():
        lines.append(f"\ntraining {name}: {s['epochs_done']} epochs, peak RSS "
                     f"{s['peak_rss_mb']:.0f} MB, budget {s['budget_s']:.0f} s"
                     + (" (stopped by budget)" if s["stopped_by_budget"] else ""))
        for split, by_acc in s["time_to_accuracy"].items():
            reach = ", ".join(f"{a}: " + (f"{r['train_s']:.0f} s (epoch {r['epoch']})" if r
                                          else "not reached") for a, r in by_acc.items())
            lines.append(f"  {split} split, time to accuracy  {reach}")
            for b, p in s["at_budget"][split].items():
                lines.append(f"  {split} split, within {b:>3} s: " + (
                    "no evaluation yet" if p is None else
                    f"acc {p['accuracy']:.4f} mean IoU {p['iou_mean']:.3f} "
                    f"IoU>=0.5 {p['iou_ge_0.5']:.3f} (epoch {p['epoch']}, {p['train_s']:.0f} s)"))
    for who in ("ours", "reference_cnn"):
        lat = report.get("latency", {}).get(who)
        if lat:
            lines.append(f"\nlatency, {who} (p50 / p95 ms): " + ", ".join(
                f"{k} {v['p50_ms']:.2f}/{v['p95_ms']:.2f}" for k, v in lat.items()))
    for k, v in report.get("synthesis", {}).items():
        for data in ("standard", "seed"):
            if data in v:
                lines.append(f"synthesis {data} data, {k.replace('_', ' ')} ({v['cpus']} cpu): "
                             f"direct {v[data]['direct_canvases_per_s']:,}/s, training pipeline "
                             f"{v[data]['pipeline_canvases_per_s']:,}/s")
    mem = report.get("predict_memory", {})
    if "peak_rss_mb" in mem:
        lines.append(f"predicting process peak RSS: {mem['peak_rss_mb']:.0f} MB")
    for t in report.get("tuning", []):
        if "error" not in t:
            lines.append(f"tuning jit_compile={t['jit_compile']} steps_per_execution="
                         f"{t['steps_per_execution']}: {t['images_per_s']} images/s")
    if summary["ratios"]:
        lines.append("\nratios: " + __import__("json").dumps(summary["ratios"], indent=1))
    errors = [f"{k}: {v['error']}" for k, v in _sections(report) if "error" in v]
    lines += ["", *("error " + e for e in errors)] if errors else []
    return "\n".join(lines)


def _sections(report: dict):
    for key in ("latency", "predict_memory"):
        if key in report:
            yield key, report[key]
    for group in ("synthesis", "training"):
        yield from report.get(group, {}).items()
    for i, t in enumerate(report.get("tuning", [])):
        yield f"tuning {i}", t
