"""Planted secrets and paths shared by the config tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "watcher.example.toml"
SIMULATOR = REPO / "config" / "simulator.toml"

# Distinctive values that must never be printed anywhere.
SK = "PLANTED-SK-7f3a9c11"
PASSWORD = "PLANTED-PW-0b1e22"
STS = "PLANTED-STS-55aa33"
HTTP_TOKEN = "PLANTED-HTTP-TOKEN-1234567890"
URL_TOKEN = "PLANTEDURLTOKEN9c8b7a"
PLANTED = (SK, PASSWORD, STS, HTTP_TOKEN, URL_TOKEN)


def assert_clean(text: str) -> None:
    """Fail if any planted secret occurs in text."""
    for secret in PLANTED:
        assert secret not in text, f"planted secret {secret[:12]}... leaked"
