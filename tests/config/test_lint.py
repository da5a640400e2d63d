"""`config validate` catches the usual mistakes the schema lets through (issue 10, item 2).

Each problem names the key, its environment variable and, where one is close, a "did you
mean". Run through the real command (click's CliRunner), as an operator would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.config._support import EXAMPLE
from tests.config.test_show_and_cli import isolated_env
from watcher.config import load_settings
from watcher.config_cli import config
from watcher.core.regions import KNOWN_REGIONS

CLUSTER = "b4b9e60f-8aa2-11ee-af09-0255ac10004f"
WORKFLOW = "c271e39e-1a6e-4d3d-8fa8-2a36329c68d1"
PROJECT = "0123456789abcdef0123456789abcdef"


def base(
    *,
    region: str = "ap-southeast-3",
    project: str = PROJECT,
    cluster: str = CLUSTER,
    workflow: str = WORKFLOW,
    extra: str = "",
) -> str:
    return f"""
[cloud]
region = "{region}"
project_id = "{project}"
[credentials]
access_key = "AK0001"
secret_key = "sk-value-0001"
[[targets]]
name = "prod"
cluster_id = "{cluster}"
workflow_id = "{workflow}"
{extra}
"""


def validate(write_toml: Callable[[str], Path], text: str, **env: str) -> Result:
    path = write_toml(text)
    return CliRunner().invoke(config, ["validate", "--config", str(path)], env=isolated_env(**env))


def errors(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("config error: ")]


def warnings(result: Result) -> list[str]:
    """Warning lines, without the usual one about a config that has no URL."""
    return [
        line
        for line in result.stderr.splitlines()
        if line.startswith("config warning: ") and "no notification URLs" not in line
    ]


def test_a_clean_config_passes(write_toml: Callable[[str], Path]) -> None:
    result = validate(write_toml, base())
    assert result.exit_code == 0, result.output
    assert errors(result) == []


def test_a_region_typo_gets_a_suggestion(write_toml: Callable[[str], Path]) -> None:
    result = validate(write_toml, base(region="ap-southeast-l"))
    assert result.exit_code == 2
    (line,) = errors(result)
    assert line.startswith("config error: cloud.region: unknown Huawei Cloud region")
    assert "(env WATCHER_CLOUD__REGION)" in line
    assert line.endswith("did you mean 'ap-southeast-1'?")


def test_a_target_region_is_reported_on_the_target(write_toml: Callable[[str], Path]) -> None:
    text = base().replace('name = "prod"', 'name = "prod"\nregion = "eu-wets-0"')
    (line,) = errors(validate(write_toml, text))
    assert line.startswith("config error: targets.0.region: unknown")
    assert "(env WATCHER_TARGETS as JSON)" in line
    assert "did you mean 'eu-west-0'?" in line


def test_an_endpoint_override_allows_other_clouds_regions(
    write_toml: Callable[[str], Path],
) -> None:
    text = base(region="eu-de").replace(
        "[cloud]", '[cloud]\ncce_endpoint = "https://cce.eu-de.otc.t-systems.com"'
    )
    assert validate(write_toml, text).exit_code == 0


def test_ids_with_the_wrong_shape(write_toml: Callable[[str], Path]) -> None:
    text = base(
        project="01234567-89AB-cdef-0123-456789abcdef",
        cluster="my-cluster",
        workflow=WORKFLOW.replace("-", ""),
    )
    result = validate(write_toml, text)
    assert result.exit_code == 2
    lines = errors(result)
    assert len(lines) == 3
    project, cluster, workflow = lines
    assert project.startswith("config error: cloud.project_id: a project id is 32 hex")
    assert "(env WATCHER_CLOUD__PROJECT_ID)" in project
    assert project.endswith(f"did you mean {PROJECT!r}?")
    assert cluster.startswith("config error: targets.0.cluster_id: expected a UUID")
    assert "did you mean" not in cluster
    assert workflow.startswith("config error: targets.0.workflow_id: expected a UUID")
    assert workflow.endswith(f"did you mean {WORKFLOW!r}?")


ROUTES = """
[[notify.urls]]
name = "chat"
url = "json://127.0.0.1:9/hook"
tags = ["platform-chat"]
[[notify.routes]]
name = "failures"
tags = ["platfrom-chat"]
targets = ["prd"]
"""


def test_a_route_whose_tags_reach_no_url(write_toml: Callable[[str], Path]) -> None:
    result = validate(write_toml, base(extra=ROUTES))
    assert result.exit_code == 2
    (line,) = errors(result)
    assert line.startswith(
        "config error: notify.routes.0.tags: route 'failures': no notification URL has the"
        " tag(s) platfrom-chat"
    )
    assert "(env WATCHER_NOTIFY__ROUTES as JSON)" in line
    assert line.endswith("did you mean 'platform-chat'?")
    (warning,) = warnings(result)
    assert "notify.routes.0.targets: route 'failures': 'prd' matches no configured target" in (
        warning
    )
    assert warning.endswith("did you mean 'prod'?")


def test_a_url_tagged_always_satisfies_every_route(write_toml: Callable[[str], Path]) -> None:
    text = base(extra=ROUTES.replace('["platform-chat"]', '["always"]').replace("prd", "prod"))
    assert validate(write_toml, text).exit_code == 0


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("mailtos://corp.test?from=bot@corp.test&to=ops@corp.test", False),
        ("mailtos://bot@corp.test?to=ops@corp.test", False),
        ("mailtos://bot:pw-0001@corp.test?to=ops@corp.test", True),
        ("mailtos://smtp.corp.test?user=bot&pass=pw-0001&from=bot@corp.test&to=o@corp.test", True),
        ("mailto://smtp.corp.test?from=bot@corp.test&to=ops@corp.test", True),
    ],
)
def test_mailtos_without_a_login(write_toml: Callable[[str], Path], url: str, ok: bool) -> None:
    result = validate(write_toml, base(extra=f'[notify]\nurls = ["{url}"]'))
    assert result.exit_code == (0 if ok else 2), result.output
    if not ok:
        (line,) = errors(result)
        assert "notify.urls.0.url: mailtos-1: mailtos:// (SMTP over TLS) without a login" in line
        assert "did you mean mailtos://user:password@" in line
    assert "pw-0001" not in result.output


def test_a_placeholder_left_in_a_secret_is_named_not_shown(
    write_toml: Callable[[str], Path],
) -> None:
    result = validate(write_toml, base().replace("sk-value-0001", "REPLACE-WITH-SK-0001"))
    assert result.exit_code == 2
    (line,) = errors(result)
    assert line.startswith("config error: credentials.secret_key: still holds a placeholder")
    assert "SK-0001" not in result.output


def test_an_open_listen_address_without_a_token_is_a_warning(
    write_toml: Callable[[str], Path],
) -> None:
    result = validate(write_toml, base(extra='[http]\nlisten = "0.0.0.0:9851"'))
    assert result.exit_code == 0
    (line,) = warnings(result)
    assert line.startswith("config warning: http.listen: listens beyond loopback without a token")
    assert "(env WATCHER_HTTP__LISTEN)" in line
    token = '[http]\nlisten = "0.0.0.0:9851"\ntoken = "0123456789abcdef-token"'
    assert warnings(validate(write_toml, base(extra=token))) == []
    assert warnings(validate(write_toml, base(extra='[http]\nlisten = "[::1]:9851"'))) == []


def test_says_when_no_config_file_was_found(tmp_path: Path) -> None:
    targets = f'[{{"cluster_id": "{CLUSTER}", "workflow_id": "{WORKFLOW}"}}]'
    result = CliRunner().invoke(
        config,
        ["validate"],
        env=isolated_env(
            WATCHER_TARGETS=targets,
            WATCHER_CLOUD__REGION="ap-southeast-3",
            WATCHER_CLOUD__PROJECT_ID=PROJECT,
            WATCHER_STATE_DIR=str(tmp_path),
        ),
    )
    assert result.stderr.startswith("config note: no config file found")
    assert "/etc/cce-upgrade-watcher/config.toml does not exist" in result.stderr
    assert result.exit_code == 0, result.output


def test_the_example_names_agree_with_their_regions(secrets_dir: Path) -> None:
    """A newcomer copies the example: its names and display names must not contradict the
    region ids (ap-southeast-1 is Hong Kong, not Singapore)."""
    (secrets_dir / "credentials__secret_key").write_text("sk-0001")
    settings = load_settings(EXAMPLE, env={}, secrets_dirs=[secrets_dir])
    codes = {"Singapore": "sg", "Hong Kong": "hk"}
    for target in settings.targets:
        place = KNOWN_REGIONS[target.region]
        assert target.display_name and place in target.display_name, target.name
        assert target.name.endswith("-" + codes[place]), target.name


def test_an_unknown_key_gets_the_closest_known_one(write_toml: Callable[[str], Path]) -> None:
    text = base(extra='[polling]\nactiv_s = 3\n[[notify.routes]]\nkind = ["task.*"]\n')
    text = text.replace("cluster_id =", "cluster_idd =", 1).replace(
        'name = "prod"', f'name = "prod"\ncluster_id = "{CLUSTER}"'
    )
    result = validate(write_toml, text, WATCHER_POLLNG__ACTIVE_S="3")
    assert result.exit_code == 2
    lines = errors(result)
    assert (
        "config error: polling.activ_s: unknown key (env WATCHER_POLLING__ACTIV_S);"
        " did you mean 'active_s'?" in lines
    )
    assert (
        "config error: targets.0.cluster_idd: unknown key (env WATCHER_TARGETS as JSON);"
        " did you mean 'cluster_id'?" in lines
    )
    assert any(
        line.startswith("config error: notify.routes.0.kind:")
        and line.endswith("did you mean 'kinds'?")
        for line in lines
    )
    assert any(
        line.startswith("config error: pollng: unknown key (env WATCHER_POLLNG__ACTIVE_S)")
        and line.endswith("did you mean 'polling'?")
        for line in lines
    )
