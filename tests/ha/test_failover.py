"""Failover, proven (issue 11 item 4): SIGKILL the busiest of three replicas mid-upgrade.

Three replicas share one PostgreSQL database (a private one: tests/pg.py) and a bulk tenant
of clusters each mid-upgrade in the simulator child; the test steps every upgrade together,
kills the replica holding the most target leases after a few steps, lets the upgrades play
to their end and checks at the real webhook what operators would see (``support.judge``):
nothing lost, per-URL order, duplicates only from the send-then-crash window. Takeover is
the time from the kill until a survivor holds each of the victim's leases (lease rows).
Prints ``failover: N events, L lost, D duplicated, takeover p50/p99 X/Y s``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.bench import blackbox as bb
from tests.e2e.ops_support import DaemonFactory, DaemonProcess
from tests.ha import support as ha

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LEASE_S = 3
REPLICAS = 3
CLUSTERS = 12  # one upgrade each (and one finished workflow), 4 per replica
POLLING = {
    "active_s": 0.5,
    "idle_s": 0.5,
    "failed_s": 0.5,
    "discovery_s": 1,
    "requests_per_second": 200,
    "burst": 200,
    "max_backoff_s": 1,
}
STEP_S = 1.0  # between scenario steps: two polls of every upgrade
KILL_AFTER = 4  # steps before the one the kill follows: the cluster upgrade starts


async def split(dsn: str, replicas: list[DaemonProcess], targets: set[str]) -> dict[int, set[str]]:
    """Wait until every target is leased and the replicas hold shares within one of each
    other (bounded); pid -> targets held."""
    deadline = time.monotonic() + 4 * LEASE_S
    while True:
        held: dict[int, set[str]] = {d.pid: set() for d in replicas}
        for target, (holder, _) in ha.leases(dsn).items():
            if (who := ha.owner(holder, replicas)) is not None:
                held[who.pid].add(target)
        covered = set().union(*held.values()) >= targets
        sizes = [len(v) for v in held.values()]
        if (covered and max(sizes) - min(sizes) <= 1) or time.monotonic() > deadline:
            assert covered, f"targets never all leased: {held}"
            return held
        await asyncio.sleep(0.2)


async def sending(dsn: str, victim: DaemonProcess, replicas: list[DaemonProcess]) -> int:
    """Wait (bounded) until ``victim`` holds a delivery claim; how many it holds.

    One replica tends to send a whole queue (its dispatcher claims the next head first), so
    the victim is the sender in about one run of three; the wait is short for the others.
    """
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        mine = [h for h in ha.claims(dsn) if ha.owner(h, replicas) is victim]
        if mine:
            return len(mine)
        await asyncio.sleep(0.05)
    return 0


async def takeovers(
    dsn: str, victim: DaemonProcess, survivors: list[DaemonProcess], lost: set[str], t0: float
) -> list[float]:
    """Seconds from ``t0`` until a survivor holds each lease in ``lost`` (bounded)."""
    taken: dict[str, float] = {}
    while len(taken) < len(lost) and time.monotonic() - t0 < 5 * LEASE_S:
        for target, (holder, _) in ha.leases(dsn).items():
            if target in lost and target not in taken and ha.owner(holder, survivors):
                taken[target] = time.monotonic() - t0
        await asyncio.sleep(0.05)
    return [taken.get(t, float("inf")) for t in sorted(lost)]


async def test_sigkill_of_the_busiest_replica_loses_nothing(tmp_path: Path, pg_dsn: str) -> None:
    hook = ha.KeyHook()
    await hook.start()
    factory = DaemonFactory(tmp_path)
    try:
        with bb.bulk_simulator(CLUSTERS, 2, 1.0, "cluster") as info:
            sim_url, active = info["url"], list(info["active"])
            targets = {t["name"] for t in info["targets"]}
            configs = [
                ha.replica_config(
                    info, tmp=tmp_path, index=i, hook=hook, lease_s=LEASE_S, polling=POLLING
                )
                for i in range(REPLICAS)
            ]
            replicas = ha.spawn_replicas(factory, configs, pg_dsn)
            async with aiohttp.ClientSession() as http:
                await ha.wait_all_ready(http, replicas, timeout=60)
                held = await split(pg_dsn, replicas, targets)
                victim = max(replicas, key=lambda d: len(held[d.pid]))
                survivors = [d for d in replicas if d is not victim]
                crash_at, watch, in_flight = None, None, 0
                step = 0
                while True:
                    if step == KILL_AFTER:
                        polled = [await ha.ok_polls(http, d) for d in survivors]
                        # Slow answers keep this step's sends in flight: the kill comes
                        # while the victim has one if it is the sender (see ``sending``),
                        # inside the send-then-crash window.
                        hook.hang_s = 2.0
                    async with http.post(f"{sim_url}/_sim/step", json={}) as resp:
                        changes = (await resp.json())["changes"]
                    if not changes:
                        break  # the scenario played to its end
                    if step == KILL_AFTER:
                        in_flight = await sending(pg_dsn, victim, replicas)
                        victim.kill()  # SIGKILL to its process group
                        crash_at = time.monotonic()
                        hook.hang_s = 0.0
                        watch = asyncio.create_task(
                            takeovers(pg_dsn, victim, survivors, held[victim.pid], crash_at)
                        )
                    step += 1
                    await asyncio.sleep(STEP_S)
                assert watch is not None, f"the scenario ended after {step} steps, before the kill"
                takeover = await watch
                for daemon in survivors:
                    assert daemon.running(), daemon.log_text()[-2000:]
                await ha.wait_drained(hook, pg_dsn, active=len(active), timeout=30)
                # Each of the victim's targets was then polled, successfully, by a survivor.
                later = [await ha.ok_polls(http, d) for d in survivors]
                orphans = {
                    t
                    for t in held[victim.pid]
                    if not any(
                        a.get(t, 0) > b.get(t, 0) for a, b in zip(later, polled, strict=True)
                    )
                }
        verdict = ha.judge(hook, pg_dsn, active_workflows=active, crash_at=crash_at)
        verdict.takeover = takeover
        print(f"\n{verdict.line()} (victim had {in_flight} sends in flight)")
        assert verdict.lost == 0, verdict.problems
        assert not orphans, f"never polled by a survivor after the kill: {orphans}"
        assert not verdict.problems, verdict.problems
        assert verdict.events >= len(active) * 4, "too few events to prove anything"
        # A dead replica's targets are taken over within its lease (plus one renewal round).
        assert max(takeover) <= LEASE_S * 4 / 3 + 1.0, takeover
    finally:
        factory.close()
        await hook.stop()
