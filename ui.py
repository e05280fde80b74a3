"""What the app's pages share: the cached model, the model picker, charts, overlays.

Pages import this as ``import ui``. Nothing here runs at import time.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import streamlit as st

from locmnist import jobs, runs

ACTIVE_MODEL = "active_model"        # session key: the model path every page uses
UPLOADED_MODELS = "uploaded_models"  # session key: {temp path: the user's file name}
UPLOAD_OPTION = "__upload__"
# (history key, chart title) -- the reference notebook's three plots, then IoU.
CURVES = (("bounding_box_mse", "Bounding-box MSE"), ("classification_loss", "Classification loss"),
          ("classification_accuracy", "Classification accuracy"), ("bounding_box_iou", "IoU"))
# The detector's: every loss term, then validation mAP (COCOeval) per epoch.
DETECTOR_CURVES = (("loss", "Total loss"), ("heatmap_loss", "Centre heatmap loss (focal)"),
                   ("size_loss", "Box size loss (L1)"), ("offset_loss", "Centre offset loss (L1)"),
                   ("map50", "Validation mAP@0.5"), ("map", "Validation mAP@0.5:0.95"))
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692",
           "#B6E880")


# --- models ---------------------------------------------------------------------

@st.cache_resource(show_spinner=False, max_entries=6)
def _load_predictor(path: str, mtime: float):
    """One Predictor per (file, modification time): a retrained file is reloaded."""
    from locmnist.inference import Predictor

    return Predictor.load(path)


def get_predictor(path: Path):
    """The cached Predictor for ``path``; raises InvalidModel with a user-facing message."""
    from locmnist.model_files import InvalidModel

    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        raise InvalidModel(f"no model file at {path}") from None
    with st.spinner("Loading the model..."):
        return _load_predictor(str(path), mtime)


def warm_default_model() -> None:
    """Load the default model in the background once per server, so the first drawing is fast."""
    _start_warming(str(runs.default_model_path()))


@st.cache_resource(show_spinner=False)
def _start_warming(path: str) -> bool:
    def load():
        try:
            _load_predictor(path, Path(path).stat().st_mtime)
        except Exception:  # the page that needs the model shows the error
            pass

    threading.Thread(target=load, name="warm-model", daemon=True).start()
    return True


def active_model() -> Path:
    return Path(st.session_state.get(ACTIVE_MODEL) or runs.default_model_path())


def use_model(path: Path) -> None:
    st.session_state[ACTIVE_MODEL] = str(path)


def model_options() -> dict[str, str]:
    """{path: label} of the models one can pick: shipped default, finished runs, uploads."""
    options = {}
    default = runs.default_model_path()
    if default.exists():
        options[str(default)] = f"Shipped default ({default.name})"
    options.update(run_model_options(detectors=False))
    for path, name in st.session_state.get(UPLOADED_MODELS, {}).items():
        options[path] = f"Uploaded: {name}"
    return options


def model_picker(key: str) -> Path | None:
    """Pick a model (the choice is shared across pages); returns its path, or None.

    Loading waits for the first prediction (``load_predictor``), so the page shows at once.
    """
    options = model_options()
    current = str(active_model())
    if current not in options and Path(current).exists():
        options[current] = Path(current).name
    if not options:
        st.warning("No model yet: train one on the **Train** page, upload a .keras file, "
                   f"or ship `{hide_paths(runs.default_model_path())}`.")
    keys = list(options) + [UPLOAD_OPTION]
    labels = {**options, UPLOAD_OPTION: "Upload a .keras file..."}
    choice = st.selectbox("Model", keys, index=keys.index(current) if current in keys else 0,
                          format_func=labels.get, key=f"{key}_model")
    if choice == UPLOAD_OPTION:
        return _uploaded_model(key)
    if choice != current:
        use_model(Path(choice))
    if not Path(choice).exists():  # deleted since the list was made
        st.warning(f"The model file {hide_paths(choice)} is gone; pick another model.")
        return None
    return Path(choice)


def load_predictor(path: Path | None):
    """The Predictor for a picked model, or None after showing why it cannot be used."""
    from locmnist.model_files import InvalidModel

    if path is None:
        return None
    try:
        return get_predictor(path)
    except InvalidModel as e:
        st.error(md_escape(hide_paths(str(e))))
        return None


# --- the multi-digit detector (locmnist.reader) -----------------------------------

ACTIVE_DETECTOR = "active_detector"  # session key: the detector every page uses


def run_model_options(detectors: bool) -> dict[str, str]:
    """{path: label} of the runs whose model one can pick: finished (not live), readable,
    with a model file, of one kind (detectors or single-digit models)."""
    return {str(run.model_path): f"Run {run.id} ({run.state})" for run in runs.list_runs()
            if run.has_model and not run.live and run.state != runs.UNREADABLE
            and is_detector_run(run) == detectors}


def is_detector_run(run) -> bool:
    """Whether a run (``runs.RunInfo``) trained a detector: its config says so."""
    from locmnist.detector_config import is_detector_config

    return is_detector_config(run.config)


@st.cache_resource(show_spinner=False, max_entries=4)
def _load_reader(path: str, mtime: float, classifier_mtime: float):
    """One Reader per (detector file, its modification time, the modification time of the
    classifier it labels digits with), like ``_load_predictor``: re-shipping either model
    (``crop_tuning --ship`` replaces the classifier) loads the new one without a restart."""
    from locmnist.reader import Reader

    return Reader.load(path)


def active_detector() -> Path:
    return Path(st.session_state.get(ACTIVE_DETECTOR) or runs.default_detector_path())


def use_detector(path: Path) -> None:
    st.session_state[ACTIVE_DETECTOR] = str(path)


def detector_options() -> dict[str, str]:
    """{path: label} of the detectors one can pick: the shipped one and finished runs."""
    options = {}
    shipped = runs.default_detector_path()
    if shipped.exists():
        options[str(shipped)] = f"Shipped detector ({shipped.name})"
    options.update(run_model_options(detectors=True))
    return options


def detector_picker(key: str) -> Path | None:
    """Pick the detector that reads whole numbers (shared across pages), or None."""
    options = detector_options()
    if not options:
        st.warning("No detector yet, so numbers are not read: train one on the **Train** page "
                   f"(preset detect-quick) or ship `{hide_paths(runs.default_detector_path())}`.")
        return None
    current = str(active_detector())
    keys = list(options)
    choice = st.selectbox("Detector (reads the whole number)", keys,
                          index=keys.index(current) if current in keys else 0,
                          format_func=options.get, key=f"{key}_detector")
    if choice != current:
        use_detector(Path(choice))
    return Path(choice)


def load_reader(path: Path | None):
    """The cached Reader for a picked detector, or None after showing why it cannot be used."""
    from locmnist.model_files import InvalidModel

    if path is None:
        return None
    try:
        mtime = Path(path).stat().st_mtime
        with st.spinner("Loading the detector..."):
            return _load_reader(str(path), mtime, _mtime(runs.default_classifier_path()))
    except OSError:
        st.error(md_escape(f"No detector file at {hide_paths(str(path))}."))
    except InvalidModel as e:
        st.error(md_escape(hide_paths(str(e))))
    return None


UPLOAD_MAX_AGE_S = 24 * 3600  # a public server must not fill its disk with strangers' models


def _prune_uploads(folder: Path, quota_bytes: int | None = None) -> None:
    """Delete uploaded models older than a day, then the oldest until they fit ``quota_bytes``.

    A session still holding a deleted one gets a clear "file is gone" error.
    """
    files = []
    for f in folder.glob("*.keras"):
        try:
            st_ = f.stat()
            if time.time() - st_.st_mtime > UPLOAD_MAX_AGE_S:
                f.unlink()
            else:
                files.append((st_.st_mtime, st_.st_size, f))
        except OSError:
            pass  # another server process pruned it first
    total = sum(size for _, size, _ in files)
    for _, size, f in sorted(files):
        if quota_bytes is None or total <= quota_bytes:
            break
        f.unlink(missing_ok=True)
        total -= size


def _save_checked_upload(data: bytes, name: str) -> str:
    """Check an uploaded model from memory, save it under a generated name, trial-load it.

    The JSON config is checked before anything is written; the saved file is then
    built once in a memory-capped child process, so a model that needs more than
    the cap fails there, never in the server. Raises InvalidModel.
    """
    from locmnist.files import atomic_write
    from locmnist.model_files import InvalidModel, check_keras_bytes, trial_load

    check_keras_bytes(data, name)
    settings = server_settings()
    quota = None if settings.local else settings.upload_quota_mb * 2**20
    if quota is not None and len(data) > quota:
        raise InvalidModel(f"{name} is larger than this server's upload space")
    folder = Path(tempfile.gettempdir()) / "locmnist-uploads"
    folder.mkdir(exist_ok=True)
    _prune_uploads(folder, None if quota is None else quota - len(data))
    path = str(folder / f"{secrets.token_hex(8)}.keras")  # never the user's name as a path
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), suffix=".keras")
    try:
        with st.spinner("Checking the model in a sandboxed process..."):
            trial_load(path, memory_bytes=settings.trial_memory_mb * 2**20)
    except InvalidModel:
        Path(path).unlink(missing_ok=True)
        raise
    return path


def _uploaded_model(key: str) -> str | None:
    """Save an uploaded model under a generated name, validate it, make it active."""
    from locmnist.model_files import MAX_MODEL_BYTES, InvalidModel

    f = st.file_uploader("A .keras model (75x75x1 input; class and box outputs)",
                         type=["keras"], key=f"{key}_model_upload")
    if f is None:
        return None
    if f.size > MAX_MODEL_BYTES:
        st.error(f"That file is {f.size / 2**20:.0f} MB; the limit is {MAX_MODEL_BYTES // 2**20} MB.")
        return None
    saved = st.session_state.setdefault("upload_paths", {})
    path = saved.get(f.file_id)
    try:
        if path is None:
            path = _save_checked_upload(f.getvalue(), f.name)
            saved[f.file_id] = path
        get_predictor(Path(path))
    except InvalidModel as e:
        st.error(md_escape(str(e).replace(Path(path).name, f.name) if path else str(e)))
        return None
    st.session_state.setdefault(UPLOADED_MODELS, {})[path] = f.name
    use_model(Path(path))
    return Path(path)


ADMIN_TOKEN = "admin_token"   # session key: what the visitor typed as the admin token
OWNER_TOKEN = "owner_token"   # session key: this session's secret, the owner of its runs


def is_admin() -> bool:
    """Local mode, or this session entered the admin token: logs, paths, anyone's runs."""
    return server_settings().is_admin(st.session_state.get(ADMIN_TOKEN))


