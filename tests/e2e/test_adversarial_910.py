"""Adversarial probes of issues 9 and 10 (QA pass 9:10): each test runs the CLI as a user would.

Every test here failed before the fix next to it; see the QA report for the variants tried.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = "0123456789abcdef0123456789abcdef"
CLUSTER = "b4b9e60f-8aa2-11ee-af09-0255ac10004f"
WORKFLOW = "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1"


def _config(tmp_path: Path, *, region: str = "ap-southeast-3", url: str = "json://127.0.0.1:9/x") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[cloud]\nregion = "{region}"\nproject_id = "{PROJECT}"\n'
        '[credentials]\nkind = "aksk"\naccess_key = "AKEXAMPLE"\n'
        f'[[targets]]\nname = "t1"\ncluster_id = "{CLUSTER}"\nworkflow_id = "{WORKFLOW}"\n'
        f'[notify]\nurls = [{{name = "mail", url = "{url}"}}]\n',
        encoding="utf-8",
    )
    return path


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env["WATCHER_CREDENTIALS__SECRET_KEY"] = "sk"
    return subprocess.run(
        [sys.executable, "-m", "watcher", "config", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "url",
    [
        "mailtos://smtp.example.com?to=a@example.com",  # no login at all: apprise refuses it
        "mailto://smtp.example.com?to=a@example.com",
    ],
)
def test_unparsable_url_names_key_env_and_the_login_hint(tmp_path: Path, url: str) -> None:
    result = _validate(_config(tmp_path, url=url))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("config error")]
    assert lines, result.stderr
    for line in lines:  # every problem names the key and its environment variable
        assert "notify.urls" in line and "WATCHER_NOTIFY__URLS" in line, line
    assert "smtp.example.com" not in result.stderr  # the URL itself is never echoed
    if url.startswith("mailtos"):
        assert "without a login" in result.stderr


@pytest.mark.parametrize(
    ("region", "meant"),
    [("AP-SOUTHEAST-3", "ap-southeast-3"), ("ap_southeast_3", "ap-southeast-3"), ("Ap-Southeast-l", "ap-southeast-1")],
)
def test_malformed_region_gets_a_suggestion(tmp_path: Path, region: str, meant: str) -> None:
    result = _validate(_config(tmp_path, region=region))
    assert result.returncode == 2
    assert "WATCHER_CLOUD__REGION" in result.stderr
    assert f"did you mean '{meant}'" in result.stderr, result.stderr


def test_region_placeholder_is_named_a_placeholder(tmp_path: Path) -> None:
    result = _validate(_config(tmp_path, region="REPLACE-REGION"))
    assert result.returncode == 2
    assert "placeholder" in result.stderr and "WATCHER_CLOUD__REGION" in result.stderr, result.stderr
