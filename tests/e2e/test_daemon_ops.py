"""The real daemon as a subprocess: every HTTP endpoint, the SSE stream, sd_notify, SIGTERM.

`cce-upgrade-watcher run --config <tmp toml>` polls a simulator that lives in the test
process (autoplay off: the test steps the scenario), with its state in tmp_path and its HTTP
server on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.ops_support import (
    TOKEN,
    DaemonFactory,
    DaemonProcess,
    SseClient,
    all_events,
    daemon_config,
    eventually,
    free_port,
    get_json,
    open_sse,
    wait_healthy,
    workflows,
)
from watcher.simulator import Simulator, start_simulator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


def spawn(daemons: DaemonFactory, sim: Simulator, tmp_path: Path, **kw: object) -> DaemonProcess:
    config = daemon_config(sim, state_dir=tmp_path / "state", port=free_port(), **kw)  # type: ignore[arg-type]
    return daemons.spawn(config)


async def ready(session: aiohttp.ClientSession, daemon: DaemonProcess) -> None:
    async def check() -> bool:
        status, _ = await get_json(session, f"{daemon.url}/readyz")
        return status == 200

    await eventually(check, timeout=10)


async def sse_caught_up(
    session: aiohttp.ClientSession, daemon: DaemonProcess, *clients: SseClient, after: int
) -> list[int]:
    """Wait until the clients together hold exactly the stored seqs after ``after``."""
    stored: list[int] = []

    async def check() -> bool:
        nonlocal stored
        stored = [e["seq"] for e in await all_events(session, daemon) if e["seq"] > after]
        got = sorted(s for c in clients for s in c.seqs())
        return bool(stored) and got == stored

    await eventually(check, timeout=8)
    return stored


# -- probes, metrics, API, auth --------------------------------------------------------------


async def test_endpoints_answer_as_specified(
    daemons: DaemonFactory, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    daemon = spawn(daemons, sim, tmp_path, token=TOKEN)
    [target] = sim.targets()
    wf_id = target["workflow_id"]
    await wait_healthy(session, daemon)

    # Probes need no token.
    assert await get_json(session, f"{daemon.url}/healthz") == (200, {"status": "ok"})
    await ready(session, daemon)
    assert await get_json(session, f"{daemon.url}/readyz") == (200, {"status": "ready"})

    # Move the workflow on so there is something to list, count and page through.
    for _ in range(4):  # PreCheck Running, Success; Snapshot Running, Success
        await sim.step()

    async def snapshot_done() -> bool:
        [wf] = await workflows(session, daemon)
        points = {p["task_type"]: p["status"] for p in wf["points"]}
        return points.get("Snapshot") == "Success"

    await eventually(snapshot_done, timeout=10)

    # /metrics: the cce_watcher_ families, with per-workflow phase and task gauges.
    async with session.get(f"{daemon.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    for family in (
        "cce_watcher_polls_total",
        "cce_watcher_poll_duration_seconds",
        "cce_watcher_api_request_seconds",
        "cce_watcher_events_total",
        "cce_watcher_outbox_pending",
        "cce_watcher_dead_letters",
        "cce_watcher_scheduler_up 1.0",
    ):
        assert family in text, family
    phase = re.search(
        rf'^cce_watcher_workflow_phase\{{[^}}]*workflow="{wf_id}"[^}}]*\}} 1\.0$', text, re.M
    )
    assert phase is not None, text
    assert f'target="{target["name"]}"' in phase.group(0)
    task_lines = [
        line
        for line in text.splitlines()
        if line.startswith("cce_watcher_task_status{") and f'workflow="{wf_id}"' in line
    ]
    assert any(
        'task="Snapshot"' in line and 'status="Success"' in line and line.endswith(" 1.0")
        for line in task_lines
    ), task_lines
    assert re.search(r'^cce_watcher_polls_total\{result="ok",target="[^"]+"\} [1-9]', text, re.M)

    # /api/ needs the bearer token; the probes and metrics above did not.
    async with session.get(f"{daemon.url}/api/v1/workflows") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    async with session.get(
        f"{daemon.url}/api/v1/events", headers={"Authorization": "Bearer wrong-token-0000000000"}
    ) as resp:
        assert resp.status == 401
        assert "invalid_token" in resp.headers["WWW-Authenticate"]
    async with session.get(f"{daemon.url}/api/v1/events/stream") as resp:
        assert resp.status == 401

    # /api/v1/workflows: the workflow with its points and lines.
    [wf] = await workflows(session, daemon)
    assert wf["workflow_id"] == wf_id
    assert wf["target"]["name"] == target["name"]
    assert wf["target"]["cluster_id"] == target["cluster_id"]
    types = [p["task_type"] for p in wf["points"]]
    assert {"PreCheck", "Snapshot", "Cluster", "PostCheck"} <= set(types)
    statuses = {p["task_type"]: p["status"] for p in wf["points"]}
    assert statuses["PreCheck"] == "Success"
    assert statuses["Snapshot"] == "Success"
    assert wf["lines"], wf

    # /api/v1/events: all of them, then the same pages by cursor.
    everything = await all_events(session, daemon)
    assert len(everything) >= 4, everything
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for event in everything:
        assert event["specversion"] == "1.0"
        assert event["type"].startswith("com.huaweicloud.cce.upgrade.")
        assert event["subject"] == wf_id
    paged: list[int] = []
    cursor = seqs[0]
    while True:
        status, body = await get_json(
            session, f"{daemon.url}/api/v1/events?after={cursor}&limit=2", daemon.headers()
        )
        assert status == 200
        assert len(body["events"]) <= 2
        if not body["events"]:
            assert body["next"] == cursor
            break
        paged += [e["seq"] for e in body["events"]]
        assert body["next"] == body["events"][-1]["seq"]
        cursor = body["next"]
    assert paged == seqs[1:]
    status, body = await get_json(
        session, f"{daemon.url}/api/v1/events?after=abc", daemon.headers()
    )
    assert status == 400

    # The page itself is open (it passes ?token= on to the API).
    async with session.get(f"{daemon.url}/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"


# -- the SSE stream ------------------------------------------------------------------------


async def test_sse_delivers_each_event_as_the_scenario_steps(
    daemons: DaemonFactory, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    daemon = spawn(daemons, sim, tmp_path, token=TOKEN)
    await wait_healthy(session, daemon)
    await ready(session, daemon)
    async with open_sse(session, daemon) as stream:
        start = await eventually(lambda: _hello(stream), timeout=5) - 1
        delivered_per_step: list[list[str]] = []
        before = len(stream.events())
        for _ in range(9):  # every step of clean_upgrade
            await sim.step()
            await sse_caught_up(session, daemon, stream, after=start)
            # Give a late poll a moment to show up, then re-check nothing is missing.
            await asyncio.sleep(0.6)
            await sse_caught_up(session, daemon, stream, after=start)
            delivered_per_step.append([e["data"]["kind"] for e in stream.events()[before:]])
            before = len(stream.events())
        stored = await sse_caught_up(session, daemon, stream, after=start)
    seqs = stream.seqs()
    assert seqs == stored, "every stored event once, in order"
    assert len(set(seqs)) == len(seqs)
    ids = [int(m["id"]) for m in stream.messages if m.get("event") not in {"hello", "bye"}]
    assert ids == seqs, "the SSE id is the event seq"
    kinds = [e["data"]["kind"] for e in stream.events()]
    assert "workflow.succeeded" in kinds, kinds
    for point in ("PreCheck", "Snapshot", "Cluster", "PostCheck"):
        succeeded = [
            e
            for e in stream.events()
            if e["data"]["kind"] == "task.succeeded" and point in json_text(e)
        ]
        assert succeeded, (point, kinds)
    # Each status change of the scenario produced its event right after its step.
    assert sum(1 for d in delivered_per_step if d) >= 7, delivered_per_step


def json_text(event: dict[str, object]) -> str:
    return json.dumps(event)


async def _hello(stream: SseClient) -> int | None:
    """The stream's starting point: the seq its hello carries (+1 so 0 is truthy)."""
    for m in stream.messages:
        if m.get("event") == "hello":
            return int(json.loads(m["data"])["seq"]) + 1
    return None


