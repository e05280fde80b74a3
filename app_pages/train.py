"""Train: start a training run in a separate process and watch it live.

The run lives in its own process (see ``locmnist.jobs``): this page only starts,
polls and cancels it, so reruns, page changes and closed tabs do not touch it.
"""
from __future__ import annotations

import streamlit as st

import ui
from locmnist import jobs, runs
from locmnist.run_files import parse_history, parse_metrics, read

WATCHED_RUN = "train_run"  # session key: the run this tab started or watches
POLL_SECONDS = 1.0


def render() -> None:
    st.title("Train")
    st.caption("Train a model from scratch on synthesized canvases. Training runs in its own "
               "process: you can change page or close the tab; come back to watch it.")
    active = jobs.active_run_id()
    if active and active != st.session_state.get(WATCHED_RUN):
        st.info(f"A training run is in progress ({active}); it is shown below.")
    started = training_form() or ui.finetune_section()
    watched = started or active or st.session_state.get(WATCHED_RUN)
    # A refresh starts a new session: show the server's last run rather than nothing.
    latest_only = not watched
    watched = watched or runs.latest_run_id()
    if watched and watched != "starting":
        st.session_state[WATCHED_RUN] = watched
        st.divider()
        if latest_only:
            st.caption("The latest run on this server; the History page has every run.")
        run_dir = runs.runs_root() / watched
        if runs.run_info(run_dir).live:
            live_panel(run_dir)
        else:
            final_panel(run_dir)


PRESET_HELP = {
    "quick": "a small single-digit net for about a minute on a laptop CPU",
    "default": "the shipped single-digit model's recipe (about 15 minutes on 2 CPU cores)",
    "seed": "the reference notebook's CNN and data",
    "detect-quick": "a small multi-digit detector that reads whole numbers, in a few minutes",
    "detect": "the shipped detector's recipe (reads whole numbers; the longest run)",
}


def training_form() -> str | None:
    """The form; returns the id of a run it started, or of the run that blocked it.

    Its fields, bounds and help come from the preset's config dataclass: the
    localizer's Config, or the detector's DetectorConfig.
    """
    from locmnist.config import CANVAS_SIZE, PRESETS, field_help
    from locmnist.detector_config import DETECTOR_PRESETS

    names = (*PRESETS, *DETECTOR_PRESETS)
    name = st.selectbox("Preset", names, index=names.index("quick"), key="train_preset",
                        help="; ".join(f"{n}: {PRESET_HELP[n]}" for n in names if n in
                                       PRESET_HELP) + ".")
    cls = jobs.config_class(name)

    def help_for(*fields):  # the fields' own help text, as the CLI's --help shows it
        return "; ".join(f"{n}: {field_help(cls, n)}" for n in fields)
    overrides = jobs.env_overrides()
    limits = ui.server_settings()
    # The form starts from what a run will use: the preset, then any server overrides
    # that its kind of config has.
    fields = jobs.config_fields(name)
    base = jobs.make_config(name, **{k: v for k, v in overrides.items() if k in fields})
    detector = name in DETECTOR_PRESETS
    canvas = ((base.canvas_width, base.canvas_height) if detector
              else (CANVAS_SIZE, CANVAS_SIZE))
    max_epochs, max_digits = (200, 60_000) if limits.local else (limits.max_epochs,
                                                                 limits.max_train_digits)
    with st.form("train_form"):
        c1, c2 = st.columns(2)
        epochs = c1.number_input("Epochs", 1, max_epochs, min(base.epochs, max_epochs),
                                 key=f"train_epochs_{name}", help=help_for("epochs"))
        digits = c2.number_input(
            "Training digits" + (" (0 = all 55,000)" if limits.local else ""),
            0 if limits.local else 1, max_digits,
            min(base.train_digits or max_digits, max_digits), step=1000,
            key=f"train_digits_{name}", help=help_for("train_digits"))
        heights = st.slider(f"Digit height on the {canvas[0]}×{canvas[1]} training canvas (px)",
                            4, canvas[1] - 2 if not detector else canvas[1] - 4,
                            (int(base.min_height), int(base.max_height)),
                            key=f"train_heights_{name}",
                            help=help_for("min_height", "max_height"))
        limit = f"; it stops after {base.time_limit_s:.0f} s" if base.time_limit_s else ""
        if detector:
            st.caption(f"{base.canvases_per_epoch:,} fresh canvases per epoch, up to "
                       f"{base.max_digits} digits each, {base.negative_fraction:.0%} with no "
                       f"digit; batch {base.batch_size}, learning rate {base.learning_rate:g}, "
                       f"conv widths {list(base.widths)}, head width {base.head_width}{limit}. "
                       "Each epoch ends with validation mAP (COCOeval).")
        else:
            look = (f", a closer look at a {base.crop_size}×{base.crop_size} crop "
                    f"(widths {list(base.crop_widths)})" if base.crop_size
                    and base.arch == "default" else "")
            st.caption(f"Batch {base.batch_size}, learning rate {base.learning_rate:g}, "
                       f"conv widths {list(base.widths)}{look}{limit}.")
        if not limits.local:
            st.caption(f"On this server a run stops after {ui.fmt_seconds(limits.run_seconds)} "
                       f"(minutes:seconds) and uses at most {max_epochs} epochs and "
                       f"{max_digits:,} digits.")
        if overrides and ui.is_admin():
            st.caption(f"Server overrides from LOCMNIST_TRAIN_OVERRIDES: {overrides}")
        submitted = st.form_submit_button("Start training", type="primary")
    if not submitted:
        return None
    return ui.launch(lambda: jobs.start_training(
        name, epochs=int(epochs), train_digits=int(digits), min_height=float(heights[0]),
        max_height=float(heights[1]), limits=limits, owner=ui.session_owner()), "run")


