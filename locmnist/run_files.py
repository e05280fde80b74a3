"""The JSON files of a run directory, validated: a malformed file is ``Unreadable``, never a crash.

A run directory is written by our trainer, but anything on disk may be damaged,
hand-edited or half-restored, and one bad file must not break every page that
lists runs. Each file has a small schema here; ``load`` returns the parsed,
type-checked value, ``None`` when the file does not exist, or raises
``Unreadable`` with a short reason for display ("status.json: pid is '12', not
an integer").
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 8 * 2**20     # our largest, a long history, is a few hundred kB
STATES = ("starting", "running", "evaluating", "completed", "cancelled", "failed")


class Unreadable(ValueError):
    """A run file that exists but cannot be used; the message says which and why."""


def load_json(path: Path):
    """The parsed JSON of ``path``, or None when it does not exist; Unreadable otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Unreadable(f"{path.name}: {e.strerror or type(e).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise Unreadable(f"{path.name}: larger than {MAX_FILE_BYTES // 2**20} MB")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Unreadable(f"{path.name}: not valid JSON") from None


def _typed(name: str, value, kinds: tuple, file: str):
    """``value`` if it is one of ``kinds`` (bool is not a number, numbers are finite)."""
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise Unreadable(f"{file}: {name} is {str(json.dumps(value))[:30]}, "
                         f"not {' or '.join(k.__name__ for k in kinds)}")
    return value


def _parse(cls, raw, file: str):
    """An instance of dataclass ``cls`` from a JSON object; unknown keys are ignored."""
    if not isinstance(raw, dict):
        raise Unreadable(f"{file}: a {type(raw).__name__}, not an object")
    values = {}
    for f in dataclasses.fields(cls):
        if raw.get(f.name) is not None:
            values[f.name] = _typed(f.name, raw[f.name], f.metadata["kinds"], file)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.name not in values]
    if missing:
        raise Unreadable(f"{file}: no {', '.join(missing)}")
    return cls(**values)


def _f(kinds, default=None):
    return dataclasses.field(default=default, metadata={"kinds": kinds})


INT, NUM, STR = (int,), (int, float), (str,)


@dataclass(frozen=True)
class Status:
    """``status.json``, written by the trainer (``locmnist.training``)."""
    state: str = _f(STR, dataclasses.MISSING)
    pid: int | None = _f(INT)
    start_ticks: int | None = _f(INT)    # the trainer's start time: a reused pid is not it
    epoch: int = _f(INT, 1)
    epochs: int = _f(INT, 1)
    step: int = _f(INT, 0)
    steps: int = _f(INT, 1)
    elapsed_s: float | None = _f(NUM)
    eta_s: float | None = _f(NUM)
    error: str | None = _f(STR)
    has_model: bool | None = _f((bool,))
    updated: float | None = _f(NUM)

    @classmethod
    def parse(cls, raw) -> "Status":
        status = _parse(cls, raw, "status.json")
        if status.state not in STATES:
            raise Unreadable(f"status.json: unknown state {status.state[:30]!r}")
        return status


@dataclass(frozen=True)
class Job:
    """``job.json``, written by the app when it launches a trainer (``locmnist.jobs``)."""
    pid: int = _f(INT, dataclasses.MISSING)
    start_ticks: int | None = _f(INT)
    run_id: str | None = _f(STR)
    preset: str | None = _f(STR)
    started: float | None = _f(NUM)
    cap_s: float | None = _f(NUM)        # the wall-clock cap of a browser run
    owner: str | None = _f(STR)          # hash of the starting session's secret

    @classmethod
    def parse(cls, raw) -> "Job":
        job = _parse(cls, raw, "job.json")
        if job.pid <= 0:
            raise Unreadable(f"job.json: pid is {job.pid}")
        return job


def parse_history(raw, file: str = "history.json") -> dict[str, list[float]]:
    """``history.json``: {metric: [one number per epoch]}."""
    if not isinstance(raw, dict):
        raise Unreadable(f"{file}: a {type(raw).__name__}, not an object")
    for key, values in raw.items():
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise Unreadable(f"{file}: {str(key)[:30]} is not a list of numbers")
    return raw


def parse_metrics(raw, file: str = "metrics.json") -> dict:
    """``metrics.json``: the test-split scores the pages show must be numbers."""
    if not isinstance(raw, dict):
        raise Unreadable(f"{file}: a {type(raw).__name__}, not an object")
    # A detector's (locmnist.detection_eval) or a single-digit model's.
    keys = ("map50", "map") if "map50" in raw else ("accuracy", "iou_mean", "iou_ge_0.5")
    for key in keys:
        _typed(key, raw.get(key), NUM, file)
    return raw


def parse_config(raw, file: str = "config.json") -> dict:
    if not isinstance(raw, dict):
        raise Unreadable(f"{file}: a {type(raw).__name__}, not an object")
    return raw


def read(path: Path, parse, default=None):
    """``parse(load_json(path))``, or ``default`` when missing or unreadable (for display code)."""
    try:
        raw = load_json(Path(path))
        return default if raw is None else parse(raw)
    except Unreadable:
        return default
