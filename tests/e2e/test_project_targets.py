"""Project targets through the daemon (issue 11.3): clusters created in the simulator are
picked up at the next discovery and watched like cluster targets (finished workflows quiet on
their first listing, running ones announced at a real webhook), deleted ones are dropped with
their jobs, a reload drops a removed project's clusters, and a restart keeps each cluster's
"first listing" behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.harness import Harness, base_settings, free_port, running
from watcher.config import settings_from_mapping
from watcher.runtime.app import App
from watcher.simulator import start_simulator


def project_target(raw: dict[str, Any], **extra: Any) -> None:
    """Replace the harness's workflow targets by one project target on team-* clusters."""
    first = raw["targets"][0]
    raw["targets"] = [
        {
            "name": "fleet",
            "kind": "project",
            "region": first["region"],
            "project_id": first["project_id"],
            "include": ["team-*"],
            "labels": {"env": "e2e"},
            **extra,
        }
    ]
    raw["http"] = {"enabled": True, "listen": f"127.0.0.1:{free_port()}"}


async def settle_until(h: Harness, done: Any, rounds: int = 6) -> None:
    """Let the daemon poll (discovery, then the new jobs it starts) until ``done()``."""
    for _ in range(rounds):
        await h.settle()
        if done():
            return
    raise AssertionError("the daemon did not get there")


async def create_cluster(h: Harness, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{h.sim.url}/_sim/clusters", json=body) as resp,
    ):
        assert resp.status == 201, await resp.text()
        created: dict[str, Any] = await resp.json()
        return created


async def delete_cluster(h: Harness, cluster_id: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{h.sim.url}/_sim/clusters/{cluster_id}") as resp,
    ):
        assert resp.status == 200, await resp.text()


async def test_a_cluster_created_later_is_watched_and_a_deleted_one_dropped(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, ["clean_upgrade"], configure=project_target) as h:
        daemon = h.daemon
        await h.settle()
        assert daemon.projects["fleet"].listed == 1  # the scenario's cluster: not team-*
        assert not daemon.discoveries and not daemon.watches
        created = await create_cluster(
            h,
            {
                "name": "team-a",
                "labels": {"tier": "production"},
                "workflows": [
                    {"scenario": "clean_upgrade", "finished": True},
                    {"scenario": "clean_upgrade"},
                ],
            },
        )
        cid = created["cluster"]["id"]
        finished, live = (t["workflow_id"] for t in created["targets"])
        await settle_until(h, lambda: daemon.watches)
        # The derived cluster target: its own discovery; the finished workflow is only
        # remembered (first listing), the running one is watched.
        (discovery,) = daemon.discoveries.values()
        assert discovery.target.name == "fleet/team-a"
        assert discovery.target.cluster_id == cid
        assert dict(discovery.target.labels) == {"env": "e2e"}
        assert discovery.known == {finished, live}
        assert list(daemon.watches) == [f"fleet/team-a/{live}"]
        await h.step(live)  # PreCheck starts
        await h.settle()
        stored = [e.event for e in await h.stored()]
        assert {e.workflow_id for e in stored} == {live}
        assert {e.target.name for e in stored} == {"fleet/team-a"}
        assert stored[0].kind == "workflow.detected"
        assert "task.started" in [e.kind for e in stored]
        arrived = await h.webhook_events()
        assert "workflow.detected" in arrived[0]
        assert any("task.started" in kinds for kinds in arrived)
        for message in h.webhook.bodies:  # named by the cluster, linked to its console page
            assert str(message["title"]).startswith("[INFO] team-a: ")
            assert f"/cluster/{cid}/upgrade" in str(message["message"])
        # The name came with the project's listing: no ShowCluster call for it.
        assert "cce.clusters.show" not in h.sim.requests()["routes"]

        # /api/v1/workflows lists the project target and its cluster.
        assert daemon.http is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{daemon.http.url}/api/v1/workflows") as resp,
        ):
            body = await resp.json()
        names = [t["name"] for t in body["targets"]]
        assert names == ["fleet", "fleet/team-a"]
        assert [w["key"] for w in body["workflows"]] == [f"fleet/team-a/{live}"]

        await delete_cluster(h, cid)
        await settle_until(h, lambda: not daemon.discoveries)
        assert not daemon.watches
        assert [j for j in daemon.scheduler.job_ids if j.startswith("fleet/team-a")] == []
        assert "fleet/team-a" not in daemon.watching.healths
        assert list(daemon.scheduler.job_ids) == [daemon.projects["fleet"].key]


