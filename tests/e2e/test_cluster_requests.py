"""One request per cluster (issue 12.1), counted at the simulator over real HTTP.

A cluster target is ONE scheduler job whose one ListUpgradeWorkFlows per run answers for
every workflow of the cluster; finished workflows cost a set entry, not a job; after a
restart the stored states of running workflows (a real SQLite file) are watched again
under that same one job.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.e2e.harness import base_settings
from watcher.config import settings_from_mapping
from watcher.core.models import Workflow
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


async def test_finished_workflows_leave_no_parsed_object_after_the_first_listing(
    tmp_path: Path,
) -> None:
    """A cluster's history costs a set entry, not a parsed workflow: the first listing
    parses all 30, but neither the client's listing memo nor the cluster watch keeps the
    finished ones (they held ~10 KB each: 354 MB RSS at 1,000 clusters x 30 workflows)."""
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        tenant = populate(sim, clusters=2, per_cluster=30, active_fraction=0.5)
        finished = set(sim.world.workflows) - set(tenant.active)
        # Workflows other tests of this worker left alive may share these (deterministic)
        # uids: only objects made from here on count.
        gc.collect()
        earlier = {id(o) for o in gc.get_objects() if isinstance(o, Workflow)}
        daemon = App(settings_from_mapping(settings(sim, tenant, tmp_path / "state")))
        await daemon.start()
        try:
            await poll_round(daemon)
            assert sum(len(c.known) for c in daemon.discoveries.values()) == 60
            gc.collect()
            alive = {
                o.uid for o in gc.get_objects() if isinstance(o, Workflow) and id(o) not in earlier
            }
            assert not alive & finished
            assert set(tenant.active) <= alive  # the upgrading one is diffed from its object
        finally:
            await daemon.stop(grace_s=2)


async def test_an_upgrading_cluster_keeps_active_s_while_idle_ones_stretch(
    tmp_path: Path,
) -> None:
    """Under budget pressure (issue 12.2) idle clusters absorb the stretch: a cluster with an
    upgrading workflow is still listed every active_s (the change -> webhook goal)."""
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        tenant = populate(sim, clusters=80, per_cluster=2, active_fraction=0.05)
        raw = settings(sim, tenant, tmp_path / "state")
        # 4 active clusters at 15 s and 76 idle at discovery_s 120 s ask 0.9 req/s of 0.6;
        # the burst lets two rounds start at once (the pacing is tested elsewhere).
        raw["polling"] = {
            "active_s": 15,
            "idle_s": 60,
            "discovery_s": 120,
            "requests_per_second": 0.6,
            "burst": 400,
        }
        daemon = App(settings_from_mapping(raw))
        await daemon.start()
        try:
            for _ in range(2):  # the second round runs on every job's settled demand
                await poll_round(daemon, timeout=30)
            upgrading = {daemon.watches[k].target.name for k in daemon.watches}
            assert len(upgrading) == 4
            intervals = {
                name: daemon.scheduler.interval(cluster.key)
                for name, cluster in daemon.discoveries.items()
            }
            assert {intervals[name] for name in upgrading} == {15.0}
            idle = {v for name, v in intervals.items() if name not in upgrading}
            assert idle and all(v is not None and v > 120 for v in idle)
        finally:
            await daemon.stop(grace_s=2)
