"""Evaluate: a model on its published test split, with its worst answers.

A single-digit model is scored on the 10,000-canvas test split, with its calibration
(reliability diagram) and its "not a digit" trade-off on the negative test split; a
detector on the detection test split (``locmnist.detection_eval``: COCO mAP, AP per
class, the precision-recall curve, number accuracy), with the canvases it read worst.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

import ui

SIZES = (500, 1000, 2000, 5000, 10_000)
GALLERY = 12

TASKS = ("Single-digit model", "Detector (numbers)")
DET_SIZES = (500, 1000, 2000, 0)    # 0: the whole detection test split


def render() -> None:
    st.title("Evaluate")
    task = st.radio("Evaluate", TASKS, horizontal=True, key="evaluate_task",
                    label_visibility="collapsed")
    if task == TASKS[1]:
        detector_section()
        return
    st.caption("Score a model on the fixed test split: 10,000 canvases made from the MNIST "
               "test digits, the same for every model.")
    scored(ui.load_predictor(ui.model_picker("evaluate")), "evaluate", SIZES, 1000,
           "all 10,000", evaluate, show)


def scored(model, key: str, sizes: tuple, default: int, all_label: str, evaluate, show) -> None:
    """The size slider, the Evaluate button and the last result, for either model kind.

    ``model``: a Predictor or a Reader (None: nothing loaded, nothing shown); its
    ``source`` and the size name what a result was computed for, so a result stays on
    screen across reruns and disappears when either changes. ``sizes[-1]`` means the
    whole split (``all_label``). ``evaluate(model, n)`` -> result dict, ``show(result)``.
    """
    if model is None:
        return
    n = st.select_slider("Test canvases", sizes, value=default, key=f"{key}_n",
                         format_func=lambda v: all_label if v == sizes[-1] else f"{v:,}")
    wanted = (model.source, n)
    if st.button("Evaluate", key=f"{key}_run", type="primary"):
        st.session_state[f"{key}_result"] = evaluate(model, n) | {"for": wanted}
    result = st.session_state.get(f"{key}_result")
    if result and result["for"] == wanted:
        show(result)


def evaluate(predictor, n: int) -> dict:
    from locmnist.evaluation import evaluate_model

    bar = st.progress(0.0, text="Preparing the test split...")
    metrics, d = evaluate_model(
        predictor, limit=n, return_details=True,
        progress=lambda f: bar.progress(f, text=f"Predicting: {f:.0%}"))
    bar.empty()
    pred = d["probabilities"].argmax(axis=1)
    # Worst first: wrong digits (most confident first), then the lowest IoU.
    wrong = pred != d["labels"]
    order = np.lexsort((d["iou"], -d["probabilities"].max(axis=1), ~wrong))[:GALLERY]
    worst = [{"canvas": d["canvases"][i], "label": int(d["labels"][i]), "pred": int(pred[i]),
              "confidence": float(d["probabilities"][i].max()), "iou": float(d["iou"][i]),
              "pred_box": d["pred_boxes"][i], "true_box": d["true_boxes"][i]} for i in order]
    return {"metrics": metrics, "ious": d["iou"], "worst": worst}


def show(result: dict) -> None:
    m = result["metrics"]
    cols = st.columns(5)
    cols[0].metric("Accuracy", f"{m['accuracy']:.2%}")
    cols[1].metric("Mean IoU", f"{m['iou_mean']:.3f}")
    for col, t in zip(cols[2:], ("0.5", "0.6", "0.75")):
        col.metric(f"IoU ≥ {t}", f"{m[f'iou_ge_{t}']:.1%}")
    st.caption(f"{m['n']:,} test canvases.")
    show_rejection(m)
    a, b = st.columns(2)
    with a:
        st.plotly_chart(confusion_figure(m["confusion_matrix"]), width="stretch",
                        key="evaluate_confusion")
    with b:
        st.plotly_chart(per_class_figure(m["per_class_accuracy"]), width="stretch",
                        key="evaluate_per_class")
    st.plotly_chart(iou_histogram(result["ious"]), width="stretch", key="evaluate_iou")
    st.subheader("Worst predictions")
    st.caption("True box in green, predicted box in red.")
    gallery(result["worst"])


def show_rejection(m: dict) -> None:
    """"Not a digit" on digits and on the negative test split, and calibration."""
    st.subheader("Not a digit")
    rule = ("the model's digit output" if m["reject_rule"] == "digit"
            else "its top calibrated probability")
    floor = (f", and \"not sure\" when its top calibrated probability is below "
             f"{m['min_confidence']:.3g}" if m.get("min_confidence") else "")
    st.caption(f"A canvas is \"not a digit\" when {rule} is below "
               f"{m['reject_threshold']:.3g}{floor}; {m['n_negatives']:,} canvases of the negative test "
               f"split (letters, shapes, scribbles, noise, blank). Confidences are "
               f"temperature-scaled (T = {m['temperature']:.2f}"
               f"{'' if m['calibrated'] else ', no calibration saved: the fallback'}).")
    cols = st.columns(4)
    cols[0].metric("Negatives rejected", f"{m['reject_rate_negatives']:.1%}")
    cols[1].metric("Digits wrongly rejected", f"{m['digits_rejected']:.2%}",
                   help="not a digit, or not sure which digit")
    cols[2].metric("Accuracy on accepted", f"{m['accuracy_accepted']:.2%}")
    cols[3].metric("ECE (15 bins)", f"{m['ece']:.2%}")
    a, b = st.columns(2)
    with a:
        st.plotly_chart(reliability_figure(m["reliability"]), width="stretch",
                        key="evaluate_reliability")
    with b:
        st.plotly_chart(tradeoff_figure(m["tradeoff"], m["reject_threshold"]), width="stretch",
                        key="evaluate_tradeoff")
    if m.get("confidence_tradeoff"):  # metrics from before the "not sure" floor lack it
        st.plotly_chart(tradeoff_figure(m["confidence_tradeoff"], m["min_confidence"],
                                        title="\"Not sure\" trade-off (the digit rule at its "
                                              "threshold)",
                                        axis="floor on the top calibrated probability"),
                        width="stretch", key="evaluate_confidence_tradeoff")


def reliability_figure(bins: list[dict]):
    """Accuracy against confidence per bin; a calibrated model sits on the diagonal."""
    import plotly.graph_objects as go

    used = [b for b in bins if b["n"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line=dict(dash="dash", color="gray")))
    fig.add_trace(go.Scatter(x=[b["confidence"] for b in used], y=[b["accuracy"] for b in used],
                             mode="lines+markers", name="model",
                             marker=dict(size=[6 + 14 * (b["n"] / max(1, max(c["n"] for c in used)))
                                               ** 0.5 for b in used]),
                             customdata=[b["n"] for b in used],
                             hovertemplate="confidence %{x:.1%}: accuracy %{y:.1%}"
                                           " (%{customdata} digits)<extra></extra>"))
    fig.update_layout(title="Reliability: accuracy against confidence", height=360,
                      xaxis=dict(title="confidence (calibrated)", range=[0, 1], tickformat=".0%"),
                      yaxis=dict(title="accuracy", range=[0, 1.02], tickformat=".0%"),
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(x=0.02, y=0.98))
    return fig


def tradeoff_figure(rows: list[dict], threshold: float, title: str = "Rejection trade-off",
                    axis: str = "threshold"):
    """Per threshold: digits rejected, accuracy on the accepted, negatives rejected."""
    import plotly.graph_objects as go

    x = [r["threshold"] for r in rows]
    fig = go.Figure()
    for key, name in (("negatives_rejected", "negatives rejected"),
                      ("digits_rejected", "digits rejected"),
                      ("accuracy_accepted", "accuracy on accepted digits")):
        fig.add_trace(go.Scatter(x=x, y=[r[key] for r in rows], mode="lines+markers", name=name,
                                 hovertemplate="threshold %{x:.3g}: %{y:.2%}<extra></extra>"))
    fig.add_vline(x=threshold, line_dash="dash", line_color="gray",
                  annotation_text=f"saved {threshold:.3g}")
    fig.update_layout(title=title, height=360,
                      xaxis=dict(title=axis, range=[0, 1]),
                      yaxis=dict(range=[0, 1.02], tickformat=".0%"),
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(x=0.02, y=0.5))
    return fig


def confusion_figure(matrix):
    import plotly.graph_objects as go

    z = np.asarray(matrix)
    digits = [str(d) for d in range(10)]
    fig = go.Figure(go.Heatmap(z=z, x=digits, y=digits, colorscale="Blues", text=z,
                               texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title="Confusion matrix", xaxis=dict(title="predicted", dtick=1),
                      yaxis=dict(title="true", dtick=1, autorange="reversed"), height=420,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def per_class_figure(per_class: dict):
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=list(per_class), y=list(per_class.values()),
                           hovertemplate="digit %{x}: %{y:.2%}<extra></extra>"))
    low = min(per_class.values()) if per_class else 0.0
    fig.update_layout(title="Accuracy per digit", xaxis=dict(title="digit", dtick=1), height=420,
                      yaxis=dict(range=[max(0.0, low - 0.05), 1.0], tickformat=".0%"),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def iou_histogram(ious):
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=np.asarray(ious), xbins=dict(start=0, end=1.0001, size=0.02)))
    for t in (0.5, 0.6, 0.75):
        fig.add_vline(x=t, line_dash="dash", line_color="gray", annotation_text=f"{t}")
    fig.update_layout(title="IoU of predicted vs true boxes", xaxis_title="IoU",
                      yaxis_title="canvases", height=300, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def gallery(worst: list[dict]) -> None:
    from locmnist.boxes import draw_boxes

    cols = st.columns(6)
    for i, w in enumerate(worst):
        ink = 1.0 - w["canvas"][..., 0] / 255.0
        img = ui.framed(draw_boxes(ink, predicted=w["pred_box"], true=w["true_box"], scale=2))
        cols[i % 6].image(img, caption=f"true {w['label']}, predicted {w['pred']} "
                                       f"({w['confidence']:.0%}), IoU {w['iou']:.2f}")


# --- the detector ---------------------------------------------------------------------

def detector_section() -> None:
    st.caption("Score a detector on the fixed detection test split: every MNIST test digit "
               "once, in rows like numbers, scattered and alone, plus canvases with no digit. "
               "mAP comes from pycocotools' COCOeval.")
    scored(ui.load_reader(ui.detector_picker("evaluate")), "evaluate_det", DET_SIZES, 500,
           "all", evaluate_detector, show_detector)


def evaluate_detector(reader, n: int) -> dict:
    from locmnist.detection_eval import evaluate_detector as score

    bar = st.progress(0.0, text="Preparing the detection test split (once per server)...")
    metrics, d = score(reader, limit=n or None, return_details=True,
                       progress=lambda f: bar.progress(f, text=f"Detecting: {f:.0%}"))
    bar.empty()
    scenes, readings = d["scenes"], d["readings"]
    mistakes = [canvas_mistakes(scenes.boxes[i], scenes.labels[i], readings[i])
                for i in range(len(scenes))]
    worst = sorted(range(len(scenes)), key=lambda i: -mistakes[i])[:GALLERY]
    gallery_items = [{"canvas": scenes.canvases[i], "kind": str(scenes.kinds[i]),
                      "true_boxes": scenes.boxes[i], "true_text": scenes.text(i),
                      "reading": readings[i], "mistakes": mistakes[i]} for i in worst if mistakes[i]]
    return {"metrics": metrics, "worst": gallery_items}


def canvas_mistakes(true_boxes, true_labels, reading, threshold: float = 0.5) -> int:
    """Missed digits plus wrong or extra detections on one canvas: each true digit matches
    at most one detection of its label at IoU >= ``threshold``, best first."""
    from locmnist.boxes import iou

    unmatched = list(range(len(reading.boxes)))
    missed = 0
    for box, label in zip(true_boxes, true_labels):
        best, best_iou = None, threshold
        for j in unmatched:
            overlap = float(iou(box, reading.boxes[j]))
            if int(reading.labels[j]) == int(label) and overlap >= best_iou:
                best, best_iou = j, overlap
        if best is None:
            missed += 1
        else:
            unmatched.remove(best)
    return missed + len(unmatched)


def show_detector(result: dict) -> None:
    m = result["metrics"]
    cols = st.columns(5)
    cols[0].metric("mAP@0.5", f"{m['map50']:.3f}")
    cols[1].metric("mAP@0.5:0.95", f"{m['map']:.3f}")
    rate = lambda v: "—" if v is None else f"{v:.1%}"
    cols[2].metric("Number accuracy", rate(m["number_accuracy"]),
                   help="Row canvases of 2-5 digits read exactly, left to right.")
    cols[3].metric("Single digits: one right box", rate(m["single_digit_one_right"]))
    cols[4].metric("No-digit canvases left empty", rate(m["negatives_clean"]))
    st.caption(f"{m['n_canvases']:,} test canvases, {m['n_digits']:,} digits; "
               f"{m['numbers']:,} numbers of 2-5 digits. Reading threshold "
               f"{m['score_threshold']:g}.")
    a, b = st.columns(2)
    with a:
        st.plotly_chart(ap_figure(m["ap_per_class"], m["ap50_per_class"]), width="stretch",
                        key="evaluate_ap")
    with b:
        st.plotly_chart(pr_figure(m["pr_curve"]), width="stretch", key="evaluate_pr")
    st.subheader("Worst canvases")
    st.caption("True boxes in green, the detector's in red with their labels; "
               "most mistakes (missed, wrong or extra digits) first.")
    if not result["worst"]:
        st.success("Every canvas was read right.")
    detector_gallery(result["worst"])


def ap_figure(ap: dict, ap50: dict):
    import plotly.graph_objects as go

    fig = go.Figure([go.Bar(name="AP@0.5", x=list(ap50), y=list(ap50.values())),
                     go.Bar(name="AP@0.5:0.95", x=list(ap), y=list(ap.values()))])
    fig.update_layout(title="AP per digit", barmode="group", height=380,
                      xaxis=dict(title="digit", dtick=1), yaxis=dict(range=[0, 1]),
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def pr_figure(curve: dict):
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=curve["recall"], y=curve["precision"], mode="lines",
                               hovertemplate="recall %{x:.2f}: precision %{y:.3f}<extra></extra>"))
    fig.update_layout(title="Precision-recall at IoU 0.5 (mean over digits)", height=380,
                      xaxis=dict(title="recall", range=[0, 1]),
                      yaxis=dict(title="precision", range=[0, 1.02]),
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def detector_gallery(worst: list[dict], scale: int = 2) -> None:
    from locmnist.boxes import draw_boxes
    from locmnist.detection_eval import read_text

    cols = st.columns(4)
    for i, w in enumerate(worst):
        # Dark ink on white paper, enlarged; boxes are in canvas pixels, so scaled alike.
        img = draw_boxes(1.0 - w["canvas"][..., 0] / 255.0, scale=scale)
        for box in w["true_boxes"]:
            img = draw_boxes(img, true=np.asarray(box) * scale, normalized=False)
        reading = w["reading"]
        for box, label in zip(reading.boxes, reading.labels):
            img = draw_boxes(img, predicted=np.asarray(box) * scale, label=str(int(label)),
                             normalized=False)
        n = w["mistakes"]
        cols[i % 4].image(ui.framed(img), caption=f"{w['kind']}: true {w['true_text'] or '—'}, "
                                                  f"read {read_text(reading) or '—'} "
                                                  f"({n} mistake{'s' if n > 1 else ''})")
