"""The bulk tenant of the scale benchmarks: C clusters x W workflows, a fraction mid-upgrade."""

from __future__ import annotations

import json

import pytest

from watcher.simulator import Simulator
from watcher.simulator.bulk import populate, targets


def test_clusters_share_their_workflows_and_only_the_upgrading_ones_are_active() -> None:
    sim = Simulator(scenarios=["clean_upgrade"], autoplay=False)
    base = set(sim.world.workflows)
    tenant = populate(sim, clusters=20, per_cluster=3, active_fraction=0.1)
    assert len(tenant.clusters) == 20
    assert tenant.workflows == 60
    assert len(tenant.active) == 2
    for cid in tenant.clusters:
        cluster = sim.world.clusters[cid]
        assert len(cluster.workflows) == 3
        listed = json.loads(
            b'{"items":[' + b",".join(wf.render() for wf in cluster.workflows.values()) + b"]}"
        )
        assert {item["spec"]["clusterID"] for item in listed["items"]} == {cid}
    phases = {wid: wf.phase for wid, wf in sim.world.workflows.items() if wid not in base}
    assert {phases[w] for w in tenant.active} == {"Running"}
    assert {p for w, p in phases.items() if w not in tenant.active} == {"Success"}
    # One step moves every active workflow together; finished ones never move.
    changed = {c["workflow"] for c in sim.world.step()} - base
    assert changed == set(tenant.active)


def test_targets_per_kind() -> None:
    sim = Simulator(scenarios=["clean_upgrade"], autoplay=False)
    tenant = populate(sim, clusters=4, per_cluster=2, active_fraction=0.5)
    clusters = targets(sim, tenant, "cluster")
    assert [t["cluster_id"] for t in clusters] == tenant.clusters
    assert all(t["kind"] == "cluster" and "workflow_id" not in t for t in clusters)
    workflows = targets(sim, tenant, "workflow")
    assert [t["workflow_id"] for t in workflows] == tenant.active
    (project,) = targets(sim, tenant, "project")
    assert project == {
        "kind": "project",
        "name": "project",
        "region": sim.account.region,
        "project_id": sim.account.project_id,
    }
    with pytest.raises(ValueError, match="unknown target kind"):
        targets(sim, tenant, "region")


def test_several_upgrades_per_cluster_are_the_newest_ones() -> None:
    sim = Simulator(scenarios=["clean_upgrade"], autoplay=False)
    tenant = populate(sim, clusters=2, per_cluster=4, active_fraction=1.0, active_per_cluster=2)
    assert len(tenant.active) == 4
    for cid in tenant.clusters:
        phases = [wf.phase for wf in sim.world.clusters[cid].workflows.values()]
        assert phases == ["Success", "Success", "Running", "Running"]
    with pytest.raises(ValueError, match="active_per_cluster"):
        populate(sim, clusters=1, per_cluster=2, active_fraction=1.0, active_per_cluster=3)
