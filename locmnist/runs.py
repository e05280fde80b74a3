"""Where runs and models live and what their files are called: the one owner of the layout.

A run directory (one training) holds, each written atomically by ``locmnist.training``:

* ``config.json``   the full Config, written first;
* ``status.json``   state (starting / running / evaluating / completed / cancelled / failed),
                    pid, epoch, step, ETA;
* ``history.json``  per-epoch training and validation metrics plus ``elapsed_s``;
* ``model.keras``   the best model so far (lowest validation loss);
* ``metrics.json``  the final evaluation on the published test split;
* ``calibration.json``  temperature and "not a digit" threshold (``locmnist.calibration``);
* ``CANCEL``        created by whoever wants the trainer to stop;
* ``job.json``, ``train.log``  the app's launch record and the trainer's output
                    (``locmnist.jobs``).

A model elsewhere (the shipped ``models/default.keras``) keeps the same JSON files
beside it as *sidecars*: ``default.config.json``, ``default.history.json``,
``default.metrics.json``, ``default.calibration.json``. ``sidecar()`` names both kinds.

The runs root is the repo's ``runs/`` or ``$LOCMNIST_RUNS``, for the CLI and the
app alike. Reading a run never raises: a run still being written reads as far as
it goes.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from locmnist.run_files import Job, Status, Unreadable, load_json, parse_config

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS_ENV = "LOCMNIST_RUNS"
MODEL_ENV = "LOCMNIST_MODEL"
DETECTOR_ENV = "LOCMNIST_DETECTOR"
MODELS_DIR = REPO_ROOT / "models"
DEFAULT_MODEL = MODELS_DIR / "default.keras"     # the shipped localizer
DETECTOR_MODEL = MODELS_DIR / "detector.keras"   # the shipped multi-digit detector
# The shipped localizer tuned on the reader's crops (locmnist.crop_tuning): the reader's
# labels for the digits the detector finds.
READER_CLASSIFIER = MODELS_DIR / "reader-classifier.keras"

# Files in a run directory.
CONFIG = "config.json"
STATUS = "status.json"
HISTORY = "history.json"
MODEL = "model.keras"
METRICS = "metrics.json"
CALIBRATION = "calibration.json"  # temperature and "not a digit" threshold (locmnist.calibration)
CANCEL = "CANCEL"
JOB = "job.json"
LOG = "train.log"
FINETUNE = "finetune.json"         # a fine-tuned run's record (locmnist.finetune)
# In the runs root: the one-training-at-a-time lock (see locmnist.jobs).
LOCK = ".training.lock"
# In a run directory: held (flock) by the trainer writing it, for as long as it runs.
RUN_LOCK = ".run.lock"

LIVE_STATES = ("starting", "running", "evaluating")
INCOMPLETE = "failed/incomplete"  # status says running, but its process is gone
UNREADABLE = "unreadable"         # a file of the run is malformed; ``error`` says which


# --- where things are ------------------------------------------------------------

def runs_root() -> Path:
    """Where runs go: ``$LOCMNIST_RUNS``, else the repo's ``runs/`` (never the cwd's)."""
    return Path(os.environ.get(RUNS_ENV) or REPO_ROOT / "runs")


def new_run_id(preset: str) -> str:
    """``<date>-<time>-<preset>-<4 hex>``: sorts by time, unique within a second."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}-{secrets.token_hex(2)}"


