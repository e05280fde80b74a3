"""Server settings for the app: what a visitor may do on a shared, public server.

One owner for every limit. Values come from, in order of precedence:

1. environment variables ``LOCMNIST_<FIELD>`` (``LOCMNIST_MODE=local``,
   ``LOCMNIST_MAX_EPOCHS=20``, ``LOCMNIST_ADMIN_TOKEN=...``);
2. the ``[locmnist]`` table of ``.streamlit/secrets.toml`` (the repo's, or
   ``$LOCMNIST_SECRETS``);
3. the defaults below, which are safe for a public server.

``mode = "local"`` (one person on their own machine) lifts the training limits,
the upload quota and the admin-only views. ``ServerSettings.load()`` never raises:
a bad value is reported in ``problems`` and the safe default is kept.
"""
from __future__ import annotations

import dataclasses
import hmac
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from locmnist.runs import REPO_ROOT

SECRETS = REPO_ROOT / ".streamlit" / "secrets.toml"


@dataclass(frozen=True)
class ServerSettings:
    mode: str = field(default="public", metadata={"help": "public or local"})
    max_epochs: int = field(default=10, metadata={
        "help": "most epochs a run started from the browser may ask for"})
    max_train_digits: int = field(default=30_000, metadata={
        "help": "most training digits a browser run may use (0 means all 55,000)"})
    max_run_seconds: int = field(default=600, metadata={
        "help": "wall-clock cap of a browser run, start to end; it is stopped then"})
    keep_runs: int = field(default=20, metadata={"help": "finished runs kept; older ones pruned"})
    max_run_age_days: float = field(default=7.0, metadata={
        "help": "finished runs older than this are pruned"})
    upload_quota_mb: int = field(default=200, metadata={
        "help": "disk for uploaded models, all visitors together; oldest go first"})
    max_upload_files: int = field(default=10, metadata={
        "help": "images predicted per rerun; more are listed but not read"})
    trial_memory_mb: int = field(default=3072, metadata={
        "help": "address space for the trial load of an uploaded model"})
    admin_token: str = field(default="", repr=False, metadata={
        "help": "unlocks logs, paths and cancelling anyone's run; empty: nobody"})
    problems: tuple[str, ...] = field(default=(), metadata={"help": "bad values ignored"})

    @property
    def local(self) -> bool:
        return self.mode == "local"

    @classmethod
    def load(cls, environ=None, secrets_path: str | os.PathLike | None = None
             ) -> "ServerSettings":
        environ = os.environ if environ is None else environ
        path = Path(secrets_path or environ.get("LOCMNIST_SECRETS") or SECRETS)
        values, problems = {}, []
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("locmnist", {})
            values.update(table if isinstance(table, dict) else {})
        except FileNotFoundError:
            pass
        except (OSError, ValueError, UnicodeDecodeError) as e:
            problems.append(f"{path.name}: {e}")
        for f in dataclasses.fields(cls):
            key = f"LOCMNIST_{f.name.upper()}"
            if f.name != "problems" and key in environ:
                values[f.name] = environ[key]
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in values or f.name == "problems":
                continue
            try:
                kwargs[f.name] = _coerce(f, values[f.name])
            except ValueError as e:
                problems.append(f"{f.name}: {e}")
        return cls(**kwargs, problems=tuple(problems))

    def is_admin(self, token: str | None) -> bool:
        """Local mode, or the admin token (compared in constant time)."""
        if self.local:
            return True
        return bool(self.admin_token) and bool(token) and hmac.compare_digest(
            str(token).encode(), self.admin_token.encode())

    def check_training(self, epochs: int, train_digits: int) -> None:
        """Raise ValueError when a browser run asks for more than the public limits."""
        if self.local:
            return
        if epochs > self.max_epochs:
            raise ValueError(f"this server allows at most {self.max_epochs} epochs")
        if train_digits == 0 or train_digits > self.max_train_digits:
            raise ValueError(f"this server allows at most {self.max_train_digits:,} "
                             f"training digits")

    @property
    def run_seconds(self) -> int | None:
        """The wall-clock cap of a browser run, or None (local mode)."""
        return None if self.local else self.max_run_seconds


def _coerce(f: dataclasses.Field, value):
    kind = type(f.default)
    if f.name == "mode":
        if str(value) not in ("public", "local"):
            raise ValueError(f"{value!r} is not public or local")
        return str(value)
    if kind is str:
        return str(value)
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        v = kind(value)  # "20" from the environment, 20 from TOML
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a {kind.__name__}") from None
    if v < 0:
        raise ValueError(f"{value!r} is negative")
    return v
