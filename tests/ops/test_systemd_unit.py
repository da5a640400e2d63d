"""The systemd unit passes `systemd-analyze verify` and agrees with the code and the README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from watcher.config import loader, schema
from watcher.notify.sender import APP_URL

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "cce-upgrade-watcher.service"
README = REPO / "deploy" / "systemd" / "README.md"


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        reason = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run this check")
        pytest.skip(reason)
    return path


def _directives(text: str) -> dict[str, list[str]]:
    """Section-less `Key=value` list, in order; repeated keys keep every value."""
    found: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Verify a copy whose ExecStart binary exists (verify insists it is executable)."""
    binary = tmp_path / "cce-upgrade-watcher"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    exec_start = _directives(unit_text)["ExecStart"][0].split()[0]
    unit = tmp_path / UNIT.name
    unit.write_text(unit_text.replace(f"ExecStart={exec_start}", f"ExecStart={binary}"))
    return subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", "--generators=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )


def _complaints(result: subprocess.CompletedProcess[str]) -> list[str]:
    # verify exits 0 even for unknown keys and bad values: it only prints them.
    return [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = _verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert _complaints(result) == []


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a typo and a bad value are reported."""
    broken = UNIT.read_text().replace("WatchdogSec=60", "WatchdogSecs=60")
    broken = broken.replace("Type=notify", "Type=notifyy")
    complaints = _complaints(_verify(broken, tmp_path))
    assert any("WatchdogSecs" in line for line in complaints)
    assert any("notifyy" in line for line in complaints)


def test_unit_has_the_required_settings() -> None:
    d = _directives(UNIT.read_text())
    single = {key: values[-1] for key, values in d.items()}
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "WatchdogSec": "60",
        "Restart": "on-failure",
        "TimeoutStopSec": "30",
        "DynamicUser": "yes",
        "StateDirectory": "cce-upgrade-watcher",
        "ConfigurationDirectory": "cce-upgrade-watcher",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallFilter": "@system-service",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }
    assert {key: single.get(key) for key in expected} == expected
    assert "PYTHONUNBUFFERED=1" in d["Environment"]
    assert "WATCHER_STATE_DIR=%S/cce-upgrade-watcher" in d["Environment"]
    argv = d["ExecStart"][0].split()
    assert argv[1:] == ["run", "--config", "/etc/cce-upgrade-watcher/config.toml"]


def test_file_descriptor_limit_leaves_room_beyond_the_http_connection_cap() -> None:
    """A flooded HTTP port (every slot held) must leave descriptors for webhooks and SQLite."""
    from watcher.http.limits import MAX_CONNECTIONS

    limit = _directives(UNIT.read_text()).get("LimitNOFILE", ["missing"])[-1]
    soft = limit.split(":", 1)[0]
    assert soft.isdigit(), f"LimitNOFILE must be a number, not {limit!r}"
    assert int(soft) >= 4 * MAX_CONNECTIONS
    assert str(MAX_CONNECTIONS) in UNIT.read_text()  # the comment states the real cap


def test_credentials_are_named_after_the_settings() -> None:
    """Each LoadCredential ID is a file name the config loader reads as a setting."""
    known = {"__".join(path) for path in schema.iter_secret_fields()} | {"credentials__access_key"}
    text = UNIT.read_text()
    loaded = [value.partition(":")[0] for value in _directives(text)["LoadCredential"]]
    assert loaded == ["credentials__access_key", "credentials__secret_key"]
    mentioned = set(re.findall(r"LoadCredential=(\w+):", text))  # the commented options too
    assert mentioned <= known
    assert mentioned >= known - {"credentials__access_key"}


def test_the_config_loader_reads_the_credentials_systemd_passes(tmp_path: Path) -> None:
    """Files named like the LoadCredential IDs in $CREDENTIALS_DIRECTORY become the settings."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    values = {
        "credentials__access_key": "AK-FROM-CREDS",
        "credentials__secret_key": "SK-FROM-CREDS",
        "credentials__security_token": "ST-FROM-CREDS",
        "http__token": "HTTP-TOKEN-FROM-CREDENTIALS",
    }
    for name, value in values.items():
        (creds / name).write_text(value + "\n")
    settings = loader.load_settings(env={"CREDENTIALS_DIRECTORY": str(creds)}, default_path=None)
    c = settings.credentials
    assert c.access_key == "AK-FROM-CREDS"
    assert c.secret_key is not None and c.secret_key.get_secret_value() == "SK-FROM-CREDS"
    assert c.security_token is not None
    assert c.security_token.get_secret_value() == "ST-FROM-CREDS"
    assert settings.http.token is not None
    assert settings.http.token.get_secret_value() == "HTTP-TOKEN-FROM-CREDENTIALS"


def test_readme_installs_the_binary_where_execstart_looks() -> None:
    binary = Path(_directives(UNIT.read_text())["ExecStart"][0].split()[0])
    readme = README.read_text()
    venv = binary.parent.parent
    assert f"python3 -m venv {venv}" in readme
    assert f"{venv}/bin/pip install" in readme
    for example in re.findall(r"config/[\w./-]+\.toml", readme):
        assert (REPO / example).is_file(), f"the README installs {example}, which does not exist"
    for step in ("systemctl enable --now", "journalctl -u", "systemctl reload", "LoadCredential"):
        assert step in readme


def test_documentation_points_at_the_readme() -> None:
    """`systemctl help cce-upgrade-watcher` and `systemctl status` lead to the project README
    first, then the install notes; both files exist in this repository."""
    (value,) = _directives(UNIT.read_text())["Documentation"]
    uris = value.split()
    prefix = f"{APP_URL}/blob/main/"
    assert uris[0] == f"{prefix}README.md"
    for uri in uris:
        assert uri.startswith(prefix), uri
        assert (REPO / uri.removeprefix(prefix)).is_file(), uri
