"""Predict (home): draw or upload digits; see the digit, its probabilities and its box."""
from __future__ import annotations

import numpy as np
import streamlit as st

import ui

CANVAS_PX = 280
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
USER_BOX_COLOR = "#00A000"  # green, like true boxes; removed from the ink before predicting
ORIGIN = {"left": 0.0, "top": 0.0, "center": 0.5, "right": 1.0, "bottom": 1.0}  # Fabric.js


def render() -> None:
    st.title("Predict")
    st.caption("Draw a digit anywhere on the canvas, at any size, or upload images. "
               "The model finds the digit and puts a box around it.")
    model = ui.model_picker("predict")
    draw_tab, upload_tab = st.tabs(["Draw", "Upload"])
    with draw_tab:
        draw_section(model)
    with upload_tab:
        upload_section(model)


def draw_section(model) -> None:
    # Imported here: the component registers itself and needs a running script.
    from streamlit_drawable_canvas import st_canvas

    left, right = st.columns([1, 1], gap="large")
    with left:
        mode = st.radio("Tool", ["Draw the digit", "Drag my own box"], horizontal=True,
                        key="predict_tool",
                        help="Drag a box around your digit to see its IoU with the prediction.")
        box_mode = mode == "Drag my own box"
        brush = st.slider("Brush width", 6, 40, 18, key="predict_brush", disabled=box_mode)
        canvas = st_canvas(
            stroke_width=3 if box_mode else brush,
            stroke_color=USER_BOX_COLOR if box_mode else "#000000",
            fill_color="rgba(0, 0, 0, 0)", background_color="#FFFFFF",
            height=CANVAS_PX, width=CANVAS_PX,
            drawing_mode="rect" if box_mode else "freedraw",
            update_streamlit=True, return_image_data=True, key="predict_canvas")
        st.caption("Hover the canvas for its toolbar: undo, redo, clear. "
                   "The prediction updates when a stroke ends.")
    with right:
        image = canvas.image_data
        if image is None:
            show_empty("Draw a digit on the canvas.")
            return
        predictor = ui.load_predictor(model)
        if predictor is None:
            return
        ink = without_user_boxes(np.asarray(image))
        user_box = last_user_box(canvas.json_data)
        prediction = predictor.predict(ink)
        show_summary(prediction, key="canvas", user_box=user_box)
    show_pictures(prediction, ui_image(ink), user_box=user_box)


def without_user_boxes(rgba: np.ndarray) -> np.ndarray:
    """The drawing with the user's green box outlines painted white, so they are not ink.

    Black ink, even anti-aliased, is grey (r = g = b); any green cast is the box.
    """
    rgba = rgba.copy()
    r, g, b = (rgba[..., i].astype(int) for i in range(3))
    green = g > np.maximum(r, b) + 8
    rgba[green, :3] = 255
    return rgba


def last_user_box(json_data) -> tuple[float, float, float, float] | None:
    """The last rectangle dragged on the canvas, normalized (xmin, ymin, xmax, ymax)."""
    rects = [o for o in (json_data or {}).get("objects", [])
             if str(o.get("type", "")).lower() == "rect"]  # Fabric.js writes "Rect"
    if not rects:
        return None
    o = rects[-1]
    w, h = o.get("width", 0) * o.get("scaleX", 1), o.get("height", 0) * o.get("scaleY", 1)
    x0 = o.get("left", 0) - ORIGIN.get(o.get("originX", "left"), 0.0) * w
    y0 = o.get("top", 0) - ORIGIN.get(o.get("originY", "top"), 0.0) * h
    box = (min(x0, x0 + w), min(y0, y0 + h), max(x0, x0 + w), max(y0, y0 + h))
    return tuple(float(np.clip(v / CANVAS_PX, 0, 1)) for v in box)


def ui_image(rgba: np.ndarray):
    from PIL import Image

    return Image.fromarray(rgba.astype(np.uint8))


def upload_section(model) -> None:
    from locmnist.preprocess import InvalidImage, open_image

    files = st.file_uploader("Images of digits (PNG, JPEG, BMP, GIF, WebP, TIFF)",
                             type=UPLOAD_TYPES, accept_multiple_files=True,
                             key="predict_upload")
    predictor = ui.load_predictor(model) if files else None
    if predictor is None:
        return
    for i, f in enumerate(files or []):
        with st.container(border=True):
            st.text(f.name)  # plain text: a file name is not markdown
            try:
                image = open_image(f.getvalue())
                prediction = predictor.predict(image)
            except InvalidImage as e:
                st.error(ui.md_escape(f"{f.name}: {e}"))
                continue
            summary, pictures = st.columns(2, gap="medium")
            with summary:
                show_summary(prediction, key=f"upload_{i}")
            with pictures:
                show_pictures(prediction, image)


def show_empty(message: str) -> None:
    st.metric("Predicted digit", "—")
    st.info(message)


def show_summary(prediction, key: str, user_box=None) -> None:
    """The digit, its confidence, the IoU with the user's box, and the probabilities."""
    from locmnist.boxes import iou

    if prediction.label is None:
        show_empty(prediction.message.capitalize() + ".")
        return
    cols = st.columns(3 if user_box is not None else 2)
    cols[0].metric("Predicted digit", prediction.label)
    cols[1].metric("Confidence", f"{prediction.confidence:.1%}")
    if user_box is not None:
        cols[2].metric("IoU with your box",
                  f"{float(iou(np.array(user_box), np.array(prediction.box_normalized))):.2f}")
    ui.probability_chart(prediction.probabilities, key=f"probs_{key}")


def show_pictures(prediction, image, user_box=None) -> None:
    """The input with the predicted box at display size, and the 75x75 model input."""
    a, b = st.columns(2)
    if prediction.label is None:
        a.image(ui.framed(ui.on_white(image), CANVAS_PX), caption="Your input")
        return
    a.image(ui.overlay(image, prediction.box_normalized, width=CANVAS_PX, true_box=user_box),
            caption="Your input, predicted box in red" + (", yours in green" if user_box else ""))
    b.image(ui.model_view(prediction), caption="What the model saw (75×75), with its box")
