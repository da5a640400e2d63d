"""The scheduler job of a project target: list the project's clusters, keep the set watched.

Every ``discovery_s`` one ListClusters call; the clusters the target's filters select
(``watcher.core.projects.select``) are compared with the ones already watched: a new one is
handed to ``add`` (the app starts a derived cluster target for it), one that is gone from
the listing, or no longer selected, to ``remove``. Everything else about a cluster (its
workflows, its "first listing is quiet" rule, its health) belongs to that derived cluster
target, whose discovery state is stored under its own name, so it holds across restarts
without anything stored here.

A selected cluster that a configured cluster target already watches (same region, project
and cluster ID, ``covered_by``) gets no derived target: the configured one wins, with its
name, labels and routes, and the cluster is polled and reported once. It is logged once
(``project.cluster_covered``) and becomes derived again if that target is removed.

Failures take the ONE failure path of every job (``poller.run_job``: the project target's
health, backoff, metrics, ``last_error``). A failed listing changes nothing: clusters are
only dropped by a listing that answered without them. With replicas (issue 11.2) every
replica lists, so each knows the derived cluster targets and takes its share of their
leases; only the holder of the project target's own lease records its health.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from watcher.core.events import TargetRef
from watcher.core.ports import CloudSource, Priority
from watcher.core.projects import ClusterSelection, Discovered, select
from watcher.runtime.poller import (
    FailureRun,
    TargetHealth,
    WatchContext,
    api_of,
    describe_error,
    run_job,
)
from watcher.runtime.registry import WatchKey

log = structlog.get_logger(__name__)

# add(derived cluster target, display name, cluster name from the listing): start watching
# it (may raise: retried next run). The listed name spares the cluster's show call for it.
AddCluster = Callable[[TargetRef, str | None, str], Awaitable[None]]
RemoveCluster = Callable[[str], None]  # remove(derived target name)
# covered_by(cluster): the name of a configured target that already watches it, or None
CoveredBy = Callable[[TargetRef], str | None]


@dataclass
class ProjectDiscovery:
    """Keeps one derived cluster target per selected cluster of a project (see module)."""

    client: CloudSource
    target: TargetRef
    health: TargetHealth
    selection: ClusterSelection
    add: AddCluster
    remove: RemoveCluster
    display_name: str | None = None
    covered_by: CoveredBy = lambda _cluster: None
    clusters: dict[str, TargetRef] = field(default_factory=dict)  # watched, by derived name
    covered: dict[str, str] = field(default_factory=dict)  # derived name -> configured target
    listed: int = 0  # clusters in the latest listing, before the filters
    failures: FailureRun = field(default_factory=FailureRun, repr=False)

    @property
    def key(self) -> str:
        # The project's own job, in the discovery slot of its name (a project target
        # has no cluster discovery of its own).
        return str(WatchKey.discovery(self.target.name))

    @property
    def last_error(self) -> str | None:
        return self.failures.last_error

    async def poll(self, ctx: WatchContext) -> float | None:
        structlog.contextvars.bind_contextvars(target=self.target.name)
        if not ctx.holds(self.target.name):
            return await self._follow(ctx)
        delay = await run_job(
            ctx, self.target.name, self.health, self.failures, "project", self._list
        )
        assert delay is not None  # a project discovery never ends by itself
        return delay

    async def _follow(self, ctx: WatchContext) -> float:
        """HA: another replica holds the project target's lease and reports its health.
        This one still lists, so that it knows the derived cluster targets (each is a lease
        key of its own) and takes its share of them; a failed listing here is the holder's
        to report, and like any failed listing it changes nothing."""
        try:
            await self._sync()
        except Exception as exc:  # the holder's run_job records and alerts it
            log.debug("project.follow_failed", error=describe_error(exc))
        return ctx.poll.discovery_s

    async def _list(self, ctx: WatchContext) -> float:
        await self._sync()
        await self.health.record(ctx, None)
        self.failures.last_error = None
        return ctx.poll.discovery_s

    async def _sync(self) -> None:
        """List the clusters; add the newly selected ones, remove the ones gone."""
        listed = await self.client.list_clusters(api=api_of(self.target), priority=Priority.IDLE)
        self.listed = len(listed)
        wanted = select(self.target, self.selection, listed)
        self._skip_covered(wanted)
        for name in [n for n in self.clusters if n not in wanted]:
            log.info("project.cluster_dropped", cluster=name)
            del self.clusters[name]
            self.remove(name)
        for name, found in wanted.items():
            current = self.clusters.get(name)
            if current == found.ref:
                continue
            if current is not None:  # same name, another cluster (deleted and re-created)
                del self.clusters[name]
                self.remove(name)
            log.info("project.cluster_found", cluster=name, cluster_id=found.ref.cluster_id)
            name_listed = found.cluster.display_name or ""
            await self.add(found.ref, self._display(name_listed or None), name_listed)
            # Recorded once added: an add that raised is tried again on the next listing.
            self.clusters[name] = found.ref

    def _skip_covered(self, wanted: dict[str, Discovered]) -> None:
        """Take the clusters a configured cluster target watches out of ``wanted``."""
        covered: dict[str, str] = {}
        for name, found in list(wanted.items()):
            owner = self.covered_by(found.ref)
            if owner is None:
                continue
            covered[name] = owner
            del wanted[name]
            if self.covered.get(name) != owner:
                log.info("project.cluster_covered", cluster=name, target=owner)
        self.covered = covered

    def _display(self, cluster: str | None) -> str | None:
        if self.display_name is None:
            return None  # messages name the derived target and the cluster
        return f"{self.display_name}: {cluster}" if cluster else self.display_name

    def remove_all(self) -> None:
        """Drop every derived cluster target (the project target is removed or changed)."""
        for name in list(self.clusters):
            del self.clusters[name]
            self.remove(name)

    def view(self) -> dict[str, Any]:
        """The project's part of a target listing (API, status page)."""
        return {
            "key": self.key,
            "last_error": self.last_error,
            "clusters": sorted(self.clusters),
            "covered": dict(sorted(self.covered.items())),
            "listed": self.listed,
        }
