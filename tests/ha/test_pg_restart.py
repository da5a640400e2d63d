"""PostgreSQL restarted under load (issue 11 item 4): replicas reconnect, nothing is lost,
and ``/readyz`` says so while the database is away.

Needs a server the test may stop: a private cluster (tests/pg.py ``start_private_cluster``,
run as the ``postgres`` user when we are root), never the shared one. The upgrades keep
playing during the outage; a poll that cannot commit is not recorded, so the change it saw
is found again after the reconnect. A message sent during the outage whose "sent" could not
be recorded is the one duplicate allowed (the send-then-crash window, with the database in
the crash's place).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import pg
from tests.bench import blackbox as bb
from tests.e2e.ops_support import DaemonFactory, DaemonProcess
from tests.ha import support as ha

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

CLUSTERS = 6
POLLING = {
    "active_s": 0.5,
    "idle_s": 0.5,
    "failed_s": 0.5,
    "discovery_s": 1,
    "requests_per_second": 200,
    "burst": 200,
    "max_backoff_s": 1,
}
STEP_S = 1.0
STOP_AFTER = 2  # steps played before the database stops
OUTAGE_STEPS = 3  # steps played while it is away


@pytest.fixture(scope="module")
def own_server() -> Iterator[Any]:
    """A private cluster this test may stop and start (fails, never skips, without one)."""
    if os.environ.get(pg.SKIP_ENV, "") not in ("", "0"):
        pytest.skip(f"PostgreSQL tests skipped: {pg.SKIP_ENV} is set")
    try:
        server = pg.start_private_cluster()
    except pg.PgUnavailable as exc:
        pytest.fail(f"PostgreSQL unavailable: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


async def outage_seen(http: aiohttp.ClientSession, daemon: DaemonProcess) -> list[str]:
    """Poll /readyz until it answers 503 naming the store; its reasons (bounded)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, body = await ha.readyz(http, daemon)
        if status == 503 and any("store" in r for r in body.get("reasons", [])):
            return list(body["reasons"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"replica {daemon.pid}: /readyz never reported the store outage")


async def run_restart(tmp_path: Path, server: Any, replicas_n: int) -> ha.Verdict:
    hook = ha.KeyHook()
    await hook.start()
    factory = DaemonFactory(tmp_path)
    try:
        with (
            pg.private_database(server, "restart") as dsn,
            bb.bulk_simulator(CLUSTERS, 2, 1.0, "cluster") as info,
        ):
            sim_url, active = info["url"], list(info["active"])
            lease_s = 3 if replicas_n > 1 else None
            configs = [
                ha.replica_config(
                    info, tmp=tmp_path, index=i, hook=hook, lease_s=lease_s, polling=POLLING
                )
                for i in range(replicas_n)
            ]
            replicas = ha.spawn_replicas(factory, configs, dsn)
            async with aiohttp.ClientSession() as http:
                await ha.wait_all_ready(http, replicas, timeout=60)
                back_at = None
                step = 0
                while True:
                    if step == STOP_AFTER:
                        server.halt("fast")  # clean stop: every commit is kept
                        reasons = await asyncio.gather(*(outage_seen(http, d) for d in replicas))
                        assert all(reasons)
                    if step == STOP_AFTER + OUTAGE_STEPS:
                        server.start()
                        back_at = time.monotonic()
                        await ha.wait_all_ready(http, replicas, timeout=45)
                    async with http.post(f"{sim_url}/_sim/step", json={}) as resp:
                        changes = (await resp.json())["changes"]
                    if not changes:
                        break
                    step += 1
                    await asyncio.sleep(STEP_S)
                assert back_at is not None, f"the scenario ended after {step} steps"
                for daemon in replicas:
                    assert daemon.running(), daemon.log_text()[-2000:]
                await ha.wait_drained(hook, dsn, active=len(active), timeout=30)
                # The first copy of a message re-sent after the outage arrived before the
                # database came back: that is the window the duplicate check allows.
                verdict = ha.judge(hook, dsn, active_workflows=active, crash_at=back_at)
        return verdict
    finally:
        factory.close()
        await hook.stop()


async def test_one_replica_survives_a_database_restart(tmp_path: Path, own_server: Any) -> None:
    verdict = await run_restart(tmp_path, own_server, 1)
    print(f"\n{verdict.line('pg-restart (1 replica)')}")
    assert verdict.lost == 0, verdict.problems
    assert not verdict.problems, verdict.problems


async def test_three_replicas_survive_a_database_restart(tmp_path: Path, own_server: Any) -> None:
    verdict = await run_restart(tmp_path, own_server, 3)
    print(f"\n{verdict.line('pg-restart (3 replicas)')}")
    assert verdict.lost == 0, verdict.problems
    assert not verdict.problems, verdict.problems
