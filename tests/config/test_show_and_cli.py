"""``config validate`` / ``config show``, masking, and repr: no planted secret gets out."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.config._support import (
    EXAMPLE,
    HTTP_TOKEN,
    PASSWORD,
    SIMULATOR,
    SK,
    STS,
    URL_TOKEN,
    assert_clean,
)
from watcher.config import MASK, load_settings, mask_url, render_masked
from watcher.config_cli import config, load_or_exit

FULL = f"""
[cloud]
region = "ap-southeast-1"
project_id = "0123456789abcdef0123456789abcdef"

[credentials]
access_key = "AKEXAMPLE0001"
secret_key = "{SK}"
security_token = "{STS}"

[[targets]]
cluster_id = "b4b9e60f-8aa2-11ee-af09-0255ac10004f"
workflow_id = "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1"

[notify]
urls = [
  "json://user:{URL_TOKEN}@127.0.0.1:8080/hook/{URL_TOKEN}?+Authorization=Bearer%20{URL_TOKEN}",
  {{ url = "feishu://{URL_TOKEN}", name = "feishu", tags = ["chat"] }},
  "mailtos://bot:{URL_TOKEN}@smtp.example.com?to=ops@example.com",
]

[http]
token = "{HTTP_TOKEN}"
"""

PASSWORD_CREDS = f"""
[credentials]
kind = "password"
username = "u"
domain = "d"
password = "{PASSWORD}"
"""


def isolated_env(**extra: str) -> dict[str, str | None]:
    """CliRunner env: unset what could leak in from the developer's shell."""
    env: dict[str, str | None] = {
        "WATCHER_CONFIG": None,
        "CREDENTIALS_DIRECTORY": None,
        "STATE_DIRECTORY": None,
        "HUAWEICLOUD_SDK_AK": None,
        "HUAWEICLOUD_SDK_SK": None,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": None,
        "HUAWEICLOUD_SDK_PROJECT_ID": None,
    }
    env.update(extra)
    return env


def test_repr_and_dump_hide_secrets(write_toml: Callable[[str], Path]) -> None:
    settings = load_settings(write_toml(FULL), env={}, secrets_dirs=[])
    assert_clean(repr(settings))
    assert_clean(str(settings))
    assert_clean(settings.model_dump_json())
    assert_clean(repr(settings.notify.urls))
    password = load_settings(write_toml(PASSWORD_CREDS, "p.toml"), env={}, secrets_dirs=[])
    assert_clean(repr(password))


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_render_masked_hides_every_secret(write_toml: Callable[[str], Path], fmt: str) -> None:
    settings = load_settings(write_toml(FULL), env={}, secrets_dirs=[])
    text = render_masked(settings, "toml" if fmt == "toml" else "json")
    assert_clean(text)
    data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    assert data["credentials"]["secret_key"] == MASK
    assert data["credentials"]["security_token"] == MASK
    assert data["http"]["token"] == MASK
    assert data["credentials"]["access_key"] == "AKEX****"
    urls = [u["url"] for u in data["notify"]["urls"]]
    assert urls[0] == "json://****@127.0.0.1:8080/...?+Authorization=****"
    assert urls[1].startswith("feishu://")
    assert urls[2] == "mailtos://****@smtp.example.com?to=****"
    assert data["targets"][0]["name"] == "b4b9e60f-c271e39e"
    assert data["policy"]["precheck_leads"] == ["1h", "15m"]


def test_masked_toml_is_valid_for_the_shipped_configs(secrets_dir: Path) -> None:
    (secrets_dir / "credentials__secret_key").write_text(SK)
    for path in (EXAMPLE, SIMULATOR):
        settings = load_settings(path, env={}, secrets_dirs=[secrets_dir])
        text = render_masked(settings)
        assert_clean(text)
        assert tomllib.loads(text)["targets"]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"json://u:{URL_TOKEN}@127.0.0.1:8080/x/{URL_TOKEN}", "json://****@127.0.0.1:8080/..."),
        (
            f"jsons://hooks.example.com/?+Authorization=Bearer%20{URL_TOKEN}&-k=v",
            "jsons://hooks.example.com?+Authorization=****&-k=****",
        ),
        (f"form://example.com/?:token={URL_TOKEN}", "form://example.com?:token=****"),
        (f"tgram://123456789:{URL_TOKEN}/-100123", None),
        (f"wecombot://{URL_TOKEN}", None),
        (f"slack://T1JJ3T3L2/A1BRTD4JD/{URL_TOKEN}/#chan", None),
        (f"splunk://{URL_TOKEN}@apikeyABCDEF/entity", None),
        (f"pagerduty://{URL_TOKEN}@{URL_TOKEN}/src?region=eu", None),
        (f"unknownscheme://{URL_TOKEN}/x", "unknownscheme://****/..."),
        ("console://", "console://"),
        (f"no-scheme-{URL_TOKEN}", MASK),
    ],
)
def test_mask_url(url: str, masked: str | None) -> None:
    result = mask_url(url)
    assert URL_TOKEN not in result
    assert result.split("://", 1)[0] == url.split("://", 1)[0] or result == MASK
    if masked is not None:
        assert result == masked


