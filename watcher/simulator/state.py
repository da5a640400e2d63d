"""The simulated cloud's mutable state: clusters, workflows, their tasks, and the timeline.

Scenario steps are applied lazily: every read first calls ``catch_up``, which applies the
steps whose time has come (a heap holds each workflow's next step, so the check is O(1)
when nothing is due). Rendered JSON is cached per workflow and cluster and dropped only
when a step changes them, so the hot GET show route serves cached bytes.
"""

from __future__ import annotations

import copy
import heapq
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from watcher.core.timeparse import format_go
from watcher.simulator.account import Account
from watcher.simulator.clock import SimClock
from watcher.simulator.scenario import CheckItemDef, Scenario, StepDef

_NS = uuid.UUID("5f1c3a2e-9a7b-4c59-8d0e-3b6f1d2c4a10")
ACTIVE = frozenset({"Queuing", "Running"})
CANCELLABLE_PHASES = frozenset({"Init", "Pending"})
DEFAULT_FAILED_PROGRESS = 50.0


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class PointState:
    """One node of the workflow graph; ``None`` fields are omitted from the JSON."""

    task_type: str
    status: str | None = "Init"
    task_id: str | None = None
    start: str | None = ""
    end: str | None = ""
    expire: str | None = None
    # Progress bookkeeping for the Cluster point's upgrade task.
    progress: float = 0.0
    run_from: float | None = None
    run_until: float | None = None
    run_target: float = 100.0
    runs: int = 0
    task_phase: str | None = None  # the upgrade task's phase when it differs (Pause)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"taskType": self.task_type}
        for key, value in (
            ("taskID", self.task_id),
            ("status", self.status),
            ("startTimeStamp", self.start),
            ("endTimeStamp", self.end),
            ("expireTimeStamp", self.expire),
        ):
            if value is not None:
                out[key] = value
        return out

    def progress_at(self, offset: float) -> float:
        if self.status == "Success" and self.task_type == "Cluster":
            return 100.0
        if self.status == "Running" and self.run_from is not None and self.run_until:
            span = self.run_until - self.run_from
            done = 1.0 if span <= 0 else min(max((offset - self.run_from) / span, 0.0), 1.0)
            return min(self.progress + (self.run_target - self.progress) * done, 99.99)
        return self.progress


@dataclass(slots=True)
class ClusterState:
    id: str
    name: str
    api: str
    version: str
    category: str
    flavor: str
    type: str
    created: str
    phase: str = "Available"
    updated: str = ""
    alias: str | None = None
    reason: str = ""
    message: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # metadata.labels
    workflows: dict[str, WorkflowState] = field(default_factory=dict)
    body: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "Cluster",
            "apiVersion": "v3",
            "metadata": {
                "name": self.name,
                "uid": self.id,
                "creationTimestamp": self.created,
                "updateTimestamp": self.updated or self.created,
                "annotations": {},
                "labels": dict(self.labels),
                **({"alias": self.alias} if self.alias else {}),
            },
            "spec": {
                "category": self.category,
                "type": self.type,
                "flavor": self.flavor,
                "version": self.version,
                "platformVersion": "cce.10.0",
            },
            "status": {
                "phase": self.phase,
                **({"reason": self.reason} if self.reason else {}),
                **({"message": self.message} if self.message else {}),
            },
        }

    def render(self) -> bytes:
        if self.body is None:
            self.body = dumps(self.to_json())
        return self.body


