"""`routes test` and `notify-test --kind/--severity/--target/--notify` (issue 10, item 4).

Run as real subprocesses; notify-test delivers to a real local webhook receiver.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import WebhookReceiver
from tests.e2e.test_cli_commands import cli, write_toml

TOKEN = "PLANTEDHOOKTOKEN42"


def routed_config(tmp_path: Path, hook_url: str) -> Path:
    return write_toml(
        tmp_path / "config.toml",
        {
            "state_dir": tmp_path / "state",
            "cloud": {"region": "ap-southeast-3", "project_id": "0123456789abcdef0123456789abcdef"},
            "targets": [
                {
                    "name": "prod-sg",
                    "cluster_id": "b4b9e60f-8aa2-11ee-af09-0255ac10004f",
                    "labels": {"env": "prod"},
                }
            ],
            "notify": {
                "urls": [
                    {"url": f"{hook_url}?token={TOKEN}", "name": "team-hook", "tags": ["team"]},
                    {"url": "console://", "name": "pager", "tags": ["oncall"]},
                ],
                "routes": [
                    {"name": "team-all", "tags": ["team"], "exclude_kinds": ["task.queued"]},
                    {
                        "name": "oncall-failures",
                        "min_severity": "failure",
                        "labels": {"env": "prod"},
                        "tags": ["oncall"],
                    },
                ],
            },
        },
    )


async def test_routes_test_prints_matching_routes_and_receivers(tmp_path: Path) -> None:
    config = str(routed_config(tmp_path, "json://127.0.0.1:9/hook"))
    code, out, err = await cli(
        "routes",
        "test",
        "--config",
        config,
        "--kind",
        "task.failed",
        "--severity",
        "failure",
        "--target",
        "prod-sg",
    )
    assert code == 0, err
    assert "route team-all: matches" in out
    assert "route oncall-failures: matches" in out
    assert "-> team-hook (json://" in out and "via team-all" in out
    assert "-> pager (console://) via oncall-failures" in out
    assert TOKEN not in out + err
    # A label that does not match keeps the pager out.
    code, out, _ = await cli(
        "routes",
        "test",
        "--config",
        config,
        "--kind",
        "task.failed",
        "--severity",
        "failure",
        "--target",
        "prod-sg",
        "--label",
        "env=dev",
    )
    assert code == 0
    assert "route oncall-failures: no match" in out
    assert "-> pager" not in out
    # An excluded kind reaches nobody: exit 1.
    code, out, _ = await cli(
        "routes", "test", "--config", config, "--kind", "task.queued", "--severity", "info"
    )
    assert code == 1
    assert "no URL would receive this event" in out
    code, _, err = await cli("routes", "test", "--config", config, "--kind", "task.fail")
    assert code == 2
    assert "unknown event kind 'task.fail'" in err


async def test_notify_test_follows_the_real_routes_and_direct_urls(tmp_path: Path) -> None:
    hook = WebhookReceiver()
    await hook.start()
    try:
        config = str(routed_config(tmp_path, hook.url))
        code, out, err = await cli(
            "notify-test",
            "--config",
            config,
            "--kind",
            "task.failed",
            "--severity",
            "warning",
            "--target",
            "prod-sg",
        )
        assert code == 0, err
        assert out.splitlines()[0].startswith("ok team-hook (json://")
        assert "skipped pager (console://): no route sends task.failed here" in out
        assert len(hook.bodies) == 1
        # --notify sends straight to the URL: routes do not apply, configured URLs get nothing.
        code, out, err = await cli(
            "notify-test", "--config", config, "--kind", "task.queued", "--notify", hook.url
        )
        assert code == 0, err
        assert len(hook.bodies) == 2
        assert "team-hook" not in out and "pager" not in out
        assert out.strip().splitlines()[-1].startswith("ok url-")
    finally:
        await hook.stop()
    assert TOKEN not in out + err