def admin_login() -> None:
    """A password field in the sidebar, on a public server that has an admin token."""
    settings = server_settings()
    if settings.local or not settings.admin_token:
        return
    with st.sidebar.expander("Admin"):
        st.text_input("Admin token", type="password", key=ADMIN_TOKEN)


def session_owner() -> str:
    """This session's secret: the runs it starts are its own to cancel."""
    return st.session_state.setdefault(OWNER_TOKEN, secrets.token_urlsafe(16))


def hide_paths(text: str) -> str:
    """``text`` with the server's folders removed, unless the visitor is an admin."""
    if is_admin():
        return str(text)
    for folder in sorted({str(runs.runs_root()), str(Path(tempfile.gettempdir())),
                          str(Path(__file__).resolve().parent)}, key=len, reverse=True):
        text = str(text).replace(folder + os.sep, "").replace(folder, "")
    return text


def server_settings():
    """The server's limits (``locmnist.settings``): env vars, secrets.toml, safe defaults."""
    from locmnist.settings import ServerSettings

    return ServerSettings.load()


UPLOAD_CACHE = "upload_predictions"  # session key: {(models, sha256): result}
CACHE_ENTRIES = 32


def _mtime(path) -> float:
    try:
        return Path(path).stat().st_mtime
    except (OSError, TypeError):
        return 0.0