async def test_sse_reconnect_with_last_event_id_misses_and_repeats_nothing(
    daemons: DaemonFactory, sim: Simulator, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    daemon = spawn(daemons, sim, tmp_path)
    await wait_healthy(session, daemon)
    await ready(session, daemon)
    async with open_sse(session, daemon) as first:
        start = await eventually(lambda: _hello(first), timeout=5) - 1
        for _ in range(3):
            await sim.step()
        await sse_caught_up(session, daemon, first, after=start)
        last_id = first.last_id()
        assert last_id is not None and first.seqs()
    # Disconnected: the scenario moves on and the daemon commits events nobody streams.
    for _ in range(3):
        await sim.step()
    await eventually(lambda: _store_grew(session, daemon, int(last_id)), timeout=8)
    async with open_sse(session, daemon, last_event_id=last_id) as second:
        await sse_caught_up(session, daemon, first, second, after=start)
        # Live events after the replay arrive on the same connection.
        for _ in range(3):
            await sim.step()
        stored = await sse_caught_up(session, daemon, first, second, after=start)
    combined = first.seqs() + second.seqs()
    assert combined == stored, "none missed, none repeated, in order"
    assert second.seqs()[0] == int(last_id) + 1 or second.seqs()[0] > int(last_id)
    assert min(second.seqs()) > max(first.seqs())
    assert not any(m.get("event") == "hello" for m in second.messages), "a resume sends no hello"


async def _store_grew(session: aiohttp.ClientSession, daemon: DaemonProcess, after: int) -> bool:
    return any(e["seq"] > after for e in await all_events(session, daemon))


# -- systemd notify and SIGTERM ------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    short_dir = None
    if len(str(path)) > 100:  # AF_UNIX paths are limited to 108 bytes
        short_dir = tempfile.TemporaryDirectory(prefix="ntf", dir="/tmp")
        path = Path(short_dir.name) / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    try:
        yield sock, str(path)
    finally:
        sock.close()
        if short_dir is not None:
            short_dir.cleanup()


def drain(sock: socket.socket, into: list[list[str]]) -> None:
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        into.append(data.decode().split("\n"))


async def until_datagram(
    sock: socket.socket, got: list[list[str]], line: str, *, count: int = 1, timeout: float = 10
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        drain(sock, got)
        if sum(line in d for d in got) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{line} x{count} not received; got {got}")


async def test_systemd_notify_protocol_and_clean_sigterm(
    daemons: DaemonFactory,
    sim: Simulator,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    # WATCHDOG_PID is unset: sdnotify then takes WATCHDOG_USEC as meant for this process
    # (sd_watchdog_enabled(3)); the child's pid is not known before it is spawned.
    config = daemon_config(sim, state_dir=tmp_path / "state", port=free_port())
    daemon = daemons.spawn(config, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    got: list[list[str]] = []
    await until_datagram(sock, got, "READY=1", timeout=15)
    ready_msg = next(d for d in got if "READY=1" in d)
    assert any(line.startswith("STATUS=watching 1 targets") for line in ready_msg)
    # HTTP is already up when READY=1 is sent.
    assert (await get_json(session, f"{daemon.url}/healthz"))[0] == 200
    # Pinged at half the 2 s watchdog interval (or more often): 2 pings within ~3 s.
    started = time.monotonic()
    await until_datagram(sock, got, "WATCHDOG=1", count=3, timeout=5)
    assert time.monotonic() - started < 4
    assert got.index(ready_msg) < next(i for i, d in enumerate(got) if "WATCHDOG=1" in d) + 1

    daemon.send(signal.SIGTERM)
    code = await daemon.wait_exit(timeout=6)
    drain(sock, got)
    assert code == 0, daemon.log_text()[-3000:]
    assert any("STOPPING=1" in d for d in got), got
    stop_at = next(i for i, d in enumerate(got) if "STOPPING=1" in d)
    assert not any("READY=1" in d for d in got[stop_at:])
    events = [line.get("event") for line in daemon.logs()]
    assert "daemon.stopping" in events and "daemon.stopped" in events, events
