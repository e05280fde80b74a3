"""Evaluate: a model on the published test split, with its worst predictions, its
calibration (reliability diagram) and its "not a digit" trade-off on the negative test split."""
from __future__ import annotations

import numpy as np
import streamlit as st

import ui

SIZES = (500, 1000, 2000, 5000, 10_000)
RESULT = "evaluation"    # session key: the last result, with what it was computed for
GALLERY = 12


def render() -> None:
    st.title("Evaluate")
    st.caption("Score a model on the fixed test split: 10,000 canvases made from the MNIST "
               "test digits, the same for every model.")
    predictor = ui.load_predictor(ui.model_picker("evaluate"))
    if predictor is None:
        return
    n = st.select_slider("Test canvases", SIZES, value=1000, key="evaluate_n",
                         format_func=lambda v: "all 10,000" if v == 10_000 else f"{v:,}")
    wanted = (predictor.source, n)
    if st.button("Evaluate", key="evaluate_run", type="primary"):
        st.session_state[RESULT] = evaluate(predictor, n) | {"for": wanted}
    result = st.session_state.get(RESULT)
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
    st.caption(f"A canvas is \"not a digit\" when {rule} is below "
               f"{m['reject_threshold']:.3g}; {m['n_negatives']:,} canvases of the negative test "
               f"split (letters, shapes, scribbles, noise, blank). Confidences are "
               f"temperature-scaled (T = {m['temperature']:.2f}"
               f"{'' if m['calibrated'] else ', no calibration saved: the fallback'}).")
    cols = st.columns(4)
    cols[0].metric("Negatives rejected", f"{m['reject_rate_negatives']:.1%}")
    cols[1].metric("Digits wrongly rejected", f"{m['digits_rejected']:.2%}")
    cols[2].metric("Accuracy on accepted", f"{m['accuracy_accepted']:.2%}")
    cols[3].metric("ECE (15 bins)", f"{m['ece']:.2%}")
    a, b = st.columns(2)
    with a:
        st.plotly_chart(reliability_figure(m["reliability"]), width="stretch",
                        key="evaluate_reliability")
    with b:
        st.plotly_chart(tradeoff_figure(m["tradeoff"], m["reject_threshold"]), width="stretch",
                        key="evaluate_tradeoff")


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


def tradeoff_figure(rows: list[dict], threshold: float):
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
    fig.update_layout(title="Rejection trade-off", height=360,
                      xaxis=dict(title="threshold", range=[0, 1]),
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
