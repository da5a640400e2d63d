"""A bulk tenant for scale benchmarks: C clusters x W workflows, most of them finished.

Scale runs need tens of thousands of workflows that cost the simulator little: each cluster
gets ``per_cluster`` workflows sharing it (its upgrade history), all finished except, on
an ``active_fraction`` of the clusters, the newest ``active_per_cluster`` (default one),
which are mid-upgrade (their first step applied, the rest of their timeline still to play).
Finished workflows are marked done directly instead of playing their timelines, so a
100,000-workflow tenant builds in seconds. With autoplay off, ``Simulator.advance`` moves
every active workflow one step together (a region-wide wave of changes), which is what the
benchmarks time.

Kept out of state.py on purpose: it only composes SimState's public ``add``, ``move``
and ``finish``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from watcher.simulator.server import Simulator
from watcher.simulator.state import ClusterState


@dataclass
class BulkTenant:
    """What ``populate`` built: cluster ids, and the ids of the active workflows."""

    clusters: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)
    workflows: int = 0


def populate(
    sim: Simulator,
    *,
    clusters: int,
    per_cluster: int,
    active_fraction: float,
    scenario: str = "clean_upgrade",
    active_per_cluster: int = 1,
) -> BulkTenant:
    """Add ``clusters`` x ``per_cluster`` workflows to ``sim`` (see the module docstring)."""
    if clusters < 1 or per_cluster < 1 or not 0.0 <= active_fraction <= 1.0:
        raise ValueError("need clusters >= 1, per_cluster >= 1 and 0 <= active_fraction <= 1")
    if not 1 <= active_per_cluster <= per_cluster:
        raise ValueError("need 1 <= active_per_cluster <= per_cluster")
    loaded = sim._scenario(scenario)  # the simulator's scenario cache (loads by name once)
    world = sim.world
    tenant = BulkTenant()
    active_every = round(1 / active_fraction) if active_fraction > 0 else 0
    for c in range(clusters):
        upgrading = active_every > 0 and c % active_every == 0
        home: ClusterState | None = None
        for w in range(per_cluster):
            wf = world.add(loaded, clone=True)
            if home is None:
                home = wf.cluster
                tenant.clusters.append(home.id)
            else:
                world.move(wf, home)
            if upgrading and w >= per_cluster - active_per_cluster:
                tenant.active.append(wf.id)
            else:
                world.finish(wf)
        tenant.workflows += per_cluster
    if tenant.active:
        first = loaded.steps[0].at if loaded.steps else 0.0
        world.advance(max(first, 0.0))  # every active workflow is now mid-upgrade
    return tenant


def targets(sim: Simulator, tenant: BulkTenant, kind: str) -> list[dict[str, Any]]:
    """Daemon [[targets]] for the tenant.

    ``cluster``: one target per cluster (workflows discovered); ``workflow``: one per active
    workflow; ``project``: one target for the whole project (clusters discovered too).
    """
    acc = sim.account
    if kind == "project":
        return [
            {
                "kind": "project",
                "name": "project",
                "region": acc.region,
                "project_id": acc.project_id,
            }
        ]
    if kind == "cluster":
        return [
            {
                "kind": "cluster",
                "name": f"c{i:06d}",
                "region": acc.region,
                "project_id": acc.project_id,
                "cluster_id": cid,
            }
            for i, cid in enumerate(tenant.clusters)
        ]
    if kind == "workflow":
        out = []
        for i, wid in enumerate(tenant.active):
            wf = sim.world.workflows[wid]
            out.append(
                {
                    "kind": "workflow",
                    "name": f"w{i:06d}",
                    "region": acc.region,
                    "project_id": acc.project_id,
                    "cluster_id": wf.cluster.id,
                    "workflow_id": wid,
                }
            )
        return out
    raise ValueError(f"unknown target kind {kind!r} (project, cluster or workflow)")
