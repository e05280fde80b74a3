"""Server settings (issue 12, public-server mode): env vars over secrets.toml over safe
defaults; bad values are reported and ignored; local mode lifts the limits."""
from __future__ import annotations

import pytest

from locmnist.settings import ServerSettings


def test_defaults_are_the_public_limits(tmp_path):
    s = ServerSettings.load({}, tmp_path / "none.toml")
    assert s.mode == "public" and not s.local and s.problems == ()
    assert s.run_seconds == s.max_run_seconds > 0
    assert not s.is_admin(None) and not s.is_admin("")   # no token set: nobody is admin
    with pytest.raises(ValueError, match="epochs"):
        s.check_training(s.max_epochs + 1, 1000)
    with pytest.raises(ValueError, match="digits"):
        s.check_training(1, 0)                            # 0 means all 55,000
    s.check_training(s.max_epochs, s.max_train_digits)


def test_secrets_file_then_environment(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[locmnist]\nmax_epochs = 3\nadmin_token = "hunter2"\nkeep_runs = 5\n')
    s = ServerSettings.load({"LOCMNIST_MAX_EPOCHS": "4"}, secrets)
    assert (s.max_epochs, s.keep_runs) == (4, 5)
    assert s.is_admin("hunter2") and not s.is_admin("hunter3")
    assert "hunter2" not in repr(s)
    s = ServerSettings.load({"LOCMNIST_SECRETS": str(secrets)})
    assert s.max_epochs == 3


def test_bad_values_keep_the_safe_default(tmp_path):
    bad = tmp_path / "secrets.toml"
    bad.write_text("[locmnist]\nmax_epochs = -1\nmode = 'anything'\n")
    s = ServerSettings.load({"LOCMNIST_KEEP_RUNS": "many"}, bad)
    assert (s.max_epochs, s.mode, s.keep_runs) == (10, "public", 20)
    assert len(s.problems) == 3
    broken = tmp_path / "broken.toml"
    broken.write_text("[locmnist\n")
    assert ServerSettings.load({}, broken).problems


def test_local_mode_lifts_the_limits(tmp_path):
    s = ServerSettings.load({"LOCMNIST_MODE": "local"}, tmp_path / "none.toml")
    assert s.local and s.is_admin(None) and s.run_seconds is None
    s.check_training(200, 0)
