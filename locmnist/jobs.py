"""Training jobs for the app: one detached ``python -m locmnist train`` (or ``finetune``)
at a time.

A Streamlit rerun, page change, refresh or closed tab must not stop a training,
so it runs in its own process group (``start_new_session``) with its output in
``<run>/train.log``. One training per server (per runs root): the trainer holds an
``flock`` on ``<root>/.training.lock``, taken by the server and inherited by the
trainer's process, so it is released exactly when the trainer (and its ``timeout``
wrapper) are gone: no stale locks, no reused pids. The trainer writes ``status.json`` and ``history.json`` itself
(see ``locmnist.training``); this module only locks, launches and cancels. Where
runs live, their file names and how to read one: ``locmnist.runs``.

``$LOCMNIST_TRAIN_OVERRIDES`` is a JSON object of Config fields (and ``preset``)
applied on top of what the Train page's form asks for -- how tests and screenshots
get tiny runs.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from locmnist import runs
from locmnist.config import PRESETS, Config, field_argv, field_overrides, settable_fields
from locmnist.files import atomic_write_json
from locmnist.run_files import Job, Status, read
from locmnist.runs import pid_alive, start_ticks

class TrainingBusy(RuntimeError):
    """Another training holds the lock; ``run_id`` says which, to watch it."""

    def __init__(self, run_id: str | None):
        super().__init__(f"a training run is already in progress ({run_id or 'starting'})")
        self.run_id = run_id


def env_overrides() -> dict:
    """``$LOCMNIST_TRAIN_OVERRIDES`` as {field: value}, plus ``preset`` if it names one.

    Fields of either config (the localizer's Config, the detector's DetectorConfig);
    a run uses those its preset's config has. Bad JSON, an unknown field or a value
    of the wrong type is a ValueError.
    """
    from locmnist.detector_config import DETECTOR_PRESETS, DetectorConfig

    raw = os.environ.get("LOCMNIST_TRAIN_OVERRIDES", "").strip()
    if not raw:
        return {}
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"LOCMNIST_TRAIN_OVERRIDES is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError("LOCMNIST_TRAIN_OVERRIDES must be a JSON object of Config fields")
    name = d.pop("preset", None)
    if name is not None and name not in PRESETS + DETECTOR_PRESETS:
        raise ValueError(f"LOCMNIST_TRAIN_OVERRIDES: preset must be one of "
                         f"{PRESETS + DETECTOR_PRESETS}")
    localizer = {f.name for f in settable_fields(Config)}
    try:
        fields = {**field_overrides({k: v for k, v in d.items() if k not in localizer},
                                    DetectorConfig),
                  **field_overrides({k: v for k, v in d.items() if k in localizer}, Config)}
    except ValueError as e:
        raise ValueError(f"LOCMNIST_TRAIN_OVERRIDES: {e}") from None
    return {**fields, "preset": name} if name else fields


def config_class(preset: str):
    """The config dataclass of a preset: DetectorConfig for ``detect``, ``detect-quick``."""
    from locmnist.detector_config import DETECTOR_PRESETS, DetectorConfig

    return DetectorConfig if preset in DETECTOR_PRESETS else Config


def make_config(preset: str, **fields):
    """The config a run of ``preset`` uses (either kind). Raises ValueError."""
    from locmnist.config import preset as localizer_preset
    from locmnist.detector_config import detector_preset

    make = detector_preset if config_class(preset) is not Config else localizer_preset
    return make(preset, **fields)


def config_fields(preset: str) -> set[str]:
    """The names of the settable fields of ``preset``'s config dataclass."""
    return {f.name for f in settable_fields(config_class(preset))}


# --- processes -------------------------------------------------------------------

def _signal_group(pid: int, sig: int) -> None:
    """Signal the trainer's whole process group (it leads one: ``start_new_session``).

    With a wall-clock cap the pid is coreutils ``timeout`` and the trainer its child;
    the group reaches both. Raises ProcessLookupError when it is gone.
    """
    if os.getpgid(pid) == pid:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)