def live_panel(run_dir) -> None:
    st.subheader(f"Run {run_dir.name}")
    live_progress(run_dir)
    live_curves(run_dir)


@st.fragment(run_every=POLL_SECONDS)
def live_progress(run_dir) -> None:
    info = runs.run_info(run_dir)
    if not info.live:
        st.rerun()  # the whole page, which now shows the final panel
    s = info.status
    if info.state == "starting":
        st.progress(0.0, text="Starting: loading TensorFlow and MNIST...")
    elif info.state == "evaluating":
        st.progress(1.0, text="Training done; evaluating on the test split...")
    else:
        epochs, steps = max(1, s.get("epochs", 1)), max(1, s.get("steps", 1))
        done = (s.get("epoch", 1) - 1) * steps + s.get("step", 0)
        st.progress(min(1.0, done / (epochs * steps)),
                    text=f"Epoch {s.get('epoch')}/{epochs} · step {s.get('step')}/{steps} · "
                         f"elapsed {ui.fmt_seconds(s.get('elapsed_s'))} · "
                         f"ETA {ui.fmt_seconds(s.get('eta_s'))}")
    if (run_dir / runs.CANCEL).exists():
        st.caption("Cancel requested: stopping after the current batch...")
    elif not jobs.may_cancel(run_dir, ui.session_owner(), admin=ui.is_admin()):
        st.caption("Another visitor started this run; only they can cancel it.")
    elif st.button("Cancel", key="train_cancel"):
        jobs.cancel(run_dir)
        st.caption("Cancel requested: stopping after the current batch...")


@st.fragment(run_every=2 * POLL_SECONDS)  # curves change once an epoch: poll them less
def live_curves(run_dir) -> None:
    history = read(run_dir / runs.HISTORY, parse_history, {})
    if history:
        ui.curves_grid({run_dir.name: history}, key="train_live",
                       metrics=ui.curves_for(runs.run_info(run_dir).config))
    else:
        st.caption("The curves appear after the first epoch.")


def final_panel(run_dir) -> None:
    info = runs.run_info(run_dir)
    st.subheader(f"Run {info.id}: {info.state}")
    if info.state == "completed":
        st.success("Training completed.")
        metrics = read(run_dir / runs.METRICS, parse_metrics)
        show_metrics(metrics)
        ui.finetune_results(metrics)
    elif info.state == "cancelled":
        st.warning("Training was cancelled"
                   + (f" ({ui.md_escape(ui.hide_paths(info.error))})" if info.error else "")
                   + (". The best model so far was kept." if info.has_model else "."))
    elif info.state == runs.UNREADABLE:
        st.error(ui.md_escape(f"This run cannot be shown: {info.error}"))
    else:
        st.error(ui.md_escape(f"Training failed: {ui.hide_paths(info.error)}"))
        if ui.is_admin():
            with st.expander("Log"):
                st.code(runs.log_tail(run_dir, 40) or "(empty)", language=None)
    detector = ui.is_detector_run(info)
    if info.has_model:
        if st.button("Use this model", key="train_use_model", type="primary"):
            (ui.use_detector if detector else ui.use_model)(info.model_path)
        if str(ui.active_detector() if detector else ui.active_model()) == str(info.model_path):
            st.success("The Predict and Evaluate pages now use this "
                       + ("detector." if detector else "model."))
    history = read(run_dir / runs.HISTORY, parse_history, {})
    if history:
        ui.curves_grid({info.id: history}, key="train_final", metrics=ui.curves_for(info.config))


def show_metrics(metrics: dict | None) -> None:
    if not metrics:
        return
    cols = st.columns(4)
    if "map50" in metrics:  # a detector's, from locmnist.detection_eval
        number = metrics.get("number_accuracy")
        cols[0].metric("Test mAP@0.5", f"{metrics['map50']:.3f}")
        cols[1].metric("mAP@0.5:0.95", f"{metrics['map']:.3f}")
        cols[2].metric("Number accuracy", "—" if number is None else f"{number:.1%}")
        cols[3].metric("Training time", ui.fmt_seconds(metrics.get("train_seconds")))
        return
    cols[0].metric("Test accuracy", f"{metrics['accuracy']:.2%}")
    cols[1].metric("Mean IoU", f"{metrics['iou_mean']:.3f}")
    cols[2].metric("IoU ≥ 0.5", f"{metrics['iou_ge_0.5']:.1%}")
    cols[3].metric("Training time", ui.fmt_seconds(metrics.get("train_seconds")))
