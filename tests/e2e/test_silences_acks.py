"""Silences and acknowledgements as an operator uses them, against a running daemon.

The daemon runs in-process on the simulator (its clock follows the simulator's, so
reminders come on demand); the CLI runs as a real subprocess writing the same SQLite file
while the daemon runs, and the API is called over real HTTP. The daemon must apply both
without a reload.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import Harness, free_port, running
from tests.e2e.ops_support import TOKEN, eventually, to_toml
from watcher.config import settings_from_mapping
from watcher.opsinput import silence_from

pytestmark = pytest.mark.timeout(90)

CLI = Path(sys.executable).with_name("cce-upgrade-watcher")
SCENARIOS = Path(__file__).parents[2] / "watcher" / "simulator" / "scenarios"


def with_http(token: str | None, keep: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A ``configure`` hook that serves HTTP and keeps the final raw config in ``keep``."""

    def configure(raw: dict[str, Any]) -> None:
        http: dict[str, Any] = {"enabled": True, "listen": f"127.0.0.1:{free_port()}"}
        if token is not None:
            http["token"] = token
        raw["http"] = http
        raw["policy"] = {**raw["policy"], "repeat_interval": "1h"}
        keep.update(raw)

    return configure


async def cli(tmp_path: Path, raw: dict[str, Any], *args: str) -> tuple[int, str, str]:
    """Run ``cce-upgrade-watcher ARGS --config <raw as TOML>`` as a separate process."""
    config = tmp_path / "cli.toml"
    config.write_text(to_toml(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "CCE_WATCHER_"))}
    proc = await asyncio.create_subprocess_exec(
        str(CLI),
        *args,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


def http_url(h: Harness) -> str:
    assert h.daemon.http is not None
    return h.daemon.http.url


async def metric(session: aiohttp.ClientSession, h: Harness, name: str) -> float:
    async with session.get(f"{http_url(h)}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def delivered_text(h: Harness) -> str:
    return "\n".join(str(b.get("message", "")) for b in h.webhook.bodies)


async def test_cli_silence_mutes_a_running_daemon_and_is_recorded(tmp_path: Path) -> None:
    raw: dict[str, Any] = {}
    async with (
        running(tmp_path, ["clean_upgrade"], configure=with_http(TOKEN, raw)) as h,
        aiohttp.ClientSession() as session,
    ):
        await h.settle()
        target = raw["targets"][0]["name"]
        code, out, err = await cli(
            tmp_path,
            raw,
            "silence",
            "add",
            "--target",
            target,
            "--kind",
            "task.*",
            "--for",
            "1h",
            "--creator",
            "alice",
            "--comment",
            "planned maintenance",
        )
        assert code == 0, err
        assert out.startswith("silence 1 added: target=") and "kinds=task.*" in out
        # No reload: the daemon's cache picks the CLI's write up by itself.
        await eventually(lambda: _has_silence(h), timeout=10)
        assert await metric(session, h, "cce_watcher_silences_active") == 1

        await h.step()  # PreCheck Running: workflow.started (sent) and task.started (muted)
        await h.settle()
        events = [s.event for s in await h.stored()]
        muted = [e for e in events if e.kind.startswith("task.")]
        assert muted and all(e.details.get("silenced_by") == "1" for e in muted)
        assert await h.daemon.store.deliveries_for([e.dedup_key for e in muted]) == []
        started = [e for e in events if e.kind == "workflow.started"]
        assert "silenced_by" not in started[0].details
        assert await h.daemon.store.deliveries_for([started[0].dedup_key])
        sent_before = len(h.webhook.bodies)

        code, out, err = await cli(tmp_path, raw, "events", "--json")
        assert code == 0, err
        shown = [r["event"] for r in json.loads(out) if r["event"]["kind"].startswith("task.")]
        assert shown and all(e["details"]["silenced_by"] == "1" for e in shown)
        code, out, _ = await cli(tmp_path, raw, "events")
        assert "(silenced by 1)" in out
        async with session.get(
            f"{http_url(h)}/api/v1/events?limit=100", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            api_events = [e["data"] for e in (await resp.json())["events"]]
        assert {
            e["details"].get("silenced_by") for e in api_events if e["kind"] == "task.started"
        } == {"1"}

        code, out, _ = await cli(tmp_path, raw, "silence", "list")
        assert code == 0 and "active" in out and "alice: planned maintenance" in out

        code, out, err = await cli(tmp_path, raw, "silence", "expire", "1")
        assert code == 0, err
        assert out.startswith("silence 1 expired")
        await eventually(lambda: _has_no_silence(h), timeout=10)
        assert await metric(session, h, "cce_watcher_silences_active") == 0
        code, out, _ = await cli(tmp_path, raw, "silence", "list")
        assert out.strip() == "no silences"
        code, out, _ = await cli(tmp_path, raw, "silence", "list", "--all")
        assert "expired" in out

        await h.step()  # PreCheck Success: a task event, delivered again
        await h.settle()
        assert len(h.webhook.bodies) > sent_before
        last = (await h.stored())[-1].event
        assert last.kind.startswith("task.") and "silenced_by" not in last.details

        code, _, err = await cli(tmp_path, raw, "silence", "expire", "42")
        assert code == 1 and "no silence 42" in err
        code, _, err = await cli(
            tmp_path, raw, "silence", "add", "--kind", "*", "--for", "2x", "--comment", "c"
        )
        assert code == 2 and "for: expected a duration" in err
        code, _, err = await cli(tmp_path, raw, "silence", "add", "--comment", "c")
        assert code == 2 and "give at least one matcher" in err


async def _has_silence(h: Harness) -> bool:
    return bool(h.daemon.ops.stored_silences)


async def _has_no_silence(h: Harness) -> bool:
    return not h.daemon.ops.stored_silences


async def test_silences_api_needs_the_token_to_write(tmp_path: Path) -> None:
    raw: dict[str, Any] = {}

    def configure(data: dict[str, Any]) -> None:
        with_http(TOKEN, raw)(data)
        data["silences"] = [{"target": "nothing-*", "until": "2999-01-01T00:00:00Z"}]

    async with (
        running(tmp_path, ["clean_upgrade"], configure=configure) as h,
        aiohttp.ClientSession() as session,
    ):
        url = f"{http_url(h)}/api/v1/silences"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"kinds": ["workflow.*"], "for": "30m", "creator": "bob", "comment": "deploy"}
        async with session.post(url, json=body) as resp:
            assert resp.status == 401
        async with session.post(url, json={**body, "comment": ""}, headers=auth) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "comment is required"
        async with session.post(url, json=body, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
            created = (await resp.json())["silence"]
        assert created["id"] == "1" and created["creator"] == "bob" and created["active"]
        assert h.daemon.ops.stored_silences  # applied at once, no refresh wait
        assert await metric(session, h, "cce_watcher_silences_active") == 2  # with config:1

        async with session.get(url, headers=auth) as resp:
            listed = (await resp.json())["silences"]
        assert [(s["id"], s["source"]) for s in listed] == [("config:1", "config"), ("1", "store")]

        async with session.delete(f"{url}/config:1", headers=auth) as resp:
            assert resp.status == 409
        async with session.delete(f"{url}/1") as resp:
            assert resp.status == 401
        async with session.delete(f"{url}/1", headers=auth) as resp:
            assert resp.status == 200
            assert (await resp.json())["silence"]["active"] is False
        async with session.delete(f"{url}/7", headers=auth) as resp:
            assert resp.status == 404
        assert not h.daemon.ops.stored_silences


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent for UDP connect
            address = str(sock.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_without_a_token_only_loopback_clients_may_write(tmp_path: Path) -> None:
    address = _non_loopback_address()
    port = free_port()

    def configure(data: dict[str, Any]) -> None:
        data["http"] = {"enabled": True, "listen": f"0.0.0.0:{port}"}

    async with (
        running(tmp_path, ["clean_upgrade"], configure=configure) as h,
        aiohttp.ClientSession() as session,
    ):
        await h.settle()
        body = {"target": "*", "for": "10m", "creator": "carol", "comment": "test"}
        async with session.post(f"http://127.0.0.1:{port}/api/v1/silences", json=body) as resp:
            assert resp.status == 201
        if address is None:
            pytest.skip("this host has no non-loopback IPv4 address to call from")
        remote = f"http://{address}:{port}"
        async with session.post(f"{remote}/api/v1/silences", json=body) as resp:
            assert resp.status == 403
            assert "http.token" in (await resp.json())["error"]
        async with session.post(f"{remote}/api/v1/acks", json={"workflow": "x", "by": "c"}) as r:
            assert r.status == 403
        async with session.get(f"{remote}/api/v1/silences") as resp:
            assert resp.status == 200  # reading stays open, like the rest of the API


def slow_rollback(tmp_path: Path) -> str:
    """cluster_fails_rollback with the rollback five hours after the failure, so the
    workflow stays failed (and reminded about) while the test acknowledges it."""
    text = (SCENARIOS / "cluster_fails_rollback.toml").read_text()
    assert "at = 38\n" in text and "at = 52\n" in text
    path = tmp_path / "slow_rollback.toml"
    path.write_text(text.replace("at = 38\n", "at = 18030\n").replace("at = 52\n", "at = 18044\n"))
    return str(path)


async def test_ack_stops_reminders_until_the_workflow_changes(tmp_path: Path) -> None:
    raw: dict[str, Any] = {}
    async with (
        running(tmp_path, [slow_rollback(tmp_path)], configure=with_http(TOKEN, raw)) as h,
        aiohttp.ClientSession() as session,
    ):
        await h.settle()
        for _ in range(6):  # ... Cluster Running, Cluster Failed: the workflow is Pending
            await h.step()
        await h.settle()
        await h.advance(3600)
        await h.settle()
        assert await _reminders(h) == 1  # without an ack the reminder comes

        workflow_id = raw["targets"][0]["workflow_id"]
        code, out, err = await cli(
            tmp_path, raw, "ack", workflow_id, "--by", "alice", "--note", "on it", "--for", "8h"
        )
        assert code == 0, err
        assert "acknowledged by alice: on it" in out
        await eventually(lambda: _acked(h), timeout=10)

        await h.advance(3600)
        await h.settle()
        await h.advance(3600)
        await h.settle()
        assert await _reminders(h) == 1  # acknowledged: no more reminders

        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(f"{http_url(h)}/api/v1/workflows", headers=auth) as resp:
            (view,) = (await resp.json())["workflows"]
        assert view["ack"]["by"] == "alice" and view["ack"]["note"] == "on it"
        async with session.get(f"{http_url(h)}/api/v1/acks", headers=auth) as resp:
            assert [a["by"] for a in (await resp.json())["acks"]] == ["alice"]

        sent = len(h.webhook.bodies)
        await h.step()  # the Rollback task starts: the workflow changed again
        await h.settle()
        new = h.webhook.bodies[sent:]
        assert new and "acknowledged by alice: on it" in str(new[0]["message"])
        assert h.daemon.ops.workflow_acks() == {}
        (stored,) = await h.daemon.store.list_acks()
        assert stored.ended_at is not None
        await h.step()
        await h.settle()
        assert "acknowledged by" not in str(h.webhook.bodies[-1]["message"])


async def test_ack_over_the_api(tmp_path: Path) -> None:
    raw: dict[str, Any] = {}
    async with (
        running(tmp_path, ["cluster_fails_rollback"], configure=with_http(TOKEN, raw)) as h,
        aiohttp.ClientSession() as session,
    ):
        await h.settle()
        url = f"{http_url(h)}/api/v1/acks"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        key = f"{raw['targets'][0]['name']}/{raw['targets'][0]['workflow_id']}"
        body = {"workflow": key, "by": "dave", "note": "looking", "for": "2h"}
        async with session.post(url, json=body) as resp:
            assert resp.status == 401
        async with session.post(url, json={**body, "workflow": "nope"}, headers=auth) as resp:
            assert resp.status == 400 and "no watched workflow nope" in (await resp.json())["error"]
        async with session.post(url, json=body, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
        assert set(h.daemon.ops.workflow_acks()) == {key}
        async with session.delete(f"{url}/{key}", headers=auth) as resp:
            assert resp.status == 200
        async with session.delete(f"{url}/{key}", headers=auth) as resp:
            assert resp.status == 404
        assert h.daemon.ops.workflow_acks() == {}


async def _reminders(h: Harness) -> int:
    return sum(1 for s in await h.stored() if s.event.kind == "workflow.reminder")


async def _acked(h: Harness) -> bool:
    return bool(h.daemon.ops.workflow_acks())


async def test_cli_names_the_store_it_cannot_open(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "watcher.sqlite3").mkdir(parents=True)  # a directory where the file belongs
    code, out, err = await cli(tmp_path, {"state_dir": str(state)}, "silence", "list")
    assert code == 2 and out == ""
    assert err.startswith(f"error: state store {state / 'watcher.sqlite3'}: ")
    code, _, err = await cli(tmp_path, {"state_dir": str(tmp_path / "s2")}, "ack", "wf-1")
    assert code == 2 and "no watched workflow wf-1" in err


async def test_a_reload_replaces_config_silences_and_keeps_stored_ones(tmp_path: Path) -> None:
    raw: dict[str, Any] = {}
    async with running(tmp_path, ["clean_upgrade"], configure=with_http(TOKEN, raw)) as h:
        await h.settle()
        await h.daemon.ops.add_silence(
            silence_from({"target": "*", "creator": "a", "comment": "kept"}, h.clock.now())
        )
        new = {**raw, "silences": [{"kinds": ["task.*"], "until": "2999-01-01T00:00:00Z"}]}
        await h.daemon.reload(settings_from_mapping(new))
        assert [s.id for s in h.daemon.ops.all_silences()] == ["config:1", "1"]
        await h.daemon.reload(settings_from_mapping(raw))
        assert [s.id for s in h.daemon.ops.all_silences()] == ["1"]
