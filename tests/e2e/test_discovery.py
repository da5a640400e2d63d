"""Cluster targets: the daemon lists a cluster's workflows and watches each new one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.e2e.harness import base_settings, running
from watcher.config import settings_from_mapping
from watcher.runtime.app import App
from watcher.simulator import start_simulator


def cluster_target(raw: dict[str, Any]) -> None:
    """Replace the harness's workflow targets by one cluster target per cluster."""
    clusters = {(t["cluster_id"], t["api"]) for t in raw["targets"]}
    raw["targets"] = [
        {
            "name": f"cluster-{cid[:8]}",
            "kind": "cluster",
            "cluster_id": cid,
            "api": api,
            "region": raw["targets"][0]["region"],
            "project_id": raw["targets"][0]["project_id"],
        }
        for cid, api in sorted(clusters)
    ]


async def test_a_cluster_target_discovers_its_workflow_and_reports_it(tmp_path: Path) -> None:
    async with running(tmp_path, ["clean_upgrade"], configure=cluster_target) as h:
        (target,) = h.sim.targets()
        for _ in range(3):  # discovery, then the new workflow's first poll
            await h.settle()
            if h.daemon.watches:
                break
        assert list(h.daemon.watches) == [
            f"cluster-{target['cluster_id'][:8]}/{target['workflow_id']}"
        ]
        await h.step()  # PreCheck starts
        await h.settle()
        kinds = [e.event.kind for e in await h.stored()]
        assert kinds[0] == "workflow.detected"
        assert "workflow.started" in kinds
        assert "task.started" in kinds
        assert await h.webhook_events()


async def test_finished_workflows_on_the_first_listing_are_remembered_silently(
    tmp_path: Path,
) -> None:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        while (await sim.step()).get("changes"):
            pass  # the upgrade is over before the watcher first looks at the cluster
        raw = base_settings(sim, tmp_path / "state", ["console://"])
        cluster_target(raw)
        raw["polling"] = {**raw["polling"], "discovery_s": 0.2}
        for _ in range(2):  # and a restart does not announce it either
            daemon = App(settings_from_mapping(raw))
            await daemon.start()
            try:
                await asyncio.sleep(1.0)  # a few discovery rounds
                assert not daemon.watches
                assert [d.known for d in daemon.discoveries.values()] == [
                    {sim.targets()[0]["workflow_id"]}
                ]
                assert await daemon.store.recent_events(limit=10) == []
            finally:
                await daemon.stop(grace_s=2)
