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


def _config(
    tmp_path: Path, *, region: str = "ap-southeast-3", url: str = "json://127.0.0.1:9/x"
) -> Path:
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
    [
        ("AP-SOUTHEAST-3", "ap-southeast-3"),
        ("ap_southeast_3", "ap-southeast-3"),
        ("Ap-Southeast-l", "ap-southeast-1"),
    ],
)
def test_malformed_region_gets_a_suggestion(tmp_path: Path, region: str, meant: str) -> None:
    result = _validate(_config(tmp_path, region=region))
    assert result.returncode == 2
    assert "WATCHER_CLOUD__REGION" in result.stderr
    assert f"did you mean '{meant}'" in result.stderr, result.stderr


def test_region_placeholder_is_named_a_placeholder(tmp_path: Path) -> None:
    result = _validate(_config(tmp_path, region="REPLACE-REGION"))
    assert result.returncode == 2
    assert "placeholder" in result.stderr and "WATCHER_CLOUD__REGION" in result.stderr, (
        result.stderr
    )


# --------------------------------------------------------------------- silences over HTTP


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"target": "*", "start": "2099-01-01T00:00Z"}, "did you mean 'starts_at'"),
        ({"cluster": "b4b9e60f-8aa2-11ee-af09-0255ac10004f"}, "did you mean 'cluster_id'"),
        ({"target": "*", "bogus": 1}, "unknown field 'bogus'"),
        ({"kinds": ["task.faild"]}, "did you mean 'task.failed'"),
        ({"kinds": "nope.*"}, "matches no event kind"),
    ],
)
async def test_a_silence_with_a_misspelt_field_or_kind_is_refused(
    tmp_path: Path, body: dict[str, object], said: str
) -> None:
    import aiohttp

    from tests.e2e.harness import running
    from tests.e2e.test_silences_acks import http_url, with_http

    raw: dict[str, object] = {}
    async with (
        running(tmp_path, ["clean_upgrade"], configure=with_http(None, raw)) as h,
        aiohttp.ClientSession() as session,
    ):
        url = f"{http_url(h)}/api/v1/silences"
        full = {"for": "1h", "creator": "qa", "comment": "probe", **body}
        async with session.post(url, json=full) as resp:
            assert resp.status == 400, await resp.text()
            assert said in (await resp.json())["error"]
        async with session.get(url) as resp:
            assert (await resp.json())["silences"] == []  # nothing was stored


def test_cli_silence_add_refuses_a_kind_that_matches_nothing(tmp_path: Path) -> None:
    path = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "silence", "add", "--config", str(path),
         "--kind", "task.faild", "--for", "1h", "--comment", "probe"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "did you mean 'task.failed'" in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["silence", "list"],
        ["silence", "add", "--target", "*", "--for", "1h", "--comment", "probe"],
        ["healthcheck", "--timeout", "1"],
    ],
)
def test_local_commands_work_without_the_cloud_secret(tmp_path: Path, args: list[str]) -> None:
    # On a systemd host only the service gets credentials__secret_key; the operator's shell
    # has no secret, yet silence/ack/healthcheck touch only the state store or loopback.
    path = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    result = subprocess.run(
        [sys.executable, "-m", "watcher", *args, "--config", str(path)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert "credentials" not in result.stderr, result.stderr
    if args[0] != "healthcheck":  # no daemon runs: healthcheck says so and exits 1
        assert result.returncode == 0, result.stderr


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env["WATCHER_CREDENTIALS__SECRET_KEY"] = "sk"
    return subprocess.run(
        [sys.executable, "-m", "watcher", *args, "--config", str(tmp_path / "config.toml")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_routes_test_honours_silences_added_at_run_time(tmp_path: Path) -> None:
    _config(tmp_path)
    event = ["--kind", "task.failed", "--severity", "failure", "--target", "t1"]
    assert _cli(tmp_path, "routes", "test", *event).returncode == 0
    added = _cli(tmp_path, "silence", "add", "--target", "t1", "--kind", "task.*",
                 "--for", "1h", "--comment", "maintenance")  # fmt: skip
    assert added.returncode == 0, added.stderr
    muted = _cli(tmp_path, "routes", "test", *event)
    assert muted.returncode == 1, muted.stdout  # the daemon would send nothing
    assert "silenced by silence 1" in muted.stdout and "maintenance" in muted.stdout
    other = _cli(tmp_path, "routes", "test", "--kind", "workflow.failed", "--severity",
                 "failure", "--target", "t1")  # fmt: skip
    assert other.returncode == 0  # the silence matches task.* only


def test_routes_test_warns_about_a_target_name_that_is_not_configured(tmp_path: Path) -> None:
    _config(tmp_path)
    result = _cli(tmp_path, "routes", "test", "--kind", "task.failed", "--target", "t11")
    assert "no configured target is named 't11'; did you mean 't1'?" in result.stderr


async def _acli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    import asyncio

    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env["WATCHER_CREDENTIALS__SECRET_KEY"] = "sk"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher", *args, "--config", str(tmp_path / "config.toml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


@pytest.mark.timeout(90)
async def test_notify_test_says_silenced_and_fails_when_nothing_was_sent(tmp_path: Path) -> None:
    from tests.e2e.harness import WebhookReceiver

    hook = WebhookReceiver()
    await hook.start()
    try:
        _config(tmp_path, url=hook.url)
        event = ("--kind", "task.failed", "--severity", "failure", "--target", "t1")
        code, out, _ = await _acli(tmp_path, "notify-test", *event)
        assert code == 0 and out.startswith("ok mail"), out
        assert len(hook.bodies) == 1
        code, _, err = await _acli(
            tmp_path, "silence", "add", "--target", "t1", "--for", "1h", "--comment", "work"
        )
        assert code == 0, err
        code, out, _ = await _acli(tmp_path, "notify-test", *event)
        assert code == 1, out  # the daemon would send nothing: the test must not pass
        assert "silenced by silence 1" in out and "nothing was sent" in out
        assert len(hook.bodies) == 1
        code, out, _ = await _acli(tmp_path, "notify-test", "--notify", hook.url)
        assert code == 0 and len(hook.bodies) == 2, out  # --notify bypasses routes/silences
    finally:
        await hook.stop()


def test_demo_with_a_misspelt_scenario_suggests_the_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "demo", "--scenario", "rollbak_ends"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "did you mean 'rollback_ends'?" in result.stderr
    assert "PosixPath" not in result.stderr
