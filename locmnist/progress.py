"""The terminal progress bar of ``train`` and ``finetune``: a ``progress`` hook for
``locmnist.training.train``, which itself never prints."""
from __future__ import annotations

import sys


class ProgressBar:
    """Prints each epoch's summary line; on a terminal, redraws one line per step too."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self._last_line = 0.0

    def __call__(self, p) -> None:
        width = 28
        filled = int(p.fraction * width)
        eta = "" if p.eta_s is None else f" eta {p.eta_s:4.0f}s"
        acc = p.logs.get("classification_accuracy")
        iou = p.logs.get("bounding_box_iou")
        stats = "" if acc is None else f" acc {acc:.3f} iou {iou:.3f}"
        if acc is None and "loss" in p.logs:  # the detector: its loss terms
            stats = f" loss {p.logs['loss']:.3f}"
        line = (f"epoch {p.epoch}/{p.epochs} [{'#' * filled}{'.' * (width - filled)}] "
                f"{p.step}/{p.steps} {p.elapsed_s:5.0f}s{eta}{stats}")
        if p.history is not None:
            h = p.history
            val = ""
            if "val_map50" in h:
                val = f" | val mAP@0.5 {h['val_map50'][-1]:.4f} mAP {h['val_map'][-1]:.4f}"
            if "val_classification_accuracy" in h:
                val = (f" | val acc {h['val_classification_accuracy'][-1]:.4f}"
                       f" val iou {h['val_bounding_box_iou'][-1]:.3f}")
            print(("\r" if self.tty else "") + line + val, file=self.stream, flush=True)
        elif self.tty:
            print("\r" + line, end="", file=self.stream, flush=True)
