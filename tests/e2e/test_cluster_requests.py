"""One request per cluster (issue 12.1), counted at the simulator over real HTTP.

A cluster target is ONE scheduler job whose one ListUpgradeWorkFlows per run answers for
every workflow of the cluster; finished workflows cost a set entry, not a job; after a
restart the stored states of running workflows (a real SQLite file) are watched again
under that same one job.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.harness import base_settings
from watcher.config import settings_from_mapping
from watcher.runtime.app import App
from watcher.runtime.registry import WatchKey
from watcher.simulator import Simulator, start_simulator
from watcher.simulator.bulk import BulkTenant, populate, targets


async def poll_round(daemon: App, timeout: float = 10.0) -> None:
    """Run every job once now and wait for it (the harness's wait_polled, no clock sync)."""
    sched = daemon.scheduler
    deadline = time.monotonic() + timeout
    while sched.inflight:
        assert time.monotonic() < deadline, "a poll did not finish"
        await asyncio.sleep(0.01)
    before, jobs = sched.runs, len(sched.job_ids)
    daemon.poll_all_now()
    while sched.runs < before + jobs or sched.inflight:
        assert time.monotonic() < deadline, "the daemon did not poll"
        await asyncio.sleep(0.01)


class Requests:
    """Requests the simulator served since the last ``take``, by route."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.seen: Counter[str] = Counter()
        self.take()

    def take(self) -> dict[str, int]:
        now = Counter(self.sim.requests()["routes"])
        delta = now - self.seen
        self.seen = now
        return dict(delta)


def settings(sim: Simulator, tenant: BulkTenant, state_dir: Path) -> dict[str, Any]:
    raw = base_settings(sim, state_dir, ["console://"])
    raw["targets"] = targets(sim, tenant, "cluster")
    return raw


async def test_thirty_workflows_two_upgrading_cost_one_listing_per_poll(tmp_path: Path) -> None:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        tenant = populate(
            sim, clusters=1, per_cluster=30, active_fraction=1.0, active_per_cluster=2
        )
        daemon = App(settings_from_mapping(settings(sim, tenant, tmp_path / "state")))
        requests = Requests(sim)
        await daemon.start()
        try:
            await poll_round(daemon)
            [cluster] = daemon.discoveries.values()
            assert daemon.scheduler.job_ids == [cluster.key]  # one job, not one per workflow
            assert sorted(w.workflow_id for w in daemon.watches.values()) == sorted(tenant.active)
            assert len(cluster.known) == 30
            first = requests.take()
            assert first.get("cce.workflows.list") == 1
            assert "cce.workflows.show" not in first
            for _ in range(3):  # nothing changed: one listing per poll and nothing else
                await poll_round(daemon)
                assert requests.take() == {"cce.workflows.list": 1}
            cards = daemon.workflows()
            assert sorted(c["workflow_id"] for c in cards) == sorted(tenant.active)
            assert all(c["next_poll_at"] == cluster.next_poll_at.isoformat() for c in cards)
            ready, reasons = daemon.ready()
            assert ready, reasons
            target = cluster.target.name
            for wid in tenant.active:  # the gauges follow the diffs made from the listing
                labels = {"target": target, "workflow": wid, "phase": "Running"}
                assert daemon.registry.get_sample_value("cce_watcher_workflow_phase", labels) == 1
            polls = {"target": target, "result": "ok"}
            assert daemon.registry.get_sample_value("cce_watcher_polls_total", polls) == 4
            # The two upgrades end: one last look each, then they cost a set entry.
            while (await sim.step())["changes"]:
                pass
            for _ in range(3):
                await poll_round(daemon)
            assert daemon.watches == {}
            assert daemon.scheduler.job_ids == [cluster.key]
            assert cluster.live == {} and len(cluster.known) == 30
            finished = {w.workflow_id for w in daemon.watching.finished.values()}
            assert finished == set(tenant.active)
            assert {c["phase"] for c in daemon.workflows()} == {"Success"}
            requests.take()
            await poll_round(daemon)
            assert requests.take() == {"cce.workflows.list": 1}
        finally:
            await daemon.stop(grace_s=2)


async def test_a_restart_watches_the_running_workflows_again_under_the_one_job(
    tmp_path: Path,
) -> None:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        tenant = populate(sim, clusters=1, per_cluster=5, active_fraction=1.0)
        raw = settings(sim, tenant, tmp_path / "state")
        [running] = tenant.active
        key = str(WatchKey.workflow(raw["targets"][0]["name"], running))
        first = App(settings_from_mapping(raw))
        await first.start()
        try:
            await poll_round(first)
            assert list(first.watches) == [key]
            before = [e.event.kind for e in await first.store.recent_events(limit=100)]
            assert before.count("workflow.detected") == 1
        finally:
            await first.stop(grace_s=2)

        requests = Requests(sim)
        again = App(settings_from_mapping(raw))
        await again.start()
        try:
            # Before any poll: the stored state (SQLite) is back, under no job of its own.
            [cluster] = again.discoveries.values()
            assert list(again.watches) == [key]
            assert again.watches[key].state is not None
            assert len(cluster.known) == 5 and cluster.listed_before
            assert again.scheduler.job_ids == [cluster.key]
            await poll_round(again)
            await poll_round(again)
            routes = requests.take()
            assert routes.get("cce.workflows.list") == 2 and "cce.workflows.show" not in routes
            await sim.step(running)  # the upgrade moves on: reported from the listing
            await poll_round(again)
            assert requests.take().get("cce.workflows.list") == 1
            kinds = [e.event.kind for e in await again.store.recent_events(limit=100)]
            assert kinds.count("workflow.detected") == 1  # no second "new workflow" page
            assert len(kinds) > len(before)
        finally:
            await again.stop(grace_s=2)
