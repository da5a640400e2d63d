"""SIGHUP on the real daemon: a broken config is refused, a good one applied, nothing lost.

The simulator serves two scenarios; the daemon starts with one target and a json://
webhook receiver. Broken configs (invalid TOML, an unknown key) must leave the daemon
running and polling on the old one, with the reasons logged; a good config adding the
second target must bring it into /api/v1/workflows within a polling interval, and every
delivery, including those pending at the reload, must reach the receiver.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import WebhookReceiver
from tests.e2e.ops_support import (
    CLI,
    DaemonFactory,
    DaemonProcess,
    all_events,
    daemon_config,
    eventually,
    free_port,
    get_json,
    to_toml,
    wait_healthy,
    workflows,
)
from watcher.simulator import Simulator, start_simulator

pytestmark = pytest.mark.timeout(60)

INTERVAL_S = 0.5


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    scenarios = ["clean_upgrade", "cluster_fails_rollback"]
    async with start_simulator(scenarios=scenarios, autoplay=False) as simulator:
        yield simulator


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    rec = WebhookReceiver()
    await rec.start()
    yield rec
    await rec.stop()


async def statuses(
    session: aiohttp.ClientSession, daemon: DaemonProcess, workflow_id: str
) -> dict[str, str]:
    for wf in await workflows(session, daemon):
        if wf["workflow_id"] == workflow_id:
            return {p["task_type"]: p["status"] for p in wf["points"]}
    return {}


async def status_is(
    session: aiohttp.ClientSession, daemon: DaemonProcess, wf_id: str, task: str, status: str
) -> None:
    async def check() -> bool:
        return (await statuses(session, daemon, wf_id)).get(task) == status

    await eventually(check, timeout=8)


def log_events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [line for line in daemon.logs() if line.get("event") == name]


async def sighup_rejected(daemon: DaemonProcess, config_text: str) -> list[str]:
    """Write a bad config, SIGHUP, wait for the rejection; return the logged problems."""
    seen = len(log_events(daemon, "reload.kept_previous_config"))
    daemon.config_path.write_text(config_text)
    daemon.send(signal.SIGHUP)

    async def rejected() -> bool:
        return len(log_events(daemon, "reload.kept_previous_config")) > seen

    await eventually(rejected, timeout=5)
    assert daemon.running()
    return [str(line.get("problem")) for line in log_events(daemon, "reload.rejected")]


async def test_sighup_refuses_broken_configs_and_applies_a_good_one(
    daemons: DaemonFactory, sim: Simulator, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    first, second = sim.targets()
    a, b = first["workflow_id"], second["workflow_id"]

    def config(targets: list[dict[str, Any]]) -> dict[str, Any]:
        return daemon_config(
            sim,
            state_dir=tmp_path / "state",
            port=port,
            targets=targets,
            notify_urls=[receiver.url],
            interval_s=INTERVAL_S,
        )

    port = free_port()
    daemon = daemons.spawn(config([first]))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        await wait_healthy(session, daemon)
        await status_is(session, daemon, a, "PreCheck", "Init")
        await sim.step(a)  # PreCheck Running
        await sim.step(a)  # PreCheck Success
        await status_is(session, daemon, a, "PreCheck", "Success")
        await eventually(lambda: _received(receiver, 1), timeout=8)

        # 1. Invalid TOML: refused, reasons logged, the daemon serves and polls on.
        problems = await sighup_rejected(daemon, "state_dir = \n[[targets]\nnot toml at all")
        assert problems and all(p and p != "None" for p in problems), problems
        assert any("toml" in p.lower() or "config" in p.lower() for p in problems), problems
        assert (await get_json(session, f"{daemon.url}/healthz"))[0] == 200
        await sim.step(a)  # Snapshot Running
        await status_is(session, daemon, a, "Snapshot", "Running")

        # 2. Valid TOML, unknown key: refused too, the key named in the log.
        wrong = config([first, second])
        wrong["polling"] = {**wrong["polling"], "bogus_interval": 3}
        problems = await sighup_rejected(daemon, to_toml(wrong))
        assert any("bogus_interval" in p for p in problems), problems
        await sim.step(a)  # Snapshot Success
        await status_is(session, daemon, a, "Snapshot", "Success")
        assert [wf["workflow_id"] for wf in await workflows(session, daemon)] == [a]
        assert not log_events(daemon, "reload.applied")

        # 3. A good config adding the second target, while deliveries are pending.
        receiver.hang_s = 0.4
        before = len(await all_events(session, daemon))
        await sim.step(a)  # Cluster Queuing
        await sim.step(a)  # Cluster Running
        await eventually(lambda: _grew(session, daemon, before + 1), timeout=8)
        daemon.config_path.write_text(to_toml(config([first, second])))
        sighup_at = time.monotonic()
        daemon.send(signal.SIGHUP)

        async def second_listed() -> bool:
            return b in [wf["workflow_id"] for wf in await workflows(session, daemon)]

        await eventually(second_listed, timeout=INTERVAL_S + 4, interval=0.05)
        appeared_after = time.monotonic() - sighup_at
        assert appeared_after < INTERVAL_S + 3, appeared_after
        [applied] = log_events(daemon, "reload.applied")
        assert applied["targets"] == 2 and applied["added"] == 1, applied
        assert daemon.running()

        # Both workflows keep moving and notifying after the reload.
        receiver.hang_s = 0.0
        await sim.step(a)  # Cluster Success
        await sim.step(b)
        await sim.step(b)
        await status_is(session, daemon, a, "Cluster", "Success")
        stored = await all_events(session, daemon)
        assert any(e["subject"] == b for e in stored), [e["subject"] for e in stored]

        async def outbox_empty() -> bool:
            async with session.get(f"{daemon.url}/metrics") as resp:
                text = await resp.text()
            return (
                "cce_watcher_outbox_pending 0.0" in text and "cce_watcher_dead_letters 0.0" in text
            )

        await eventually(outbox_empty, timeout=10)
        await asyncio.sleep(1.5)  # a last poll round: nothing new may remain unsent
        await eventually(outbox_empty, timeout=10)

    daemon.send(signal.SIGTERM)
    assert await daemon.wait_exit(timeout=8) == 0

    # Every delivery of every event, before and after both reloads, was sent exactly once.
    out = subprocess.run(
        [str(CLI), "events", "--json", "--limit", "1000", "--config", str(daemon.config_path)],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
        cwd=tmp_path,
    )
    rows = json.loads(out.stdout)
    deliveries = [d for row in rows for d in row["deliveries"]]
    assert deliveries, rows
    assert {d["state"] for d in deliveries} == {"sent"}, deliveries
    # One delivery may carry several events (a batch), so match by text, not by count.
    received = [f"{body.get('title')}\n{body.get('message')}" for body in receiver.bodies]
    for row in rows:
        if row["deliveries"]:
            message = row["event"]["message"]
            assert any(message in text for text in received), (message, received)
    duplicates = [text for text in received if received.count(text) > 1]
    assert not duplicates, f"sent more than once: {duplicates}"
    subjects = {row["event"].get("workflow_id") for row in rows if row["deliveries"]}
    assert {a, b} <= subjects, subjects


async def _received(receiver: WebhookReceiver, count: int) -> bool:
    return len(receiver.bodies) >= count


async def _grew(session: aiohttp.ClientSession, daemon: DaemonProcess, count: int) -> bool:
    return len(await all_events(session, daemon)) >= count
