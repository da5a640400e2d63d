"""deploy/systemd/README.md, "Several hosts against one database": the drop-in's credential
and the TOML it shows are what the loader reads (the DSN from $CREDENTIALS_DIRECTORY)."""

from __future__ import annotations

import re
from pathlib import Path

from watcher.config import loader
from watcher.config.schema import Settings

REPO = Path(__file__).resolve().parents[2]
README = REPO / "deploy" / "systemd" / "README.md"
UNIT = REPO / "deploy" / "systemd" / "cce-upgrade-watcher.service"
SECTION = README.read_text().split("## Several hosts against one database", 1)[-1]


def test_the_dsn_credential_is_the_one_the_unit_documents() -> None:
    (line,) = re.findall(r"^\s*(LoadCredential=state__dsn:\S+)$", SECTION, flags=re.M)
    assert line in UNIT.read_text()  # the unit lists the same line, commented out


def _toml_blocks() -> str:
    return "\n".join(re.findall(r"```toml\n(.*?)```", SECTION, flags=re.S))


def _load(tmp_path: Path) -> Settings:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "state__dsn").write_text("postgresql://watcher:pw@db.example.internal/watcher\n")
    config = tmp_path / "config.toml"
    config.write_text(_toml_blocks())
    return loader.load_settings(config, env={"CREDENTIALS_DIRECTORY": str(creds)})


def test_the_section_config_and_credential_load(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.state.backend == "postgres"
    assert settings.state.dsn is not None
    assert settings.state.dsn.get_secret_value().endswith("@db.example.internal/watcher")
    assert settings.ha.lease_s == 30