async def test_a_reload_without_the_project_drops_its_clusters(tmp_path: Path) -> None:
    async with running(tmp_path, ["clean_upgrade"], configure=project_target) as h:
        daemon = h.daemon
        for name in ("team-a", "team-b"):
            await create_cluster(h, {"name": name})
        await settle_until(h, lambda: len(daemon.discoveries) == 2)
        assert sorted(daemon.discoveries) == ["fleet/team-a", "fleet/team-b"]
        # The same project, other filters: its clusters are replaced, not duplicated.
        raw = base_settings(h.sim, tmp_path / "state", [h.webhook.url])
        project_target(raw, include=["team-b"])
        raw["http"] = {"enabled": False}
        await daemon.reload(settings_from_mapping(raw))
        await settle_until(h, lambda: list(daemon.discoveries) == ["fleet/team-b"])
        # And without any project target: nothing of it is left.
        raw["targets"] = [{**raw["targets"][0], "name": "one", "kind": "cluster", "include": None}]
        raw["targets"][0].pop("include")
        raw["targets"][0]["cluster_id"] = next(iter(h.sim.world.clusters))
        await daemon.reload(settings_from_mapping(raw))
        assert daemon.projects == {}
        assert list(daemon.discoveries) == ["one"]
        assert not [j for j in daemon.scheduler.job_ids if j.startswith("fleet")]
        assert [t["name"] for t in daemon.targets()] == ["one"]


async def test_each_clusters_first_listing_stays_behind_it_across_a_restart(
    tmp_path: Path,
) -> None:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        made = await sim.add_cluster(
            "team-a", workflows=[{"scenario": "clean_upgrade", "finished": True}]
        )
        (old,) = made["targets"]
        raw = base_settings(sim, tmp_path / "state", ["console://"])
        project_target(raw)
        raw["http"] = {"enabled": False}
        raw["polling"] = {**raw["polling"], "discovery_s": 0.2}

        async def run_once() -> tuple[list[str], set[str]]:
            daemon = App(settings_from_mapping(raw))
            await daemon.start()
            try:
                await asyncio.sleep(1.5)  # a few discovery rounds
                events = await daemon.store.recent_events(limit=20)
                known = daemon.discoveries["fleet/team-a"].known
                return [f"{e.event.kind} {e.event.workflow_id}" for e in events], set(known)
            finally:
                await daemon.stop(grace_s=2)

        events, known = await run_once()
        assert events == [] and known == {old["workflow_id"]}  # the first listing: quiet
        # While the daemon is down, another upgrade of team-a runs to its end.
        cluster = sim.world.clusters[made["cluster"]["id"]]
        wf = sim.world.add(sim._scenario("clean_upgrade"), clone=True)
        sim.world.move(wf, cluster)
        sim.world.finish(wf)
        events, known = await run_once()
        # Not a first listing any more: the new workflow is news, the old one is not.
        assert events == [f"workflow.detected {wf.id}"]
        assert known == {old["workflow_id"], wf.id}


async def test_a_cluster_with_a_configured_target_of_its_own_is_not_watched_twice(
    tmp_path: Path,
) -> None:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
        made = await sim.add_cluster("team-a", workflows=[{"scenario": "clean_upgrade"}])
        raw = base_settings(sim, tmp_path / "state", ["console://"])
        project_target(raw)
        fleet = raw["targets"][0]
        direct = {
            "name": "team-a-direct",
            "kind": "cluster",
            "region": fleet["region"],
            "project_id": fleet["project_id"],
            "cluster_id": made["cluster"]["id"],
        }
        raw["targets"].append(direct)
        raw["http"] = {"enabled": False}
        raw["polling"] = {**raw["polling"], "discovery_s": 0.2}
        daemon = App(settings_from_mapping(raw))
        await daemon.start()
        try:
            await asyncio.sleep(1.5)  # a few discovery rounds
            project = daemon.projects["fleet"]
            assert project.covered == {"fleet/team-a": "team-a-direct"}
            assert project.clusters == {}
            assert set(daemon.discoveries) == {"team-a-direct"}
            events = await daemon.store.recent_events(limit=50)
            assert events, "the running upgrade was announced"
            assert {e.event.target.name for e in events} == {"team-a-direct"}
            # Without the configured target the project watches the cluster itself.
            raw["targets"] = [fleet]
            await daemon.reload(settings_from_mapping(raw))
            await asyncio.sleep(1.5)
            assert project.covered == {}
            assert set(daemon.discoveries) == {"fleet/team-a"}
        finally:
            await daemon.stop(grace_s=2)