def _kill_after(pid: int, ticks: int | None, grace_s: float, run_dir: Path) -> None:
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid, ticks):
            return
        time.sleep(0.2)
    try:
        _signal_group(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    status = read(run_dir / runs.STATUS, lambda raw: (Status.parse(raw), raw)[1], {})
    if status.get("state") in runs.LIVE_STATES or not status:
        # Killed mid-write is impossible (atomic files), so the best model so far stands.
        atomic_write_json(run_dir / runs.STATUS, {
            **status, "state": "cancelled", "updated": time.time(),
            "has_model": (run_dir / runs.MODEL).exists(),
            "error": f"did not stop within {grace_s:.0f} s of SIGTERM; killed"})


# --- the lock ----------------------------------------------------------------------

def _lock_path(root: Path) -> Path:
    return root / runs.LOCK


def active_run_id(root: Path | None = None) -> str | None:
    """The run holding the lock ("starting" while its id is being written), or None."""
    lock = _lock_path(root or runs.runs_root())
    if not runs.flock_held(lock):
        return None
    try:
        held = json.loads(lock.read_text())
    except (OSError, ValueError):
        return "starting"
    run_id = held.get("run_id") if isinstance(held, dict) else None
    return run_id if isinstance(run_id, str) else "starting"


def _take_lock(root: Path, run_id: str) -> int:
    """An fd holding the server-wide lock, its content naming ``run_id``; else TrainingBusy.

    Retried briefly: a reader's shared probe (``runs.flock_held``) can hold it for microseconds.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(root), os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(20):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 19:
                os.close(fd)
                raise TrainingBusy(active_run_id(root)) from None
            time.sleep(0.02)
    # Written in place: replacing the file (atomic rename) would replace the locked inode.
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"run_id": run_id, "server_pid": os.getpid()}).encode(), 0)
    return fd


# --- launching and cancelling -------------------------------------------------------

def start_training(preset: str = "quick", root: Path | None = None, *, limits=None,
                   owner: str | None = None, **fields) -> str:
    """Launch a detached training; return its run id. Raises TrainingBusy or ValueError.

    ``fields`` are settable fields of the preset's config (``config_class``: Config, or
    DetectorConfig for the detector's presets), each one a ``train`` flag; they are checked
    here, in-process, so a bad form value is an error on the page, not a dead run.
    ``limits`` (a ``locmnist.settings.ServerSettings``) bounds the epochs and digits
    asked for (not ``$LOCMNIST_TRAIN_OVERRIDES``: the admin's) and caps the run's
    wall-clock time: the trainer stops itself at 3/4 of the cap and its process
    group is killed at the cap, even if this server is gone by then.
    ``owner`` is a secret of the starting session; only it may cancel (``may_cancel``).
    """
    root = root or runs.runs_root()
    # ValueError: an unknown field or a bad value
    fields = field_overrides(fields, config_class(preset))
    if limits is not None:  # what the visitor asked for; the admin's overrides are trusted
        asked = make_config(preset, **fields)
        limits.check_training(asked.epochs, asked.train_digits)
    overrides = env_overrides()
    preset = overrides.pop("preset", preset)
    cls = config_class(preset)
    # One override list serves both model kinds: a field this preset's config lacks
    # (a localizer's dense_units for a detector) does not apply to it.
    fields = {**fields, **{k: v for k, v in overrides.items() if k in config_fields(preset)}}
    cfg = make_config(preset, **fields)  # raises ValueError with a clear message
    cap = limits.run_seconds if limits is not None else None
    if cap:
        fields["time_limit_s"] = min(cfg.time_limit_s or cap, 0.75 * cap)

    # `train` has one flag per field; a field both configs have keeps Config's flag.
    shared = config_fields("quick")
    argv = ["train", "--preset", preset,
            *field_argv({k: v for k, v in fields.items() if k in shared}, Config),
            *field_argv({k: v for k, v in fields.items() if k not in shared}, cls)]
    _prune(root, limits)
    return _launch(root, runs.new_run_id(preset), argv, cap=cap, owner=owner, fields=fields,
                   preset=preset)


def _prune(root: Path, limits) -> None:
    """A public server keeps its last N runs (``locmnist.settings``), pruned at each start."""
    if limits is not None and not limits.local:
        runs.prune_runs(root, keep=limits.keep_runs, max_age_s=limits.max_run_age_days * 86400)


def finetune_overrides() -> dict:
    """``$LOCMNIST_FINETUNE_OVERRIDES``: FinetuneSettings fields for the app's fine-tuning
    (how tests get tiny runs); bad JSON or an unknown field is an error."""
    from locmnist.finetune import FinetuneSettings

    raw = os.environ.get("LOCMNIST_FINETUNE_OVERRIDES", "").strip()
    try:
        d = json.loads(raw) if raw else {}
    except ValueError as e:
        raise ValueError(f"LOCMNIST_FINETUNE_OVERRIDES is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise ValueError("LOCMNIST_FINETUNE_OVERRIDES must be a JSON object of settings")
    try:
        d = field_overrides(d, FinetuneSettings)
    except ValueError as e:
        raise ValueError(f"LOCMNIST_FINETUNE_OVERRIDES: {e}") from None
    FinetuneSettings(**d)  # raises ValueError with a clear message
    return d


def start_finetune(model_path: str | os.PathLike, corrections: str | os.PathLike | None = None,
                   root: Path | None = None, *, limits=None, owner: str | None = None) -> str:
    """Launch ``python -m locmnist finetune`` as a run like any training (same lock,
    log, status, cancel, wall-clock cap and owner); return its run id. Raises
    TrainingBusy or ValueError."""
    from locmnist.corrections import default_path
    from locmnist.finetune import FinetuneSettings

    root = root or runs.runs_root()
    corrections = Path(corrections or default_path())
    if not corrections.exists():
        raise ValueError("there are no corrections yet: correct some answers on the Predict page")
    settings = finetune_overrides()
    argv = ["finetune", "--from", str(model_path), "--corrections", str(corrections)]
    argv += field_argv(settings, FinetuneSettings)
    _prune(root, limits)
    return _launch(root, runs.new_run_id("finetune"), argv,
                   cap=limits.run_seconds if limits is not None else None, owner=owner,
                   fields=settings, preset="finetune")


def _launch(root: Path, run_id: str, argv: list[str], cap: float | None = None,
            owner: str | None = None, **record) -> str:
    """Take the lock and start ``python -m locmnist ARGV --out RUN --no-progress`` detached,
    killed at ``cap`` seconds if set."""
    run_dir = root / run_id
    lock_fd = _take_lock(root, run_id)
    proc = None
    try:
        run_dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "locmnist", *argv, "--out", str(run_dir), "--no-progress"]
        if cap:  # coreutils timeout: SIGTERM shortly before the cap, SIGKILL at the cap
            grace = min(15.0, cap / 4)
            argv = ["timeout", f"--kill-after={grace:g}s", f"{cap - grace:g}s", *argv]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        with open(run_dir / runs.LOG, "ab") as log:
            # The lock's fd goes to the trainer: it holds the lock until it exits.
            proc = subprocess.Popen(argv, cwd=runs.REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    pass_fds=(lock_fd,))
        job = {"run_id": run_id, "pid": proc.pid, "start_ticks": start_ticks(proc.pid),
               "argv": argv[1:], **record, "started": time.time(),
               "cap_s": cap, "owner": _owner_hash(owner)}
        atomic_write_json(run_dir / runs.JOB, job)
    except BaseException:
        if proc is not None:  # no job.json (a full disk?): nobody could watch or cancel it
            try:
                _signal_group(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        raise
    finally:
        os.close(lock_fd)  # the trainer's inherited copy keeps the lock
    return run_id


def _owner_hash(owner: str | None) -> str | None:
    import hashlib

    return hashlib.sha256(owner.encode()).hexdigest() if owner else None


def may_cancel(run_dir: Path, owner: str | None, admin: bool = False) -> bool:
    """Whether the session holding ``owner`` (or an admin) may cancel this run.

    A run started without an owner (the CLI) is the admin's to cancel.
    """
    import hmac

    if admin:
        return True
    job = read(Path(run_dir) / runs.JOB, Job.parse)
    want = job.owner if job else None
    return want is not None and hmac.compare_digest(want, _owner_hash(owner) or "")


def cancel(run_dir: Path, grace_s: float = 20.0) -> None:
    """Ask the trainer to stop (CANCEL file + SIGTERM); SIGKILL it after ``grace_s``."""
    run_dir = Path(run_dir)
    (run_dir / runs.CANCEL).touch()
    job = read(run_dir / runs.JOB, Job.parse)
    status = read(run_dir / runs.STATUS, Status.parse)
    if job is not None:
        pid, ticks = job.pid, job.start_ticks
    elif status is not None and status.start_ticks is not None:  # a CLI run
        pid, ticks = status.pid, status.start_ticks
    else:
        return  # the CANCEL file is all we can do
    if not pid_alive(pid, ticks):
        return
    try:
        _signal_group(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    threading.Thread(target=_kill_after, args=(pid, ticks, grace_s, run_dir),
                     name=f"kill-after-{pid}", daemon=True).start()
