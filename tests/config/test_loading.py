"""Sources and their priority: TOML, environment, secret files, SDK fallback, defaults."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.config._support import EXAMPLE, SIMULATOR, SK
from watcher.config import load_settings, settings_from_mapping
from watcher.core.errors import ConfigError

MINIMAL = """
[cloud]
region = "ap-southeast-1"
project_id = "0123456789abcdef0123456789abcdef"

[[targets]]
cluster_id = "b4b9e60f-8aa2-11ee-af09-0255ac10004f"
workflow_id = "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1"

[polling]
active_s = 20
idle_s = 90
"""


def test_example_config_loads_with_secret_file(secrets_dir: Path) -> None:
    (secrets_dir / "credentials__secret_key").write_text(SK + "\n")
    settings = load_settings(EXAMPLE, env={}, secrets_dirs=[secrets_dir])
    assert [t.name for t in settings.targets] == ["prod-sg", "staging-hk", "prod-fleet-sg"]
    assert [t.kind for t in settings.targets] == ["workflow", "cluster", "project"]
    fleet = settings.targets[2]
    assert (fleet.cluster_id, fleet.include, fleet.exclude) == (
        None,
        ("prod-*",),
        ("prod-*-scratch",),
    )
    assert fleet.cluster_labels == {"tier": "production"}
    assert settings.targets[1].project_id == settings.cloud.project_id
    assert settings.credentials.effective_kind == "aksk"
    assert settings.credentials.secret_key is not None
    assert settings.credentials.secret_key.get_secret_value() == SK
    assert [u.name for u in settings.notify.urls] == ["platform-chat", "oncall-mail"]
    assert [u.flavor for u in settings.notify.urls] == ["chat", "email"]
    assert len(settings.notify.routes) == 2
    assert "task.failed" in settings.notify.templates.kinds
    assert settings.config_path == EXAMPLE


def test_simulator_config_points_at_the_simulator() -> None:
    settings = load_settings(SIMULATOR, env={}, secrets_dirs=[])
    seed = settings.target("seed")
    assert seed is not None
    assert (seed.cluster_id, seed.workflow_id) == (
        "b4b9e60f-8aa2-11ee-af09-0255ac10004f",
        "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1",
    )
    assert (seed.region, seed.project_id) == ("ap-southeast-1", "0123456789abcdef0123456789abcdef")
    assert settings.cloud.cce_endpoint_for(seed.region) == "http://127.0.0.1:8700"
    assert settings.cloud.iam_endpoint_for(seed.region) == "http://127.0.0.1:8700"
    assert settings.credentials.access_key == "SIMULATORAK0000000001"
    assert [u.url.get_secret_value() for u in settings.notify.urls] == ["console://"]
    assert settings.state_dir == Path("state")
    assert seed.to_ref().cluster_id == seed.cluster_id


def test_env_overrides_nested_keys_and_keeps_the_rest_of_the_table(
    write_toml: Callable[[str], Path],
) -> None:
    path = write_toml(MINIMAL)
    settings = load_settings(
        path,
        env={"WATCHER_POLLING__ACTIVE_S": "10", "watcher_logging__level": "DEBUG"},
        secrets_dirs=[],
    )
    assert settings.polling.active_s == 10
    assert settings.polling.idle_s == 90  # from the file, deep-merged
    assert settings.logging.level == "debug"


def test_env_json_for_lists_and_nested_dicts() -> None:
    env = {
        "WATCHER_CLOUD__REGION": "ap-southeast-1",
        "WATCHER_CLOUD__PROJECT_ID": "p" * 32,
        "WATCHER_TARGETS": '[{"cluster_id": "c1", "labels": {"team": "a"}}]',
        "WATCHER_NOTIFY__URLS": (
            '["json://127.0.0.1:9/x", {"url": "mailto://h?to=a@b", "tags": "x, Y"}]'
        ),
        "WATCHER_POLICY__STALL__CLUSTER": "3h",
    }
    settings = load_settings(None, env=env, secrets_dirs=[], default_path=None)
    assert settings.targets[0].labels == {"team": "a"}
    assert settings.targets[0].name == "c1"
    assert [u.tags for u in settings.notify.urls] == [(), ("x", "y")]
    # The lower-cased env key lands on the canonical task type; the engine's lookup
    # (core Policy.stall_threshold) is then exact, as the API spells task types.
    assert "cluster" not in settings.policy.stall
    policy = settings.policy.to_policy()
    assert policy.stall_threshold("Cluster") == timedelta(hours=3)
    assert policy.stall_threshold("PreCheck") == timedelta(minutes=30)
    assert policy.stall_threshold("NewTaskType") == timedelta(hours=1)


def test_init_kwargs_beat_env(write_toml: Callable[[str], Path]) -> None:
    path = write_toml(MINIMAL)
    settings = load_settings(
        path,
        env={"WATCHER_POLLING__ACTIVE_S": "10"},
        secrets_dirs=[],
        polling={"active_s": 3},
    )
    assert settings.polling.active_s == 3


def test_secret_files_from_credentials_directory(
    write_toml: Callable[[str], Path], secrets_dir: Path
) -> None:
    (secrets_dir / "credentials__secret_key").write_text(SK)
    (secrets_dir / "watcher_http__token").write_text("token-from-a-prefixed-file")
    path = write_toml(MINIMAL + '\n[credentials]\naccess_key = "AKFROMFILE01"\n')
    # secrets_dirs=None: the default list, which ends with $CREDENTIALS_DIRECTORY from env.
    settings = load_settings(
        path, env={"CREDENTIALS_DIRECTORY": str(secrets_dir)}, default_path=None
    )
    assert settings.credentials.secret_key is not None
    assert settings.credentials.secret_key.get_secret_value() == SK
    assert settings.http.token is not None
    assert settings.http.token.get_secret_value() == "token-from-a-prefixed-file"


def test_later_secret_directory_wins_and_env_beats_files(
    write_toml: Callable[[str], Path], tmp_path: Path
) -> None:
    first, second = tmp_path / "etc", tmp_path / "systemd"
    first.mkdir()
    second.mkdir()
    (first / "credentials__password").write_text("from-etc")
    (second / "credentials__password").write_text("from-systemd")
    path = write_toml(
        MINIMAL + '\n[credentials]\nusername = "u"\ndomain = "d"\npassword = "from-file"\n'
    )
    settings = load_settings(path, env={}, secrets_dirs=[first, second, tmp_path / "missing"])
    assert settings.credentials.password is not None
    assert settings.credentials.password.get_secret_value() == "from-systemd"
    assert settings.credentials.effective_kind == "password"
    settings = load_settings(
        path, env={"WATCHER_CREDENTIALS__PASSWORD": "from-env"}, secrets_dirs=[first, second]
    )
    assert settings.credentials.password is not None
    assert settings.credentials.password.get_secret_value() == "from-env"


def test_sdk_env_names_are_a_fallback() -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": "SDKAK0000000001",
        "HUAWEICLOUD_SDK_SK": "sdk-secret",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": "sdk-sts",
        "HUAWEICLOUD_SDK_PROJECT_ID": "sdkproject",
        "WATCHER_CLOUD__REGION": "ap-southeast-1",
        "WATCHER_TARGETS": '[{"cluster_id": "c1"}, {"cluster_id": "c2", "project_id": "own"}]',
    }
    settings = load_settings(None, env=env, secrets_dirs=[], default_path=None)
    creds = settings.credentials
    assert creds.effective_kind == "aksk"
    assert creds.access_key == "SDKAK0000000001"
    assert creds.secret_key is not None
    assert creds.secret_key.get_secret_value() == "sdk-secret"
    assert creds.security_token is not None
    assert [t.project_id for t in settings.targets] == ["sdkproject", "own"]


def test_sdk_env_never_mixes_with_the_watchers_own_keys() -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": "SDKAK0000000001",
        "HUAWEICLOUD_SDK_SK": "sdk-secret",
        "WATCHER_CREDENTIALS__ACCESS_KEY": "MYAK000000001",
        "WATCHER_CREDENTIALS__SECRET_KEY": "my-secret",
    }
    creds = load_settings(None, env=env, secrets_dirs=[], default_path=None).credentials
    assert creds.access_key == "MYAK000000001"
    assert creds.secret_key is not None
    assert creds.secret_key.get_secret_value() == "my-secret"
    assert creds.security_token is None
    # Only half of the watcher's pair: an error, not a silent mix with the SDK's key.
    del env["WATCHER_CREDENTIALS__SECRET_KEY"]
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env, secrets_dirs=[], default_path=None)
    assert any(p.startswith("credentials.secret_key:") for p in info.value.problems)


def test_sdk_env_is_ignored_for_password_credentials() -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": "SDKAK0000000001",
        "HUAWEICLOUD_SDK_SK": "sdk-secret",
        "WATCHER_CREDENTIALS__KIND": "password",
        "WATCHER_CREDENTIALS__USERNAME": "u",
        "WATCHER_CREDENTIALS__PASSWORD": "p",
        "WATCHER_CREDENTIALS__DOMAIN": "d",
    }
    creds = load_settings(None, env=env, secrets_dirs=[], default_path=None).credentials
    assert creds.effective_kind == "password"
    assert creds.access_key is None


def test_auto_credentials_fall_back_to_metadata() -> None:
    creds = load_settings(None, env={}, secrets_dirs=[], default_path=None).credentials
    assert creds.kind == "auto"
    assert creds.effective_kind == "metadata"
    assert creds.metadata_endpoint == "http://169.254.169.254"


def test_state_directory_from_systemd_unless_configured(
    write_toml: Callable[[str], Path],
) -> None:
    env = {"STATE_DIRECTORY": "/var/lib/private/cce-upgrade-watcher:/var/lib/other"}
    settings = load_settings(None, env=env, secrets_dirs=[], default_path=None)
    assert settings.state_dir == Path("/var/lib/private/cce-upgrade-watcher")
    path = write_toml('state_dir = "/srv/watcher"\n')
    assert load_settings(path, env=env, secrets_dirs=[]).state_dir == Path("/srv/watcher")
    assert load_settings(None, env={}, secrets_dirs=[], default_path=None).state_dir == Path(
        "/var/lib/cce-upgrade-watcher"
    )


def test_config_path_from_watcher_config_env(write_toml: Callable[[str], Path]) -> None:
    path = write_toml(MINIMAL)
    settings = load_settings(None, env={"WATCHER_CONFIG": str(path)}, secrets_dirs=[])
    assert settings.polling.active_s == 20
    assert settings.config_path == path


def test_missing_default_file_is_fine_but_explicit_paths_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    settings = load_settings(None, env={}, secrets_dirs=[], default_path=missing)
    assert settings.config_path is None
    with pytest.raises(ConfigError) as info:
        load_settings(missing, env={}, secrets_dirs=[])
    assert info.value.problems == [f"config file {missing}: not found"]
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"WATCHER_CONFIG": str(missing)}, secrets_dirs=[])
    assert info.value.problems == [f"config file {missing}: not found"]


def test_env_argument_isolates_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_POLLING__ACTIVE_S", "7")
    monkeypatch.setenv("WATCHER_BOGUS", "1")
    settings = load_settings(None, env={}, secrets_dirs=[], default_path=None)
    assert settings.polling.active_s == 15


def test_settings_are_frozen() -> None:
    settings = load_settings(None, env={}, secrets_dirs=[], default_path=None)
    with pytest.raises(ValidationError):
        settings.polling = settings.polling  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.polling.active_s = 1  # type: ignore[misc]


def test_settings_from_mapping_reads_no_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_POLLING__ACTIVE_S", "7")
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "SDKAK0000000001")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "sdk-secret")
    settings = settings_from_mapping(
        {"targets": [{"cluster_id": "c1", "region": "r1", "project_id": "p1"}]}
    )
    assert settings.polling.active_s == 15
    assert settings.targets[0].kind == "cluster"
    assert settings.credentials.effective_kind == "metadata"


def test_endpoints_are_derived_from_the_region() -> None:
    cloud = settings_from_mapping({}).cloud
    assert (
        cloud.cce_endpoint_for("ap-southeast-1") == "https://cce.ap-southeast-1.myhuaweicloud.com"
    )
    assert cloud.iam_endpoint_for("cn-north-4") == "https://iam.cn-north-4.myhuaweicloud.com"
    assert cloud.cce_endpoint_for("eu-west-101") == "https://cce.eu-west-101.myhuaweicloud.eu"
    assert cloud.iam_endpoint_for("eu-west-101") == "https://iam.eu-west-101.myhuaweicloud.eu"
    assert cloud.cce_endpoint_for("eu-west-0") == "https://cce.eu-west-0.myhuaweicloud.com"


def test_every_documented_secret_file_name_is_read(tmp_path: Path) -> None:
    """The README ("Configure") lists these file names; each one must work, with
    or without the watcher_ prefix, including the (not secret) access key."""
    values = {
        "credentials__access_key": "AKFROMFILE0001",
        "credentials__secret_key": "sk-from-file-0001",
        "credentials__security_token": "sts-from-file-0001",
        "watcher_http__token": "token-from-file-0123456789",
    }
    for name, value in values.items():
        (tmp_path / name).write_text(value + "\n")
    settings = load_settings(None, env={}, secrets_dirs=[tmp_path], default_path=None)
    creds = settings.credentials
    assert creds.access_key == values["credentials__access_key"]
    assert creds.secret_key is not None
    assert creds.secret_key.get_secret_value() == values["credentials__secret_key"]
    assert creds.security_token is not None
    assert creds.security_token.get_secret_value() == values["credentials__security_token"]
    assert settings.http.token is not None
    assert settings.http.token.get_secret_value() == values["watcher_http__token"]
