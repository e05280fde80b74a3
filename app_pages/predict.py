"""Predict (home): draw or upload digits; see the digit, its probabilities and its box."""
from __future__ import annotations

import numpy as np
import streamlit as st

import ui

from locmnist.canvas import CANVAS_PX

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
USER_BOX_COLOR = "#00A000"  # green, like true boxes; removed from the ink before predicting


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
        from locmnist.canvas import InvalidCanvas, read_canvas

        try:
            drawing = read_canvas(canvas)  # checked before anything is decoded or copied
        except InvalidCanvas as e:
            st.error(f"Cannot read the canvas: {e}.")
            return
        if drawing is None:
            show_empty("Draw a digit on the canvas.")
            return
        predictor = ui.load_predictor(model)
        if predictor is None:
            return
        ink, user_box = without_user_boxes(drawing.rgba), drawing.user_box
        prediction = predictor.predict(ink)
        show_summary(prediction, key="canvas", user_box=user_box)
        ui.correction_control(prediction, ink, model, key="canvas", source="drawn",
                              user_box=user_box)
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


def ui_image(rgba: np.ndarray):
    from PIL import Image

    return Image.fromarray(rgba.astype(np.uint8))


def upload_section(model) -> None:
    from locmnist.preprocess import InvalidImage

    files = st.file_uploader("Images of digits (PNG, JPEG, BMP, GIF, WebP, TIFF)",
                             type=UPLOAD_TYPES, accept_multiple_files=True,
                             key="predict_upload")
    predictor = ui.load_predictor(model) if files else None
    if predictor is None:
        return
    limit = ui.server_settings().max_upload_files
    if len(files) > limit:
        st.warning(f"Only the first {limit} of your {len(files)} files are read.")
    for i, f in enumerate(files[:limit]):
        with st.container(border=True):
            st.text(f.name)  # plain text: a file name is not markdown
            try:
                prediction, image = ui.predict_upload(predictor, model, f.getvalue())
            except InvalidImage as e:
                st.error(ui.md_escape(f"{f.name}: {e}"))
                continue
            summary, pictures = st.columns(2, gap="medium")
            with summary:
                show_summary(prediction, key=f"upload_{i}")
                ui.correction_control(prediction, image, model, key=f"upload_{i}",
                                      source="uploaded")
            with pictures:
                show_pictures(prediction, image)


def show_empty(message: str) -> None:
    st.metric("Predicted digit", "—")
    st.info(message)


def show_summary(prediction, key: str, user_box=None) -> None:
    """The digit, its confidence, the IoU with the user's box, and the probabilities."""
    from locmnist.boxes import iou

    if prediction.rejected:
        show_not_a_digit(prediction, key)
        return
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


def show_not_a_digit(prediction, key: str) -> None:
    """The model looked and found no digit: say so; its digit guesses stay visible, greyed."""
    best = int(np.argmax(prediction.probabilities))
    cols = st.columns(2)
    cols[0].metric("Predicted digit", "Not a digit")
    cols[1].metric("Best digit guess", f"{best} ({prediction.confidence:.0%})")
    st.caption("The model sees no digit here (letters, shapes, scribbles and noise are "
               "refused). The probabilities below are what it would say if it had to pick one.")
    ui.probability_chart(prediction.probabilities, key=f"probs_{key}", muted=True)


def show_pictures(prediction, image, user_box=None) -> None:
    """The input with the predicted box at display size, and the 75x75 model input."""
    a, b = st.columns(2)
    if prediction.label is None:
        a.image(ui.framed(ui.on_white(image), CANVAS_PX), caption="Your input")
        if prediction.rejected:
            b.image(ui.model_view(prediction), caption="What the model saw (75×75)")
        return
    a.image(ui.overlay(image, prediction.box_normalized, width=CANVAS_PX, true_box=user_box),
            caption="Your input, predicted box in red" + (", yours in green" if user_box else ""))
    b.image(ui.model_view(prediction), caption="What the model saw (75×75), with its box")
