"""``[state]``: the backend choice, and the PostgreSQL DSN as a secret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.config._support import assert_clean
from watcher.config import load_settings, render_masked, settings_from_mapping
from watcher.core.errors import ConfigError

DSN = "postgresql://watcher:PLANTED-DSN-PW-31337@db.example:5432/watcher"


def test_sqlite_is_the_default() -> None:
    state = settings_from_mapping({}).state
    assert (state.backend, state.dsn, state.pool_size) == ("sqlite", None, 4)


def test_postgres_needs_a_dsn_and_sqlite_refuses_one() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"state": {"backend": "postgres"}})
    assert any(p.startswith("state.dsn") for p in caught.value.problems)
    assert "state__dsn" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"state": {"dsn": DSN}})
    assert any(p.startswith("state.dsn") for p in caught.value.problems)
    assert_clean(str(caught.value))
    assert "PLANTED-DSN-PW" not in str(caught.value)
    with pytest.raises(ConfigError):
        settings_from_mapping({"state": {"backend": "mysql"}})
    with pytest.raises(ConfigError):
        settings_from_mapping({"state": {"backend": "postgres", "dsn": DSN, "pool_size": 0}})


def test_dsn_from_a_secret_file_is_masked(
    write_toml: Callable[[str], Path], secrets_dir: Path
) -> None:
    (secrets_dir / "state__dsn").write_text(DSN + "\n")
    path = write_toml('[state]\nbackend = "postgres"\npool_size = 8\n')
    settings = load_settings(path, env={}, secrets_dirs=[secrets_dir], default_path=None)
    assert settings.state.dsn is not None
    assert settings.state.dsn.get_secret_value() == DSN
    assert settings.state.pool_size == 8
    for text in (render_masked(settings), render_masked(settings, "json"), repr(settings)):
        assert "PLANTED-DSN-PW" not in text and "db.example" not in text


def test_dsn_from_the_environment() -> None:
    settings = load_settings(
        None,
        env={"WATCHER_STATE__BACKEND": "Postgres", "WATCHER_STATE__DSN": DSN},
        secrets_dirs=[],
        default_path=None,
    )
    assert settings.state.backend == "postgres"
    assert settings.state.dsn is not None and settings.state.dsn.get_secret_value() == DSN
