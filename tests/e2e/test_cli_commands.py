"""`events` and `notify-test` as an operator runs them: real subprocesses, real services."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

from tests.e2e.harness import WebhookReceiver
from tests.e2e.ops_support import to_toml
from watcher.config import settings_from_mapping
from watcher.runtime.app import App
from watcher.runtime.demo import demo_settings
from watcher.simulator import start_simulator

CLI = [sys.executable, "-m", "watcher"]


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(to_toml(data))
    return path


async def test_events_lists_what_the_daemon_stored_with_delivery_states(tmp_path: Path) -> None:
    hook = WebhookReceiver()
    await hook.start()
    url, received = hook.url, hook.bodies
    try:
        async with start_simulator(scenarios=["seed"], autoplay=False) as sim:
            acc = sim.account
            data = demo_settings(
                sim.url, sim.targets(), acc.access_key, acc.secret_key, str(tmp_path / "state"), []
            )
            data["notify"] = {"urls": [url]}
            daemon = App(settings_from_mapping(data))
            await daemon.start()
            try:
                for _ in range(100):
                    stats = await daemon.store.outbox_stats(daemon.clock.now())
                    if received and stats.pending == 0:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await daemon.stop(grace_s=2)
        config = write_toml(
            tmp_path / "config.toml", {"state_dir": tmp_path / "state", "notify": {"urls": [url]}}
        )
        code, out, err = await cli("events", "--config", str(config))
        assert code == 0, err
        assert "workflow.detected" in out
        assert "sent, 1 attempt\n" in out
        code, out, _ = await cli("events", "--config", str(config), "--json")
        (row,) = json.loads(out)
        assert row["event"]["kind"] == "workflow.detected"
        assert row["event"]["severity"] == "failure"  # the seed workflow is already Pending
        assert [d["state"] for d in row["deliveries"]] == ["sent"]
    finally:
        await hook.stop()
    assert len(received) == 1


async def test_events_without_a_store_says_so(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "config.toml",
        {"state_dir": tmp_path / "nothing", "notify": {"urls": ["console://"]}},
    )
    code, _, err = await cli("events", "--config", str(config))
    assert code == 2
    assert "no state store" in err


async def test_notify_test_reports_each_url_through_the_routes(tmp_path: Path) -> None:
    hook = WebhookReceiver()
    await hook.start()
    url, received = hook.url, hook.bodies
    dead = f"json://127.0.0.1:{closed_port()}/hook"
    try:
        config = write_toml(
            tmp_path / "config.toml",
            {
                "state_dir": tmp_path / "state",
                "notify": {
                    "urls": [
                        {"url": url, "name": "team-hook", "tags": ["team"]},
                        {"url": dead, "name": "dead-hook", "tags": ["team"]},
                        {"url": "console://", "name": "pager", "tags": ["pager"]},
                    ],
                    "routes": [
                        {"kinds": ["*"], "tags": ["team"]},
                        {"kinds": ["*"], "min_severity": "failure", "tags": ["pager"]},
                    ],
                },
            },
        )
        code, out, err = await cli("notify-test", "--config", str(config))
    finally:
        await hook.stop()
    assert code == 1, err  # one URL failed
    lines = out.splitlines()
    assert any(line.startswith("ok ") and "127.0.0.1" in line for line in lines)
    assert any(line.startswith("FAILED ") for line in lines)
    assert any(line.startswith("skipped ") for line in lines)  # the pager route wants failures
    assert len(received) == 1
    assert "test" in (received[0]["title"] + received[0]["message"]).lower()


async def test_a_url_apprise_rejects_is_a_config_error_for_validate_and_run(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        '[cloud]\nregion = "ap-southeast-1"\nproject_id = "0123456789abcdef0123456789abcdef"\n'
        'cce_endpoint = "http://127.0.0.1:1"\n'
        '[credentials]\naccess_key = "AK"\nsecret_key = "planted-sk-value-1234"\n'
        '[[targets]]\ncluster_id = "c1"\nworkflow_id = "w1"\n'
        '[notify]\nurls = ["console://", "nosuchscheme://planted-token@host"]\n'
        "[http]\nenabled = false\n"
    )
    for command in (["config", "validate"], ["run"]):
        code, out, err = await cli(*command, "--config", str(config))
        assert code == 2, (command, out, err)
        assert "notify.urls[1]" in err
        assert "apprise cannot parse" in err
        assert "Traceback" not in out + err
        assert "planted-token" not in out + err
        assert "planted-sk-value" not in out + err