def test_cli_validate_ok(write_toml: Callable[[str], Path]) -> None:
    result = CliRunner().invoke(
        config, ["validate", "--config", str(write_toml(FULL))], env=isolated_env()
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "config OK: 1 target, 3 notification URLs"
    assert_clean(result.output)


def test_cli_validate_example_with_credentials_directory(
    secrets_dir: Path, write_toml: Callable[[str], Path]
) -> None:
    """The example as shipped only lacks what the operator must fill in (issue 10: its
    REPLACE-... placeholders are errors); with them filled in it validates cleanly."""
    (secrets_dir / "credentials__secret_key").write_text(SK)
    env = isolated_env(CREDENTIALS_DIRECTORY=str(secrets_dir))
    result = CliRunner().invoke(config, ["validate", "--config", str(EXAMPLE)], env=env)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error")]
    assert errors == [
        f"config error: notify.urls.{i}.url: {name}: still holds a placeholder from the"
        " example (REPLACE-...) (env WATCHER_NOTIFY__URLS as JSON)"
        for i, name in enumerate(["platform-chat", "oncall-mail"])
    ]
    filled = EXAMPLE.read_text().replace("REPLACE-WITH-ROBOT-KEY", "robotkey123")
    filled = filled.replace("REPLACE-ME", "mailpassword")
    result = CliRunner().invoke(config, ["validate", "--config", str(write_toml(filled))], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "config OK: 3 targets, 2 notification URLs"


def test_cli_validate_problems_exit_2(write_toml: Callable[[str], Path]) -> None:
    bad = FULL.replace("[http]", "[http]\nlisten = 5\nbogus = 1") + (
        f'\n[credentials.extra]\nx = "{SK}"\n'
    )
    bad = bad.replace(f'secret_key = "{SK}"', f'secret_key = ["{SK}"]')
    result = CliRunner().invoke(
        config,
        ["validate", "--config", str(write_toml(bad))],
        env=isolated_env(WATCHER_HTTP__TOKEN=HTTP_TOKEN[:5]),
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines
    assert all(line.startswith("config error: ") for line in lines)
    assert "config error: http.bogus: unknown key (env WATCHER_HTTP__BOGUS)" in lines
    assert (
        "config error: credentials.secret_key: Input should be a valid string"
        " (env WATCHER_CREDENTIALS__SECRET_KEY)" in lines
    )
    assert_clean(result.output)
    assert HTTP_TOKEN[:5] not in result.stderr.replace("(env WATCHER_HTTP__TOKEN)", "")


def test_cli_validate_without_targets(write_toml: Callable[[str], Path]) -> None:
    result = CliRunner().invoke(
        config, ["validate", "--config", str(write_toml("[logging]\n"))], env=isolated_env()
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("config error: targets: no targets configured")


def test_cli_validate_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        config, ["validate", "--config", str(tmp_path / "x.toml")], env=isolated_env()
    )
    assert result.exit_code == 2
    assert "not found" in result.stderr


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_cli_show_masks(write_toml: Callable[[str], Path], args: list[str]) -> None:
    result = CliRunner().invoke(
        config,
        ["show", "--config", str(write_toml(FULL)), *args],
        env=isolated_env(WATCHER_CREDENTIALS__PASSWORD=PASSWORD),
    )
    assert result.exit_code == 0, result.output
    assert_clean(result.output)
    data = json.loads(result.stdout) if args else tomllib.loads(result.stdout)
    assert data["credentials"]["password"] == MASK


def test_cli_show_env_only_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        config,
        ["show", "--json"],
        env=isolated_env(
            WATCHER_CONFIG=None,
            WATCHER_CREDENTIALS__SECRET_KEY=SK,
            WATCHER_CREDENTIALS__ACCESS_KEY="AKEXAMPLE0001",
            WATCHER_STATE_DIR=str(tmp_path),
        ),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["credentials"]["effective_kind"] == "aksk"
    assert_clean(result.output)


def test_load_or_exit(
    write_toml: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        load_or_exit(write_toml(f'[credentials]\nsecret_key = 1\npassword = ["{PASSWORD}"]\n'))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: credentials.")
    assert_clean(err)
