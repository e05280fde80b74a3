"""History: training curves of the shipped models and of every run, overlaid to compare.

Single-digit models and detectors log different things (a detector: its loss terms and
validation mAP), so each kind gets its own grid of curves.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import ui
from locmnist import runs
from locmnist.run_files import parse_config, parse_history, read


@dataclass
class Source:
    history: dict
    model: Path | None
    name: str          # for download file names (our own run ids, never user text)
    config: dict | None = None  # the saved config: says whether it is a detector
    shipped: bool = False       # models/..., not a run


def sources() -> dict[str, Source]:
    """{label: Source} for the shipped models (if their history exists) and every run."""
    found = {}
    for label, model, name in (("Shipped default", runs.default_model_path(), "default"),
                               ("Shipped detector", runs.default_detector_path(), "detector")):
        shipped = read(runs.sidecar(model, "history"), parse_history)
        if shipped:
            found[label] = Source(shipped, model if model.exists() else None, name,
                                  read(runs.sidecar(model, "config"), parse_config), True)
    for run in runs.list_runs():
        history = read(run.dir / runs.HISTORY, parse_history)
        if history:
            found[f"{run.id} ({run.state})"] = Source(
                history, run.model_path if run.has_model else None, run.id, run.config)
    return found


def render() -> None:
    st.title("History")
    st.caption("Training (solid) and validation (dashed) curves per epoch. "
               "Pick several runs to compare them.")
    found = sources()
    unreadable = [f"{run.id}: {run.error}" for run in runs.list_runs()
                  if run.state == runs.UNREADABLE]
    if unreadable:
        st.warning("Some runs cannot be shown:\n\n" + "\n\n".join(
            ui.md_escape(line) for line in unreadable[:20]))
    if not found:
        st.info("No training history yet: train a model on the **Train** page.")
        return
    chosen = st.multiselect("Runs", list(found), default=default_choice(found),
                            key="history_runs")
    if not chosen:
        st.info("Choose at least one run.")
        return
    # One grid per kind of model: a detector's curves are not a single-digit model's.
    kinds = {}
    for label in chosen:
        kinds.setdefault(ui.curves_for(found[label].config), []).append(label)
    for curves, labels in kinds.items():
        if len(kinds) > 1:
            st.subheader("Detectors" if curves == ui.DETECTOR_CURVES else "Single-digit models")
        ui.curves_grid({label: found[label].history for label in labels},
                       key=f"history_{curves[0][0]}", metrics=curves)
    st.subheader("Downloads")
    for label in chosen:
        downloads(label, found[label])


def default_choice(found: dict[str, Source]) -> list[str]:
    """The shipped default and the newest run: what a person who just trained compares."""
    first = list(found)[:1]
    newest_run = next((label for label, source in found.items() if not source.shipped), None)
    return first + ([newest_run] if newest_run and newest_run not in first else [])


def downloads(label: str, source: Source) -> None:
    st.text(label)
    c1, c2, c3 = st.columns(3)
    c1.download_button("History (CSV)", to_csv(source.history), f"{source.name}-history.csv",
                       "text/csv", key=f"history_csv_{source.name}")
    c2.download_button("History (JSON)", json.dumps(source.history, indent=2),
                       f"{source.name}-history.json", "application/json",
                       key=f"history_json_{source.name}")
    if source.model is not None and source.model.exists():
        c3.download_button("Model (.keras)", source.model.read_bytes(), f"{source.name}.keras",
                           "application/octet-stream", key=f"history_model_{source.name}")


def to_csv(history: dict) -> str:
    """One row per epoch, one column per logged metric."""
    keys = list(history)
    rows = max((len(v) for v in history.values()), default=0)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(keys)
    for i in range(rows):
        w.writerow([history[k][i] if i < len(history[k]) else "" for k in keys])
    return out.getvalue()