@dataclass(slots=True)
class WorkflowState:
    id: str
    name: str  # the target name (scenario name, or scenario-N for clones)
    scenario: Scenario
    cluster: ClusterState
    origin: float  # clock offset the timeline counts from
    metadata: dict[str, Any]
    spec: dict[str, Any]
    phase: str
    points: list[PointState]
    lines: list[dict[str, Any]]
    next_index: int = 0
    cancelled: bool = False
    retired: dict[str, PointState] = field(default_factory=dict)  # replaced task ids
    body: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "WorkFlowTask",
            "apiVersion": "v3",
            "metadata": self.metadata,
            "spec": self.spec,
            "status": {
                "phase": self.phase,
                "pointStatuses": [p.to_json() for p in self.points],
                "lineStatuses": self.lines,
            },
        }

    def render(self) -> bytes:
        if self.body is None:
            self.body = dumps(self.to_json())
        return self.body

    def point(self, task_type: str) -> PointState | None:
        return next((p for p in self.points if p.task_type == task_type), None)

    def tasks(self, task_type: str) -> dict[str, PointState]:
        """Every task id this workflow ever gave a point of ``task_type``, current last."""
        found = {k: v for k, v in self.retired.items() if v.task_type == task_type}
        for p in self.points:
            if p.task_type == task_type and p.task_id:
                found[p.task_id] = p
        return found

    @property
    def done(self) -> bool:
        return self.cancelled or self.next_index >= len(self.scenario.steps)


def derive_phase(points: list[PointState]) -> str:
    """Workflow phase from its points: active wins, then a failure (Pending), then success."""
    statuses = [p.status for p in points if p.status]
    if any(s in ACTIVE for s in statuses):
        return "Running"
    if "Failed" in statuses:
        return "Pending"
    if statuses and all(s == "Success" for s in statuses):
        return "Success"
    if "Success" in statuses:
        return "Running"
    return "Init"


