"""Fixtures for config tests: temporary TOML files and secret directories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    path = tmp_path / "credentials"
    path.mkdir()
    return path
