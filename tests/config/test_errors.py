"""Problems name the key and its environment variable, and never echo a value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.config._support import HTTP_TOKEN, PASSWORD, SK, STS, URL_TOKEN, assert_clean
from watcher.config import load_settings, settings_from_mapping
from watcher.core.errors import ConfigError

TARGET = {"cluster_id": "c1", "region": "ap-southeast-1", "project_id": "p1"}


def problems_of(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data)
    text = "\n".join(info.value.problems) + str(info.value) + repr(info.value)
    assert_clean(text)
    return info.value.problems


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"credentials": {"kind": "aksk", "access_key": "AK01234567"}},
            "credentials.secret_key: Field required for AK/SK credentials"
            " (env WATCHER_CREDENTIALS__SECRET_KEY)",
        ),
        (
            {"credentials": {"kind": "password", "username": "u", "password": PASSWORD}},
            "credentials.domain: Field required for password credentials"
            " (env WATCHER_CREDENTIALS__DOMAIN)",
        ),
        (
            {"targets": [{**TARGET, "kind": "workflow"}]},
            'targets.0.workflow_id: Field required when kind = "workflow"'
            " (env WATCHER_TARGETS as JSON)",
        ),
        (
            {"targets": [{**TARGET, "kind": "cluster", "workflow_id": "w1"}]},
            "targets.0.workflow_id: not allowed",
        ),
        (
            {"targets": [{"cluster_id": "c1"}]},
            "targets.0.region: Field required (set it on the target or in [cloud])",
        ),
        (
            {"targets": [{**TARGET, "cluster_id": "../etc"}]},
            "targets.0.cluster_id: String should match pattern",
        ),
        ({"targets": [TARGET, TARGET]}, "targets.1.name: duplicate target name (also targets.0)"),
        ({"cloud": {"regoin": "x"}}, "cloud.regoin: unknown key (env WATCHER_CLOUD__REGOIN)"),
        ({"pollling": {}}, "pollling: unknown key (env WATCHER_POLLLING)"),
        (
            {"polling": {"active_s": "fast"}},
            "polling.active_s: Input should be a valid number",
        ),
        (
            {"policy": {"repeat_interval": "soon"}},
            "policy.repeat_interval: expected a duration such as 90s",
        ),
        (
            {"notify": {"routes": [{"kinds": ["task.faild"]}]}},
            "notify.routes.0.kinds: a pattern matches no event kind",
        ),
        (
            {"notify": {"routes": [{"min_severity": "critical"}]}},
            "notify.routes.0.min_severity: Input should be",
        ),
        (
            {"notify": {"templates": {"task.failed": {"title": "{% if %}"}}}},
            "notify.templates.task.failed.title: template syntax error at line 1",
        ),
        (
            {"silences": [{"until": "2030-01-01T00:00:00"}]},
            "silences.0.until: Input should have timezone info",
        ),
        ({"http": {"listen": "localhost"}}, "http.listen: expected host:port"),
        ({"logging": {"level": "loud"}}, "logging.level: Input should be"),
        ({"cloud": {"cce_endpoint": "ftp://x"}}, "cloud.cce_endpoint: expected an http"),
    ],
)
def test_problem_names_key_and_env_var(data: dict[str, object], expected: str) -> None:
    found = problems_of(data)
    assert any(p.startswith(expected) for p in found), found
    assert all("(env WATCHER_" in p for p in found), found


def test_secrets_in_the_wrong_shape_are_not_echoed(write_toml: Callable[[str], Path]) -> None:
    path = write_toml(
        f"""
[credentials]
kind = "aksk"
access_key = ["{SK}"]
secret_key = {{ nested = "{SK}" }}
security_token = 12
password = ["{PASSWORD}"]
username = {{ x = "{STS}" }}

[http]
token = {{ value = "{HTTP_TOKEN}" }}
listen = "{HTTP_TOKEN}"

[notify]
urls = [{{ url = "json://u:{URL_TOKEN}@host/x", flavor = "{URL_TOKEN}" }}, "not a url {URL_TOKEN}"]
max_age = "{URL_TOKEN}"

[[targets]]
cluster_id = "{SK}!"
region = "{PASSWORD}"
"""
    )
    env = {
        "WATCHER_POLLING__BURST": SK,
        "WATCHER_POLICY__REPEAT_INTERVAL": PASSWORD,
        "WATCHER_LOGGING__LEVEL": STS,
    }
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env, secrets_dirs=[])
    problems = info.value.problems
    assert len(problems) >= 5
    text = "\n".join(problems) + str(info.value)
    assert_clean(text)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_bad_json_in_env_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            None,
            env={"WATCHER_NOTIFY__URLS": '["json://x/' + URL_TOKEN},
            secrets_dirs=[],
            default_path=None,
        )
    assert info.value.problems == [
        "notify: the environment value is not valid JSON (env WATCHER_NOTIFY__URLS)"
    ]
    assert_clean(str(info.value))


def test_unknown_env_variable_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            None,
            env={"WATCHER_POLING__ACTIVE_S": "5", "WATCHER_POLLING__ACTIV_S": "5"},
            secrets_dirs=[],
            default_path=None,
        )
    # issue 10: an unknown key now also names the closest known one
    assert (
        "poling: unknown key (env WATCHER_POLING__ACTIVE_S); did you mean 'polling'?"
        in info.value.problems
    )
    assert (
        "polling.activ_s: unknown key (env WATCHER_POLLING__ACTIV_S); did you mean 'active_s'?"
        in info.value.problems
    )


def test_toml_syntax_error_gives_the_line(write_toml: Callable[[str], Path]) -> None:
    path = write_toml(f'[cloud]\nregion = "ap-southeast-1"\ntoken = "{SK}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={}, secrets_dirs=[])
    (problem,) = info.value.problems
    assert problem.startswith(f"config file {path}: TOML syntax error")
    assert "line 3" in problem
    assert_clean(problem)


def test_secrets_dir_that_is_a_file(tmp_path: Path) -> None:
    bogus = tmp_path / "file"
    bogus.write_text("x")
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={}, secrets_dirs=[bogus], default_path=None)
    assert info.value.problems == [f"secrets directory {bogus}: not a directory"]


def test_require_targets_says_so_clearly() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={}, secrets_dirs=[], default_path=None, require_targets=True)
    (problem,) = info.value.problems
    assert problem.startswith("targets: no targets configured")