class SimState:
    """All workflows of the simulated project and the timeline that drives them."""

    def __init__(self, *, clock: SimClock, account: Account) -> None:
        self.clock = clock
        self.account = account
        self.clusters: dict[str, ClusterState] = {}
        self.workflows: dict[str, WorkflowState] = {}
        self._heap: list[tuple[float, int, str, int]] = []
        self._seq = 0
        self._clones = 0
        self._base: list[Scenario] = []

    # -- loading ---------------------------------------------------------------------

    def load_base(self, scenarios: list[Scenario]) -> None:
        self._base = list(scenarios)
        for scenario in scenarios:
            self.add(scenario)

    def reset(self) -> None:
        self.clock.reset()
        self.clusters.clear()
        self.workflows.clear()
        self._heap.clear()
        self._clones = 0
        for scenario in self._base:
            self.add(scenario)

    def add_clones(self, scenario: Scenario, count: int) -> list[WorkflowState]:
        return [self.add(scenario, clone=True) for _ in range(count)]

    def add(self, scenario: Scenario, *, clone: bool = False) -> WorkflowState:
        """Load a scenario's workflow; a clone (or an id clash) gets fresh ids and a cluster."""
        cdef = scenario.cluster
        cluster_id, cluster_name, wf_id, name = (
            cdef.id,
            cdef.name,
            scenario.workflow_id,
            scenario.name,
        )
        if clone or cluster_id in self.clusters or wf_id in self.workflows:
            self._clones += 1
            n = self._clones
            cluster_id = str(uuid.uuid5(_NS, f"{scenario.name}/{n}/cluster"))
            wf_id = str(uuid.uuid5(_NS, f"{scenario.name}/{n}/workflow"))
            cluster_name = f"{cdef.name}-{n:04d}"
            name = f"{scenario.name}-{n}"
        origin = self.clock.offset()
        created = format_go(self.clock.at(origin + scenario.created))
        cluster = ClusterState(
            id=cluster_id,
            name=cluster_name,
            api=cdef.api,
            version=cdef.version,
            category=cdef.category,
            flavor=cdef.flavor,
            type=cdef.type,
            created=created,
            alias=cdef.alias,
        )
        if scenario.initial is not None:
            raw = copy.deepcopy(scenario.initial)
            metadata = raw.get("metadata", {})
            spec = raw.get("spec", {})
            metadata["uid"] = wf_id
            if "clusterID" in spec:
                spec["clusterID"] = cluster_id
            status = raw.get("status", {})
            points = [_point_from_json(p) for p in status.get("pointStatuses", [])]
            lines = list(status.get("lineStatuses", []))
            phase = str(status.get("phase") or derive_phase(points))
            cluster.version = str(spec.get("clusterVersion", cluster.version))
        else:
            metadata = {"uid": wf_id}
            if scenario.workflow_name:
                metadata["name"] = scenario.workflow_name
            metadata["creationTimestamp"] = created
            metadata["updateTimestamp"] = created
            spec = {
                "clusterID": cluster_id,
                "clusterVersion": cdef.version,
                "targetVersion": scenario.target_version,
            }
            points = [
                PointState(
                    task_type=p.task_type,
                    status=p.status,
                    task_id=p.task_id,
                    start=p.start,
                    end=p.end,
                    expire=p.expire,
                    progress=float(p.progress or 0.0),
                )
                for p in scenario.points
            ]
            lines = [_line_json(x.start, x.end, x.critical) for x in scenario.lines]
            phase = derive_phase(points)
        wf = WorkflowState(
            id=wf_id,
            name=name,
            scenario=scenario,
            cluster=cluster,
            origin=origin,
            metadata=metadata,
            spec=spec,
            phase=phase,
            points=points,
            lines=lines,
        )
        cluster.workflows[wf_id] = wf
        self.clusters[cluster_id] = cluster
        self.workflows[wf_id] = wf
        _update_cluster(wf)
        self._schedule(wf)
        return wf

    def add_cluster(
        self,
        name: str,
        *,
        api: str = "cce",
        labels: dict[str, str] | None = None,
        alias: str | None = None,
        version: str = "v1.28.3-r0",
    ) -> ClusterState:
        """A new, empty cluster (the user created one in the console)."""
        if any(c.name == name and c.api == api for c in self.clusters.values()):
            raise ValueError(f"a {api} cluster named {name!r} exists already")
        self._clones += 1
        cluster = ClusterState(
            id=str(uuid.uuid5(_NS, f"cluster/{name}/{self._clones}")),
            name=name,
            api=api,
            version=version,
            category="CCE",
            flavor="cce.s1.small",
            type="VirtualMachine",
            created=format_go(self.clock.now()),
            alias=alias,
            labels=dict(labels or {}),
        )
        self.clusters[cluster.id] = cluster
        return cluster

    def move(self, wf: WorkflowState, cluster: ClusterState) -> None:
        """Move a freshly added workflow from its own new cluster to ``cluster``."""
        if self.clusters.get(wf.cluster.id) is wf.cluster and len(wf.cluster.workflows) == 1:
            del self.clusters[wf.cluster.id]
        wf.cluster.workflows.pop(wf.id, None)
        wf.cluster = cluster
        cluster.workflows[wf.id] = wf
        if "clusterID" in wf.spec:
            wf.spec["clusterID"] = cluster.id
        wf.body = None
        _update_cluster(wf)

    def finish(self, wf: WorkflowState) -> None:
        """Mark a workflow as a finished, successful upgrade without playing its timeline
        (an upgrade history: bulk tenants, clusters created through the control API)."""
        stamp = format_go(self.clock.now())
        for point in wf.points:
            point.status = "Success"
            point.start = point.start or stamp
            point.end = stamp
            point.progress = 100.0 if point.task_type == "Cluster" else point.progress
            point.run_from = point.run_until = None
        wf.phase = "Success"
        wf.next_index = len(wf.scenario.steps)
        wf.body = None
        _update_cluster(wf)

    def delete_cluster(self, cluster_id: str) -> ClusterState:
        """Delete a cluster and its workflows (KeyError when there is none)."""
        cluster = self.clusters.pop(cluster_id)
        for wid in cluster.workflows:
            self.workflows.pop(wid, None)  # their heap entries are skipped from now on
        return cluster

    # -- the timeline ----------------------------------------------------------------

    def _schedule(self, wf: WorkflowState) -> None:
        if wf.done:
            return
        self._seq += 1
        at = wf.origin + wf.scenario.steps[wf.next_index].at
        heapq.heappush(self._heap, (at, self._seq, wf.id, wf.next_index))

    def _valid(self, entry: tuple[float, int, str, int]) -> WorkflowState | None:
        wf = self.workflows.get(entry[2])
        if wf is None or wf.done or wf.next_index != entry[3]:
            return None
        return wf

    def catch_up(self) -> list[dict[str, Any]]:
        """Apply every step that is due by the clock; cheap when none is."""
        heap = self._heap
        if not heap or heap[0][0] > self.clock.offset():
            return []
        now = self.clock.offset()
        changes = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            wf = self._valid(entry)
            if wf is None:
                continue
            step = wf.scenario.steps[wf.next_index]
            wf.next_index += 1
            changes.append(self._apply(wf, step, entry[0]))
            self._schedule(wf)
        return changes

    def next_due(self, workflow_id: str | None = None) -> float | None:
        """Clock offset of the next step (of one workflow, or of any)."""
        if workflow_id is not None:
            wf = self.workflows[workflow_id]
            return None if wf.done else wf.origin + wf.scenario.steps[wf.next_index].at
        while self._heap and self._valid(self._heap[0]) is None:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def step(self, workflow_id: str | None = None) -> list[dict[str, Any]]:
        """Move the clock to the next step's time and apply what is then due.

        Steps of other workflows that fall due by then are applied too (in time order),
        exactly as ``advance`` would; steps sharing one time are applied together.
        """
        changes = self.catch_up()
        due = self.next_due(workflow_id)
        if due is None:
            return changes
        self.clock.advance_to(due)
        return changes + self.catch_up()

    def advance(self, seconds: float) -> list[dict[str, Any]]:
        self.clock.advance(seconds)
        return self.catch_up()

    def _apply(self, wf: WorkflowState, step: StepDef, at: float) -> dict[str, Any]:
        stamp = format_go(self.clock.at(at))
        change: dict[str, Any] = {"workflow": wf.id, "at": round(at, 3)}
        if step.note:
            change["note"] = step.note
        if step.action == "cancel":
            wf.phase = "Cancel"
            wf.cancelled = True
            change["action"] = "cancel"
        if step.point:
            point = wf.point(step.point)
            if point is None:
                point = PointState(task_type=step.point, status="Init")
                wf.points.append(point)
            if step.line_from:
                wf.lines.append(_line_json(step.line_from, step.point, False))
            if step.task_id and step.task_id != point.task_id:
                if point.task_id:
                    wf.retired[point.task_id] = replace(point)
                point.task_id = step.task_id
            if step.progress is not None:
                point.progress = float(step.progress)
            if step.task_phase is not None:
                self._set_task_phase(point, step.task_phase, at)
                change["task_phase"] = step.task_phase
            if step.status:
                self._set_status(wf, point, step, at, stamp)
            change.update(point=point.task_type, status=point.status, taskID=point.task_id)
        if step.phase:
            wf.phase = step.phase
        elif wf.phase != "Cancel":
            wf.phase = derive_phase(wf.points)
        change["phase"] = wf.phase
        if "updateTimestamp" in wf.metadata:
            wf.metadata["updateTimestamp"] = stamp
        wf.cluster.updated = stamp
        if step.cluster_reason is not None:
            wf.cluster.reason = step.cluster_reason
        if step.cluster_message is not None:
            wf.cluster.message = step.cluster_message
        _update_cluster(wf)
        wf.body = None
        return change

    def _set_status(
        self, wf: WorkflowState, point: PointState, step: StepDef, at: float, stamp: str
    ) -> None:
        status = step.status
        point.task_phase = None
        if status != "Init" and not point.task_id:
            point.runs += 1
            point.task_id = str(uuid.uuid5(_NS, f"{wf.id}/{point.task_type}/{point.runs}"))
        if status in ACTIVE:
            point.end = ""
            if status == "Running":
                point.start = stamp
                point.run_from = at
                point.run_until, point.run_target = self._run_end(wf, point.task_type)
        elif status == "Success":
            point.end = stamp
            if point.task_type == "Cluster":
                point.progress = 100.0
            if point.task_type == "PreCheck":
                point.expire = format_go(self.clock.at(at + wf.scenario.precheck_validity))
        elif status == "Failed":
            point.end = stamp
            if step.progress is None:
                point.progress = point.progress_at(at)
        elif status == "Init":
            point.start, point.end = "", ""
        point.status = status
        if status not in ACTIVE:
            point.run_from = point.run_until = None

    @staticmethod
    def _set_task_phase(point: PointState, phase: str, at: float) -> None:
        """Pause freezes the upgrade task's progress (the point stays Running: the workflow's
        point enum has no Pause); any other value resumes it from there."""
        if phase == "Pause":
            point.progress = point.progress_at(at)
            point.task_phase = "Pause"
            point.run_from = None
        else:
            point.task_phase = None
            if point.status == "Running" and point.run_until is not None:
                point.run_from = at

    def _run_end(self, wf: WorkflowState, task_type: str) -> tuple[float | None, float]:
        """When and at what progress the run that starts now is scheduled to end."""
        for step in wf.scenario.steps[wf.next_index :]:
            if step.point == task_type and step.status in ("Success", "Failed"):
                if step.status == "Success":
                    return wf.origin + step.at, 100.0
                target = float(step.progress) if step.progress else DEFAULT_FAILED_PROGRESS
                return wf.origin + step.at, target
        return None, 0.0

    # -- user actions ----------------------------------------------------------------

    def cancel(self, wf: WorkflowState) -> str | None:
        """PATCH phase=Cancel; returns why it is refused, or None when done."""
        if wf.phase not in CANCELLABLE_PHASES:
            return f"workflow phase is {wf.phase}; only Init or Pending can be cancelled"
        active = [p.task_type for p in wf.points if p.status in ACTIVE]
        if active:
            return f"task {active[0]} is still active"
        wf.phase = "Cancel"
        wf.cancelled = True
        stamp = format_go(self.clock.now())
        if "updateTimestamp" in wf.metadata:
            wf.metadata["updateTimestamp"] = stamp
        wf.body = None
        return None

    # -- views -----------------------------------------------------------------------

    def target(self, wf: WorkflowState) -> dict[str, Any]:
        return {
            "name": wf.name,
            "region": self.account.region,
            "project_id": self.account.project_id,
            "cluster_id": wf.cluster.id,
            "workflow_id": wf.id,
            "api": wf.cluster.api,
            "cluster_name": wf.cluster.name,
            "scenario": wf.scenario.name,
        }

    def snapshot(self) -> dict[str, Any]:
        offset = self.clock.offset()
        return {
            "clock": {
                "offset": round(offset, 3),
                "now": format_go(self.clock.at(offset)),
                "speed": self.clock.speed,
                "autoplay": self.clock.autoplay,
            },
            "workflows": [
                {
                    **self.target(wf),
                    "phase": wf.phase,
                    "step": wf.next_index,
                    "steps": len(wf.scenario.steps),
                    "next_step_at": self.next_due(wf.id),
                    "points": [p.to_json() for p in wf.points],
                }
                for wf in self.workflows.values()
            ],
        }

    def precheck_json(self, wf: WorkflowState, task_id: str, point: PointState) -> dict[str, Any]:
        phase = {"Queuing": "Init", None: "Init"}.get(point.status, point.status or "Init")
        # An Error check ends without item results, only status.message (CCE_API.md 1.4).
        error = phase == "Failed" and wf.scenario.precheck_phase == "Error"
        task_phase = "Error" if error else phase
        items: list[CheckItemDef] = []
        if phase in ("Success", "Failed") and not error:
            items = list(_PASSED_ITEMS)
        if phase == "Failed" and not error:
            items += list(wf.scenario.precheck_items)
        groups: dict[str, list[dict[str, Any]]] = {"cluster": [], "addon": [], "node": []}
        for item in items:
            key = {"AddonCheck": "addon", "NodeCheck": "node"}.get(item.group, "cluster")
            groups[key].append(_item_json(item))

        def sub_phase(entries: list[dict[str, Any]]) -> str:
            if phase not in ("Success", "Failed"):
                return phase
            return "Failed" if any(e["phase"] == "Failed" for e in entries) else "Success"

        node_stages = []
        if groups["node"]:
            node_stages.append(
                {
                    "nodeInfo": {
                        "uid": str(uuid.uuid5(_NS, f"{wf.cluster.id}/node/1")),
                        "name": "192.168.0.21",
                        "status": "Active",
                        "nodeType": "node",
                    },
                    "itemsStatus": groups["node"],
                }
            )
        return {
            "apiVersion": "v3",
            "kind": "PreCheckTask",
            "metadata": {
                "uid": task_id,
                "creationTimestamp": point.start or wf.metadata.get("creationTimestamp", ""),
                "updateTimestamp": point.end or point.start or "",
            },
            "spec": {
                "clusterID": wf.cluster.id,
                "clusterVersion": wf.spec.get("clusterVersion", ""),
                "targetVersion": wf.spec.get("targetVersion", ""),
                "skippedCheckItemList": [],
            },
            "status": {
                "phase": task_phase,
                "expireTimeStamp": point.expire or "",
                "message": wf.scenario.precheck_message if phase == "Failed" else "",
                "clusterCheckStatus": {
                    "phase": sub_phase(groups["cluster"]),
                    "itemsStatus": groups["cluster"],
                },
                "addonCheckStatus": {
                    "phase": sub_phase(groups["addon"]),
                    "itemsStatus": groups["addon"],
                },
                "nodeCheckStatus": {
                    "phase": sub_phase(groups["node"]),
                    "nodeStageStatus": node_stages,
                },
            },
        }

    def upgrade_task_json(
        self, wf: WorkflowState, task_id: str, point: PointState
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v3",
            "kind": "UpgradeTask",
            "metadata": {
                "uid": task_id,
                "creationTimestamp": point.start or wf.metadata.get("creationTimestamp", ""),
                "updateTimestamp": point.end or point.start or "",
            },
            "spec": {
                "version": wf.spec.get("clusterVersion", ""),
                "targetVersion": wf.spec.get("targetVersion", ""),
                "items": {},
            },
            "status": {
                "phase": point.task_phase or point.status or "Init",
                "progress": f"{point.progress_at(self.clock.offset()):.2f}",
                "completionTime": point.end or "",
            },
        }


