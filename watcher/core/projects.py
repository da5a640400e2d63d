"""Project targets, the pure part: which clusters of a listing are watched, and as what.

A ``kind = "project"`` target watches every cluster of a project (one region, one API) that
its filters select. Each selected cluster becomes a derived cluster target named
``{project target}/{cluster name}``, watched exactly like a configured cluster target (its
own discovery state, health and "first listing is quiet" rule). Configured names cannot hold
"/", so a derived name never collides with a configured one, and ``WatchKey.decode`` splits
keys at the last "/" (a workflow or reserved tail never holds one).

The runtime side (the scheduler job that lists and calls back) is
``watcher.runtime.projects``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from watcher.core.events import TargetRef
from watcher.core.models import Cluster

# A cluster name that is safe in store keys, metric labels and messages as it is. CCE
# names are far narrower (lowercase, digits, hyphens); a name outside this set is the
# cloud's to explain, and the cluster is then named by its uid.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True, slots=True)
class ClusterSelection:
    """Which clusters a project target watches: the name matches an ``include`` glob and no
    ``exclude`` glob (case-sensitive, like the cloud's names), and every ``labels`` pair
    equals the cluster's ``metadata.labels`` entry. Hashable, so two identical project
    targets can be told apart from two that split a project."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    label_pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls,
        include: Iterable[str] = ("*",),
        exclude: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
    ) -> ClusterSelection:
        return cls(tuple(include), tuple(exclude), tuple(sorted((labels or {}).items())))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.label_pairs)

    def selects(self, cluster: Cluster) -> bool:
        name = cluster.name or ""
        if not any(fnmatchcase(name, p) for p in self.include):
            return False
        if any(fnmatchcase(name, p) for p in self.exclude):
            return False
        return all(cluster.labels.get(k) == v for k, v in self.label_pairs)


@dataclass(frozen=True, slots=True)
class Discovered:
    """One selected cluster: its derived target and what people call it."""

    ref: TargetRef
    cluster: Cluster = field(compare=False)

    @property
    def name(self) -> str:
        return self.ref.name


def derive(project: TargetRef, cluster: Cluster, name: str) -> TargetRef:
    """The derived cluster target: the project's region, project, API and labels."""
    return TargetRef(
        name=f"{project.name}/{name}",
        region=project.region,
        project_id=project.project_id,
        cluster_id=cluster.uid,
        labels=dict(project.labels),
        api=project.api,
    )


def select(
    project: TargetRef, selection: ClusterSelection, listed: Iterable[Cluster]
) -> dict[str, Discovered]:
    """The clusters of a listing that the project target watches, by derived target name.

    A cluster is named by its ``metadata.name``; by its uid when the name is missing or
    unsafe, or when another listed cluster already has that name (ListClusters cannot
    return two, but the answer is the cloud's); a uid always names one cluster.
    """
    out: dict[str, Discovered] = {}
    taken: set[str] = set()
    for cluster in listed:
        if not selection.selects(cluster):
            continue
        name = cluster.name if cluster.name and _SAFE_NAME.match(cluster.name) else cluster.uid
        if name in taken:
            name = cluster.uid
        taken.add(name)
        ref = derive(project, cluster, name)
        out[ref.name] = Discovered(ref, cluster)
    return out