def _cached(key_data: bytes, models: tuple, compute):
    """``compute()``, or its result for the same content and models earlier in this session.

    A rerun (every canvas stroke, every widget) finds its answers here instead of
    decoding, predicting and reading every input again. Per session, at most
    CACHE_ENTRIES entries. An InvalidImage is cached and raised again.
    """
    import hashlib

    from locmnist.preprocess import InvalidImage

    key = (tuple((str(m), _mtime(m)) for m in models), hashlib.sha256(key_data).hexdigest())
    cache = st.session_state.setdefault(UPLOAD_CACHE, {})
    if key not in cache:
        try:
            result = compute()
        except InvalidImage as e:
            result = e
        while len(cache) >= CACHE_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[key] = result
    if isinstance(cache[key], InvalidImage):
        raise cache[key]
    return cache[key]


def predict_upload(predictor, model_path, data: bytes, reader=None, detector_path=None):
    """(Prediction, Reading or None, small display image) for an uploaded image.

    The single-digit model and, given a ``reader``, the detector both read it; cached by
    content hash (``_cached``). Raises InvalidImage.
    """
    from locmnist.preprocess import open_image

    def compute():
        image = open_image(data)
        return (predictor.predict(image), reader.read(image) if reader else None,
                display_copy(image))

    return _cached(data, (model_path, detector_path), compute)