_PASSED_ITEMS = (
    CheckItemDef("ClusterVersionCheck", "Info", "Exception", "LimitCheck", "Success"),
    CheckItemDef("MasterNodeStatusCheck", "Info", "Exception", "MasterCheck", "Success"),
    CheckItemDef("AddonCompatibilityCheck", "Info", "Risk", "AddonCheck", "Success"),
)


def _item_json(item: CheckItemDef) -> dict[str, Any]:
    return {
        "name": item.name,
        "kind": item.kind,
        "group": item.group,
        "level": item.level,
        "phase": item.phase,
        "message": item.message,
        "riskSource": item.risk_source or {},
        "errorCodes": list(item.error_codes),
    }


def _line_json(start: str, end: str, critical: bool | None) -> dict[str, Any]:
    line: dict[str, Any] = {"startPoint": {"taskType": start}, "endPoint": {"taskType": end}}
    if critical is not None:
        line["critical"] = critical
    return line


def _point_from_json(raw: dict[str, Any]) -> PointState:
    return PointState(
        task_type=str(raw.get("taskType", "")),
        status=raw.get("status"),
        task_id=raw.get("taskID"),
        start=raw.get("startTimeStamp"),
        end=raw.get("endTimeStamp"),
        expire=raw.get("expireTimeStamp"),
    )


def _update_cluster(wf: WorkflowState) -> None:
    """Cluster phase and version follow the workflow's Cluster and Rollback points."""
    cluster = wf.cluster
    points = {p.task_type: p.status for p in wf.points}
    if points.get("Rollback") in ACTIVE:
        phase = "RollingBack"
    elif points.get("Rollback") == "Failed":
        phase = "RollbackFailed"
    elif points.get("Cluster") in ACTIVE:
        phase = "Upgrading"
    else:
        phase = "Available"
    version = cluster.version
    if points.get("Cluster") == "Success":
        version = str(wf.spec.get("targetVersion") or version)
    if (phase, version) != (cluster.phase, cluster.version):
        cluster.phase, cluster.version = phase, version
    cluster.body = None
