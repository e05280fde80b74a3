"""Predict (home): write a number or a digit, or upload or photograph one.

Two models read every input: the detector (``locmnist.reader``) boxes and labels
every digit and gives the number; the single-digit model (``locmnist.inference``,
the reference task) gives one digit, its probabilities, its box and the 75x75
image it saw. On a drawing of one digit, both answer and agree.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

import ui

from locmnist.canvas import CANVAS_PX, CANVAS_WIDTH

UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
USER_BOX_COLOR = "#00A000"  # green, like true boxes; removed from the ink before predicting


def render() -> None:
    st.title("Predict")
    st.caption("Write a number (or one digit) anywhere on the canvas, at any size, or upload "
               "or photograph one. Every digit gets a box and a label, and the number is read "
               "left to right; the single-digit model answers too.")
    c1, c2 = st.columns(2)
    with c1:
        model = ui.model_picker("predict")
    with c2:
        detector = ui.detector_picker("predict")
    draw_tab, upload_tab = st.tabs(["Draw", "Upload or photograph"])
    with draw_tab:
        draw_section(model, detector)
    with upload_tab:
        upload_section(model, detector)


def draw_section(model, detector) -> None:
    # Imported here: the component registers itself and needs a running script.
    from streamlit_drawable_canvas import st_canvas

    # The canvas takes the page's width: half of it would clip a 560 px canvas.
    t1, t2 = st.columns(2)
    mode = t1.radio("Tool", ["Draw", "Drag my own box"], horizontal=True, key="predict_tool",
                    help="Drag a box around one digit to see its IoU with the "
                         "single-digit model's box.")
    box_mode = mode == "Drag my own box"
    brush = t2.slider("Brush width", 6, 40, 18, key="predict_brush", disabled=box_mode)
    try:  # the component parses the browser's value itself: a forged one can break it
        canvas = st_canvas(
            stroke_width=3 if box_mode else brush,
            stroke_color=USER_BOX_COLOR if box_mode else "#000000",
            fill_color="rgba(0, 0, 0, 0)", background_color="#FFFFFF",
            height=CANVAS_PX, width=CANVAS_WIDTH,
            drawing_mode="rect" if box_mode else "freedraw",
            update_streamlit=True, return_image_data=True, key="predict_canvas")
    except (AttributeError, TypeError, KeyError, ValueError):
        canvas = None  # read_canvas says so
    st.caption("Hover the canvas for its toolbar: undo, redo, clear. "
               "The answer updates when a stroke ends.")
    from locmnist.canvas import InvalidCanvas, read_canvas

    try:
        drawing = read_canvas(canvas)  # checked before anything is decoded or copied
    except InvalidCanvas as e:
        st.error(f"Cannot read the canvas: {e}.")
        return
    if drawing is None:
        show_empty("Write a number or a digit on the canvas.")
        return
    predictor = ui.load_predictor(model)
    if predictor is None:
        return
    reader = ui.load_reader(detector)
    ink, user_box = without_user_boxes(drawing.rgba), drawing.user_box
    prediction, reading = ui.predict_drawing(predictor, model, ink, reader, detector)
    show_answers(prediction, reading, ui_image(ink), ink, model, key="canvas", source="drawn",
                 user_box=user_box)


def show_answers(prediction, reading, image, original, model, key: str, source: str,
                 user_box=None) -> None:
    """The detector's number (left) and the single-digit model's answer (right)."""
    left, right = st.columns(2, gap="large")
    with left:
        show_number(reading)
        if reading is not None:
            st.image(ui.reading_overlay(image, reading, width=CANVAS_WIDTH),
                     caption=f"Your input: {len(reading.digits)} digit"
                             f"{'' if len(reading.digits) == 1 else 's'} read by the detector")
    with right:
        show_summary(prediction, key=key, user_box=user_box)
        ui.correction_control(prediction, original, model, key=key, source=source,
                              user_box=user_box)
        show_pictures(prediction, reading, image, user_box=user_box)


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


def upload_section(model, detector) -> None:
    files_col, camera_col = st.columns(2, gap="large")
    with files_col:
        files = st.file_uploader("Images of numbers or digits (PNG, JPEG, BMP, GIF, WebP, TIFF)",
                                 type=UPLOAD_TYPES, accept_multiple_files=True,
                                 key="predict_upload") or []
    with camera_col:
        # Off until asked: a camera widget asks the browser for the webcam as soon as it shows.
        photo = None
        if st.toggle("Take a photo with the camera", key="predict_camera_on",
                     help="A phone or webcam photo of a number written on paper."):
            photo = st.camera_input("Photo of a written number", key="predict_camera")
    inputs = ([("Camera photo", photo)] if photo is not None else []) + list(files)
    if not inputs:
        return
    predictor = ui.load_predictor(model)
    if predictor is None:
        return
    reader = ui.load_reader(detector)
    limit = ui.server_settings().max_upload_files
    if len(inputs) > limit:
        st.warning(f"Only the first {limit} of your {len(inputs)} images are read.")
    for i, item in enumerate(inputs[:limit]):
        name, f = item if isinstance(item, tuple) else (item.name, item)
        show_upload(i, name, f.getvalue(), predictor, model, reader, detector)


def show_upload(i: int, name: str, data: bytes, predictor, model, reader, detector) -> None:
    from locmnist.preprocess import InvalidImage

    with st.container(border=True):
        st.text(name)  # plain text: a file name is not markdown
        try:
            prediction, reading, image = ui.predict_upload(predictor, model, data, reader,
                                                           detector)
        except InvalidImage as e:
            st.error(ui.md_escape(f"{name}: {e}"))
            return
        show_answers(prediction, reading, image, image, model, key=f"upload_{i}",
                     source="uploaded")


def show_empty(message: str) -> None:
    a, b = st.columns(2)
    a.metric("Number", "—")
    b.metric("Predicted digit", "—")
    st.info(message)


def show_number(reading) -> None:
    """The detector's answer: the number, and each digit with its confidence."""
    if reading is None:  # no detector: the page said why above
        return
    a, b = st.columns([1, 2])
    a.metric("Number", reading.text or "—")
    if reading.digits:
        b.caption("Digits, left to right: " + ", ".join(
            f"{d.label} ({d.confidence:.0%})" for d in reading.digits))
    else:
        b.caption(reading.message.capitalize() + "." if reading.message else "")


