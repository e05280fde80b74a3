"""History: training curves of the shipped model and of every run, overlaid to compare."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import ui
from locmnist import runs
from locmnist.run_files import parse_history, read


@dataclass
class Source:
    history: dict
    model: Path | None
    name: str          # for download file names (our own run ids, never user text)


def sources() -> dict[str, Source]:
    """{label: Source} for the shipped default (if its history exists) and every run."""
    found = {}
    default = runs.default_model_path()
    shipped = read(runs.sidecar(default, "history"), parse_history)
    if shipped:
        found["Shipped default"] = Source(shipped, default if default.exists() else None,
                                          "default")
    for run in runs.list_runs():
        history = read(run.dir / runs.HISTORY, parse_history)
        if history:
            found[f"{run.id} ({run.state})"] = Source(
                history, run.model_path if run.has_model else None, run.id)
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
    chosen = st.multiselect("Runs", list(found), default=list(found)[:1], key="history_runs")
    if not chosen:
        st.info("Choose at least one run.")
        return
    ui.curves_grid({label: found[label].history for label in chosen}, key="history")
    st.subheader("Downloads")
    for label in chosen:
        downloads(label, found[label])


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