def recorded_path(path: str | os.PathLike) -> str:
    """A path for a run's record: relative to the repo when inside it (a record shipped in
    ``models/`` must not name one machine's folders), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return str(path)


def default_model_path() -> Path:
    """What ``Predictor.load()`` loads: ``$LOCMNIST_MODEL``, else the shipped model."""
    return Path(os.environ.get(MODEL_ENV) or DEFAULT_MODEL)


def default_classifier_path() -> Path:
    """What ``Reader.load()`` labels digits with: ``$LOCMNIST_MODEL`` (a chosen
    single-digit model serves both tasks), else the shipped reader classifier."""
    return Path(os.environ.get(MODEL_ENV) or READER_CLASSIFIER)


def default_detector_path() -> Path:
    """What ``Reader.load()`` loads: ``$LOCMNIST_DETECTOR``, else the shipped detector."""
    return Path(os.environ.get(DETECTOR_ENV) or DETECTOR_MODEL)


def sidecar(model_path: str | os.PathLike, kind: str) -> Path:
    """The ``kind`` JSON file (config, history, metrics) that belongs to a model file.

    A run directory's ``model.keras`` has ``config.json``; any other ``x.keras``
    (or ``x.h5``) has ``x.config.json``.
    """
    p = Path(model_path)
    if p.name == MODEL:
        return p.parent / f"{kind}.json"
    return p.with_name(f"{p.stem}.{kind}.json")


def model_file(path: str | os.PathLike) -> Path:
    """The model file for ``path``: the path itself, or a run directory's ``model.keras``."""
    p = Path(path)
    return p / MODEL if p.is_dir() else p