def show_summary(prediction, key: str, user_box=None) -> None:
    """The single-digit model: digit, confidence, IoU with the user's box, probabilities."""
    from locmnist.boxes import iou

    if prediction.rejected:
        show_not_a_digit(prediction, key)
        return
    if prediction.label is None:
        st.metric("Predicted digit", "—")
        st.info(prediction.message.capitalize() + ".")
        return
    st.caption("The single-digit model (the reference task) reads one digit:")
    cols = st.columns(3 if user_box is not None else 2)
    cols[0].metric("Predicted digit", prediction.label)
    cols[1].metric("Confidence", f"{prediction.confidence:.1%}")
    if user_box is not None:
        cols[2].metric("IoU with your box",
                  f"{float(iou(np.array(user_box), np.array(prediction.box_normalized))):.2f}")
    ui.probability_chart(prediction.probabilities, key=f"probs_{key}")


def show_not_a_digit(prediction, key: str) -> None:
    """The model looked and found no digit, or no digit likely enough to name: say so; its
    digit guesses stay visible, greyed."""
    best = int(np.argmax(prediction.probabilities))
    cols = st.columns(2)
    cols[0].metric("Predicted digit", "Not sure" if prediction.unsure else "Not a digit")
    cols[1].metric("Best digit guess", f"{best} ({prediction.confidence:.0%})")
    if prediction.unsure:
        st.caption("The model sees a digit but cannot tell which: no digit reaches the "
                   "confidence it needs to answer (the floor saved with the model). The "
                   "probabilities below are what it would say if it had to pick one.")
    else:
        st.caption("The model sees no digit here (letters, shapes, scribbles and noise are "
                   "refused). The probabilities below are what it would say if it had to "
                   "pick one.")
    ui.probability_chart(prediction.probabilities, key=f"probs_{key}", muted=True)


def show_pictures(prediction, reading, image, user_box=None) -> None:
    """The single-digit model's box on the input, and the 75x75 image it saw."""
    a, b = st.columns(2)
    if prediction.label is None:
        if reading is None:
            a.image(ui.framed(ui.on_white(image), CANVAS_PX), caption="Your input")
        if prediction.rejected:
            b.image(ui.model_view(prediction), caption="What the single-digit model saw (75×75)")
        return
    a.image(ui.overlay(image, prediction.box_normalized, width=CANVAS_PX, true_box=user_box),
            caption="The single-digit model's box in red" + (", yours in green" if user_box
                                                               else ""))
    b.image(ui.model_view(prediction), caption="What it saw (75×75), with its box")