def predict_drawing(predictor, model_path, rgba: np.ndarray, reader=None, detector_path=None):
    """(Prediction, Reading or None) for the canvas drawing (H, W, 4) uint8, cached by
    content like uploads: changing another widget does not run the models again."""
    def compute():
        return predictor.predict(rgba), reader.read(rgba) if reader else None

    shape = np.asarray(rgba.shape, np.int64).tobytes()
    return _cached(shape + np.ascontiguousarray(rgba).tobytes(), (model_path, detector_path),
                   compute)


def display_copy(image, side: int = 560):
    """``image`` shrunk to fit ``side`` (aspect kept) before any compositing or framing."""
    from PIL import Image

    if max(image.size) > side:  # palettes cannot be averaged: nearest neighbour for them
        image = image.resize(_fit(image.size, side), Image.NEAREST if image.mode in ("1", "P")
                             else Image.BOX)
    return on_white(image)


def _fit(size, side: int) -> tuple[int, int]:
    w, h = size
    scale = side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


# --- pictures --------------------------------------------------------------------

def on_white(image):
    """A PIL RGB image for display: transparent drawings get white paper behind them."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, "white")
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB")


def framed(image, width: int | None = None):
    """``image`` (resized to ``width``) with a thin grey frame: white pictures need an edge."""
    from PIL import Image, ImageDraw

    img = image.convert("RGB")
    if width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.LANCZOS)
    ImageDraw.Draw(img).rectangle([0, 0, img.width - 1, img.height - 1], outline=(190, 190, 190))
    return img


def overlay(image, box_normalized, width: int = 280, true_box=None):
    """``image`` resized to ``width`` with the predicted box (red; a user's box green)."""
    from locmnist.boxes import draw_boxes

    return framed(draw_boxes(framed(on_white(image), width), predicted=box_normalized,
                             true=true_box))


def reading_overlay(image, reading, width: int = 280):
    """``image`` resized to ``width`` with every digit the detector read boxed and labelled."""
    from locmnist.boxes import draw_boxes

    img = framed(on_white(image), width)
    for digit in reading.digits:
        img = draw_boxes(img, predicted=digit.box_normalized, label=str(digit.label))
    return framed(img)


def model_view(prediction, scale: int = 4):
    """The 75x75 image the model saw, enlarged, with its box."""
    from locmnist.boxes import draw_boxes

    # Shown exactly as the model sees it: white ink on black, whatever the input was.
    return framed(draw_boxes(prediction.model_input, predicted=prediction.model_box, scale=scale))


# --- charts ----------------------------------------------------------------------

def probability_chart(probabilities, key: str, muted: bool = False):
    """Bars of the 10 digit probabilities; ``muted``: all grey (the answer was "not a digit")."""
    import plotly.graph_objects as go

    probs = np.asarray(probabilities, dtype=float)
    colors = ["#C8C8C8" if muted else "#EF553B" if i == int(probs.argmax()) and probs.max() > 0
              else "#8FA8C8" for i in range(10)]
    fig = go.Figure(go.Bar(x=list(range(10)), y=probs, marker_color=colors,
                           hovertemplate="digit %{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=30, b=10),
                      title="Probabilities (no digit chosen)" if muted else "Probabilities",
                      yaxis=dict(range=[0, 1], tickformat=".0%"),
                      xaxis=dict(title="digit", dtick=1))
    st.plotly_chart(fig, width="stretch", key=key)


def curves_figure(histories: dict[str, dict], metric: str, title: str):
    """Training (solid) and validation (dashed) curves of one metric for several runs."""
    import plotly.graph_objects as go

    fig = go.Figure()
    longest = 1
    for i, (name, h) in enumerate(histories.items()):
        color = PALETTE[i % len(PALETTE)]
        epochs = h.get("epoch") or list(range(1, len(h.get(metric, [])) + 1))
        longest = max(longest, len(epochs))
        for prefix, dash, part in (("", "solid", "train"), ("val_", "dash", "val")):
            ys = h.get(prefix + metric)
            if ys:
                fig.add_trace(go.Scatter(x=epochs[:len(ys)], y=ys, mode="lines+markers",
                                         name=f"{name} {part}" if len(histories) > 1 else part,
                                         line=dict(color=color, dash=dash)))
    fig.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis=dict(title="epoch", dtick=max(1, math.ceil(longest / 12))),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def curves_for(config: dict | None) -> tuple:
    """The curves worth plotting for a run with this saved config: a detector's or not."""
    from locmnist.detector_config import is_detector_config

    return DETECTOR_CURVES if is_detector_config(config) else CURVES


def curves_grid(histories: dict[str, dict], key: str, metrics=CURVES) -> None:
    """A 2-column grid of curve charts."""
    cols = st.columns(2)
    for i, (metric, title) in enumerate(metrics):
        with cols[i % 2]:
            st.plotly_chart(curves_figure(histories, metric, title), width="stretch",
                            key=f"{key}_{metric}")


def md_escape(text: str) -> str:
    """User text (a file name) made literal inside Streamlit markdown (st.error, st.info)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", str(text))


def fmt_seconds(s) -> str:
    if s is None:
        return "--"
    s = int(round(float(s)))
    return f"{s // 60}:{s % 60:02d}"


# --- corrections (locmnist.corrections) ---------------------------------------------

def model_id(path) -> str:
    """The model a correction was made against: its file name and a content hash."""
    import hashlib

    p = Path(path)
    try:
        return f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()[:12]}"
    except OSError:
        return p.name


MY_CORRECTIONS = "my_corrections"  # session key: ids of the corrections this session saved
WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)


def correction_control(prediction, image, model_path, key: str, source: str,
                       user_box=None) -> None:
    """'Wrong? It's a ...': store the image, the right digit and its box for fine-tuning.

    The box starts as the user's own dragged box, else the model's; it can be edited.
    ``image`` is what the user gave (a PIL image or an RGBA array).
    """
    from locmnist.corrections import CorrectionStore, CorrectionStoreError, to_png

    if prediction.label is None and not prediction.rejected:
        return  # a blank input: nothing to correct
    # "Not a digit" has no box: then the whole image (fine-tuning uses the ink inside it).
    box = tuple(user_box or prediction.box_normalized or WHOLE_IMAGE)
    # A new drawing is a new form: widget keys carry the box and what the model saw (two
    # "Not a digit" drawings share the whole-image box), so old inputs do not linger.
    seen = hashlib.blake2b(np.ascontiguousarray(prediction.model_input).tobytes(),
                           digest_size=6).hexdigest()
    key = f"{key}_{abs(hash(tuple(round(v, 3) for v in box))) % 10**8}_{seen}"
    with st.expander("Wrong? It's a …", expanded=False):
        with st.form(f"correct_{key}", border=False):
            label = st.selectbox("The right digit", list(range(10)), index=None,
                                 placeholder="Pick the digit", key=f"correct_{key}_label")
            st.caption("The digit's box, as fractions of the image's width and height "
                       "(the " + ("box you dragged" if user_box else "model's box"
                                  if prediction.box_normalized else "whole image") + ").")
            cols = st.columns(4)
            edited = [cols[i].number_input(name, 0.0, 1.0, float(round(v, 3)), step=0.01,
                                           format="%.3f", key=f"correct_{key}_{name}")
                      for i, (name, v) in enumerate(zip(("xmin", "ymin", "xmax", "ymax"), box))]
            saved = st.form_submit_button("Save the correction", key=f"correct_{key}_save")
        if not saved:
            return
        if label is None:
            st.warning("Pick the right digit first.")
            return
        try:
            store = CorrectionStore()
            rid = store.add(to_png(image), int(label), edited, model=model_id(model_path),
                            source=source)
            n = store.count()
        except (CorrectionStoreError, ValueError) as e:
            st.error(f"The correction was not saved: {e}")
            return
        st.session_state.setdefault(MY_CORRECTIONS, []).append(rid)
        st.success(f"Saved correction #{rid} (a {label}). {n} stored; fine-tune on them "
                   "on the Train page.")


def finetune_section() -> str | None:
    """'Fine-tune on corrections': start from the model in use; returns the id of the run
    it started (or of the run that blocked it), to watch like any training."""
    from locmnist.corrections import CorrectionStore, CorrectionStoreError, Unreadable, default_path

    st.subheader("Fine-tune on corrections")
    model = active_model()
    n, unreadable = 0, 0
    if default_path().exists():
        try:
            rows = CorrectionStore().read(with_images=False)
            n = sum(not isinstance(r, Unreadable) for r in rows)
            unreadable = len(rows) - n
        except CorrectionStoreError as e:
            st.error(f"The corrections database cannot be read: {e}")
            return None
    st.caption(f"{n} corrections stored" + (f" ({unreadable} unreadable, skipped)" if unreadable
                                           else "") +
               f". Fine-tuning starts from the model in use ({model.name}), mixes the "
               "corrections with replayed MNIST digits that it keeps reading as that model "
               "did, so it forgets little, and holds out 15% of them (at least one) to "
               "judge the result. A fixed amount of work: about one epoch of the reference "
               "recipe (README, Learning from corrections).")
    c1, c2 = st.columns(2)
    with c2:
        corrections_download(n)
    if not c1.button("Fine-tune on corrections", key="finetune_start", disabled=n < 2,
                     help=None if n >= 2 else "Needs at least 2 corrections (Predict page: "
                                              "'Wrong? It's a …')."):
        return None
    return launch(lambda: jobs.start_finetune(model, limits=server_settings(),
                                              owner=session_owner()), "fine-tuning run")


def corrections_download(n_readable: int) -> None:
    """The corrections as the zip ``train --extra`` and ``finetune --corrections`` read.

    Corrections are other people's handwriting: on a public server a visitor gets only
    the ones their own session saved; all of them need local mode or the admin token.
    The zip is built when the button is clicked (``corrections_zip``), not on every rerun.
    """
    if is_admin():
        ids, label = None, f"Download all {n_readable} corrections (zip)"
    else:
        ids = list(st.session_state.get(MY_CORRECTIONS, []))
        label = f"Download your {len(ids)} correction{'' if len(ids) == 1 else 's'} (zip)"
    st.download_button(label, lambda: corrections_zip(ids), "corrections.zip",
                       mime="application/zip", key="corrections_download",
                       disabled=(n_readable if ids is None else len(ids)) == 0,
                       on_click="ignore",
                       help="images/*.png and labels.csv: `python -m locmnist train --extra "
                            "corrections.zip` or `finetune --corrections corrections.zip`.")
    if ids is not None:
        st.caption("On this public server you can download the corrections you saved in "
                   "this session; all of them only with the admin token.")


def corrections_zip(ids=None) -> bytes:
    """``CorrectionStore.export_zip`` of ``ids`` (None: all), as bytes for a download."""
    from locmnist.corrections import CorrectionStore

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corrections.zip"
        CorrectionStore().export_zip(path, ids=ids)
        return path.read_bytes()


def launch(start, what: str) -> str | None:
    """Run ``start()`` (a ``jobs.start_*`` call) and say what happened: the new run's id, the
    running one's when another is in progress, or None after a clear error."""
    try:
        run_id = start()
    except jobs.TrainingBusy as e:
        st.warning("A training run is already in progress; one runs at a time on this "
                   "server. You can watch it below.")
        return e.run_id
    except ValueError as e:
        st.error(f"Cannot start: {e}")
        return None
    st.success(f"Started {what} {run_id}.")
    return run_id


def finetune_results(metrics: dict | None) -> None:
    """Before and after a fine-tuning run, on its held-out corrections and the test split."""
    from locmnist.finetune import summary_rows

    ft = (metrics or {}).get("finetune")
    if not ft:
        return
    st.markdown(f"Fine-tuned on **{ft['trained_on']}** corrections; "
                f"**{ft['held_out']}** held out to judge it.")
    table = "| accuracy on | before | after |\n|---|---|---|\n" + "\n".join(
        f"| {what} | {before} | **{after}** |" for what, before, after in summary_rows(metrics))
    st.markdown(table)
    if ft.get("problems"):
        with st.expander(f"{len(ft['problems'])} corrections could not be used"):
            st.text("\n".join(ft["problems"]))