def ship_run(run_dir: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy a finished run to ``dest`` (x.keras) and x.config/.history/.metrics.json.

    The JSON files go first and the model last, each atomically, so a reader never
    sees a new model beside an old config.
    """
    import shutil

    from locmnist.files import atomic_write

    run_model, dest = Path(run_dir) / MODEL, Path(dest)
    for kind in ("config", "history", "metrics", "calibration"):
        source = sidecar(run_model, kind)
        if kind == "calibration" and not source.exists():  # a model without one
            sidecar(dest, kind).unlink(missing_ok=True)  # never keep another model's
            continue
        atomic_write(sidecar(dest, kind),
                     lambda tmp, src=source: shutil.copyfile(src, tmp))
    atomic_write(dest, lambda tmp: shutil.copyfile(run_model, tmp), suffix=".keras")


# --- is the trainer alive ----------------------------------------------------------

def start_ticks(pid: int) -> int | None:
    """Process start time (clock ticks since boot), to tell a reused pid apart; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z" and not _threads_exiting(pid):
            return None
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _threads_exiting(pid: int) -> bool:
    """Whether a zombie leader's other threads are still exiting. They share its open
    files, so its flocks (the training lock) last until the last one is gone."""
    try:
        return any(t != str(pid) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False


def pid_alive(pid: int | None, ticks: int | None = None) -> bool:
    """Whether ``pid`` runs (and, when ``ticks`` is given, is the same process as then)."""
    if not pid or pid <= 0:
        return False
    try:  # reap it if it is our own finished child, else it lingers as a zombie
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if Path("/proc").is_dir():
        now = start_ticks(pid)
        if now is None:  # a zombie, or gone
            return False
        return ticks is None or now == ticks
    return True


# --- reading runs ------------------------------------------------------------------

@dataclass
class RunInfo:
    id: str
    dir: Path
    state: str            # starting|running|evaluating|completed|cancelled|failed|
                          # failed/incomplete|unreadable
    status: dict          # status.json, validated ({} before it starts or when unreadable)
    config: dict | None
    has_model: bool
    error: str | None     # why it failed or is unreadable, for display

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def model_path(self) -> Path:
        return self.dir / MODEL


class RunBusy(RuntimeError):
    """Another training is writing this run directory."""


@contextmanager
def run_dir_lock(run_dir: str | os.PathLike, wait_s: float = 2.0):
    """Hold the run directory's lock while training into it; RunBusy if another process does.

    ``flock`` goes with the process: a killed trainer never leaves it held, and a
    reused pid can never hold it. Briefly retried, since readers probe it (``run_locked``).
    """
    path = Path(run_dir) / RUN_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RunBusy(f"another training is writing {Path(run_dir).name}; "
                                  f"choose another --out") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def run_locked(run_dir: str | os.PathLike) -> bool | None:
    """Whether a trainer holds ``run_dir``'s lock; None for runs from before the lock existed."""
    return flock_held(Path(run_dir) / RUN_LOCK)


def flock_held(path: Path) -> bool | None:
    """Whether someone holds an exclusive flock on ``path`` (probed with a shared lock,
    released at once); None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def run_info(run_dir: str | os.PathLike) -> RunInfo:
    """A run's state, with a dead trainer's 'running' reported as failed/incomplete.

    Never raises: a malformed file makes the run ``unreadable``, with the reason.
    """
    d = Path(run_dir)
    try:
        return _run_info(d)
    except Unreadable as e:
        return RunInfo(d.name, d, UNREADABLE, {}, None, (d / MODEL).exists(), f"unreadable: {e}")


def _run_info(d: Path) -> RunInfo:
    raw_status, raw_job = load_json(d / STATUS), load_json(d / JOB)
    status = Status.parse(raw_status) if raw_status is not None else None
    job = Job.parse(raw_job) if raw_job is not None else None
    config = load_json(d / CONFIG)
    config = parse_config(config) if config is not None else None
    state = status.state if status else "starting"
    error = status.error if status else None
    if state in LIVE_STATES and not _alive(d, status, job):
        # Reap first: a fresh 'completed' may have landed after we read the status.
        raw_status = load_json(d / STATUS)
        status = Status.parse(raw_status) if raw_status is not None else status
        state = status.state if status else "starting"
        if state in LIVE_STATES:
            if (d / CANCEL).exists():
                state = "cancelled"
            else:
                state = INCOMPLETE
                error = error or _last_error_line(d) or "the training process ended unexpectedly"
    if state == "cancelled" and not error and job and job.cap_s and not (d / CANCEL).exists():
        error = f"stopped at this server's limit of {job.cap_s:.0f} s per run"
    if state == "failed" and not error:
        error = _last_error_line(d) or "training failed"
    return RunInfo(d.name, d, state, dataclasses.asdict(status) if status else {}, config,
                   (d / MODEL).exists(), error)


def _alive(d: Path, status: Status | None, job: Job | None) -> bool:
    """Whether the run's trainer still runs: it holds the run lock, or its pid (with the
    same start time) runs. Only a run from before locks and start times falls back to
    a bare pid."""
    locked = run_locked(d)
    if locked:
        return True
    if job is not None and pid_alive(job.pid, job.start_ticks):
        return True
    if status is None or not status.pid:
        return False
    if status.start_ticks is not None:
        return pid_alive(status.pid, status.start_ticks)
    return locked is None and pid_alive(status.pid)


def log_tail(run_dir: str | os.PathLike, lines: int = 12) -> str:
    """The last ``lines`` lines of the trainer's output ("" when there is none)."""
    try:
        text = (Path(run_dir) / LOG).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_error_line(run_dir: Path) -> str | None:
    for line in reversed(log_tail(run_dir, 40).splitlines()):
        if line.startswith("error:") or "Error" in line:
            return line.strip()
    return None


def _started(run_dir: Path) -> float:
    """When a run began: its first file's time (the directory's own mtime moves on each write)."""
    for name in (JOB, CONFIG, STATUS):
        try:
            return (run_dir / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def _run_dirs(root: Path | None = None) -> list[Path]:
    """Every run directory under the runs root, newest first."""
    root = root or runs_root()
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
            and ((p / STATUS).exists() or (p / JOB).exists())]
    return sorted(dirs, key=_started, reverse=True)


def list_runs(root: Path | None = None) -> list[RunInfo]:
    """Every run, newest first (a malformed one as ``unreadable``, never an exception)."""
    return [run_info(p) for p in _run_dirs(root)]


def prune_runs(root: Path | None = None, keep: int = 20, max_age_s: float = 7 * 86400,
               protect: tuple = ()) -> list[str]:
    """Delete finished runs beyond the newest ``keep`` and those older than ``max_age_s``.

    Live runs and the runs in ``protect`` (ids) are never deleted. Returns the deleted ids.
    """
    deleted, kept = [], 0
    now = time.time()
    for d in _run_dirs(root):
        info = run_info(d)
        if info.live or d.name in protect:
            continue
        kept += 1
        if kept > keep or now - _started(d) > max_age_s:
            shutil.rmtree(d, ignore_errors=True)
            deleted.append(d.name)
    return deleted


def latest_run_id(root: Path | None = None) -> str | None:
    """The newest run's id, without reading every run's state."""
    dirs = _run_dirs(root)
    return dirs[0].name if dirs else None
