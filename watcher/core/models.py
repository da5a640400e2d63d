"""Typed views of the CCE upgrade API's JSON, parsed from raw dicts (CCE_API.md 1.4).

We do not use the SDK's models: its enums turn unknown values into ``{}`` (CCE_API.md 2.6).
Here every enum-like field is a plain string, so an unknown phase, status or task type is
carried as its string. Unknown fields are ignored, missing fields become ``None`` or empty,
and each model has ``from_api`` (the cloud's nested camelCase shape) as well as the normal
pydantic constructors (our own flat shape, used to persist snapshots).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

from watcher.core.timeparse import parse_timestamp_lenient

# Which CCE API family a target speaks: CCE (``/api/v3``) or CCE Autopilot
# (``/autopilot/v3``). The one definition: the cloud client and the runtime import it.
Api = Literal["cce", "autopilot"]


class Phase(StrEnum):
    """Known workflow phases. ``Pending`` means a task failed; there is no Failed phase."""

    INIT = "Init"
    RUNNING = "Running"
    PENDING = "Pending"
    SUCCESS = "Success"
    CANCEL = "Cancel"


TERMINAL_PHASES = frozenset({Phase.SUCCESS, Phase.CANCEL})


class TaskStatus(StrEnum):
    """Known statuses of a workflow point (a node of the task graph)."""

    INIT = "Init"
    QUEUING = "Queuing"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"


ACTIVE_STATUSES = frozenset({TaskStatus.QUEUING, TaskStatus.RUNNING})


class TaskType(StrEnum):
    """Known task types, in the order the graph runs them."""

    PRECHECK = "PreCheck"
    SNAPSHOT = "Snapshot"
    CLUSTER = "Cluster"
    POSTCHECK = "PostCheck"
    ROLLBACK = "Rollback"


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return parse_timestamp_lenient(value)
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return str(value)


Time = Annotated[datetime | None, BeforeValidator(_time)]
Text = Annotated[str | None, BeforeValidator(_text)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def model_post_init(self, context: Any, /) -> None:
        # pydantic gives every instance its own set of the fields given (a 10-name set is
        # 728 bytes, more than the rest of a Workflow's own fields): instances of these
        # frozen models share one set per combination. pydantic never mutates it in place
        # (frozen: no setattr; model_copy copies it before updating).
        given = self.__pydantic_fields_set__
        shared = _FIELDS_SETS.setdefault(frozenset(given), given)
        object.__setattr__(self, "__pydantic_fields_set__", shared)


_FIELDS_SETS: dict[frozenset[str], set[str]] = {}  # a few combinations per model


class Point(_Model):
    """One task of the workflow graph (``status.pointStatuses[]``)."""

    task_type: str
    task_id: Text = None
    status: Text = None
    started_at: Time = None
    ended_at: Time = None
    expires_at: Time = None

    def duration_s(self) -> float | None:
        """Seconds from start to end (never negative), or None without both stamps."""
        if self.started_at and self.ended_at:
            return max(0.0, (self.ended_at - self.started_at).total_seconds())
        return None

    @classmethod
    def from_api(cls, raw: Any) -> Point:
        raw = _dict(raw)
        values = tuple(raw.get(k) for k in _POINT_KEYS)
        if all(v is None or type(v) is str for v in values):
            return _cached_point(*values)  # the common case: see _cached_point
        return _point(*values)


_POINT_KEYS = (
    "taskType",
    "taskID",
    "status",
    "startTimeStamp",
    "endTimeStamp",
    "expireTimeStamp",
)


def _point(
    task_type: Any, task_id: Any, status: Any, started: Any, ended: Any, expires: Any
) -> Point:
    return Point(
        task_type=_text(task_type) or "",
        task_id=task_id,
        status=status,
        started_at=started,
        ended_at=ended,
        expires_at=expires,
    )


# Most points of a polled workflow are the same from poll to poll (and across the workflows
# of one list); a Point is immutable, so equal raw strings share one parsed value and a poll
# skips validation and timestamp parsing for them. Bounded: one entry is a few hundred bytes.
_cached_point = functools.lru_cache(maxsize=16384)(_point)


class Line(_Model):
    """An edge of the workflow graph (``status.lineStatuses[]``)."""

    start: Text = None
    end: Text = None
    critical: bool | None = None

    @classmethod
    def from_api(cls, raw: Any) -> Line:
        raw = _dict(raw)
        critical = raw.get("critical")
        start = _dict(raw.get("startPoint")).get("taskType")
        end = _dict(raw.get("endPoint")).get("taskType")
        critical = critical if isinstance(critical, bool) else None
        if (start is None or type(start) is str) and (end is None or type(end) is str):
            return _cached_line(start, end, critical)  # see _cached_line
        return cls(start=start, end=end, critical=critical)


# Every workflow of one kind has the same few edges: a Line is immutable, so equal ones are
# one object (100,000 watched workflows kept ~300,000 Lines, issue 12.6). Tiny key space.
def _line(start: str | None, end: str | None, critical: bool | None) -> Line:
    return Line(start=start, end=end, critical=critical)


_cached_line = functools.lru_cache(maxsize=1024)(_line)


class Workflow(_Model):
    """An upgrade workflow (ShowUpgradeWorkFlow, or one item of the list)."""

    uid: str
    name: Text = None
    cluster_id: Text = None
    cluster_version: Text = None
    target_version: Text = None
    phase: Text = None
    points: tuple[Point, ...] = ()
    lines: tuple[Line, ...] = ()
    created_at: Time = None
    updated_at: Time = None

    @classmethod
    def from_api(cls, raw: Any) -> Workflow:
        """Parse the cloud's JSON; raises ValueError when it is not a workflow at all."""
        if not isinstance(raw, dict):
            raise ValueError("workflow body is not a JSON object")
        metadata, spec, status = (_dict(raw.get(k)) for k in ("metadata", "spec", "status"))
        uid = _text(metadata.get("uid"))
        if not uid:
            raise ValueError("workflow body has no metadata.uid")
        return cls(
            uid=uid,
            name=metadata.get("name"),
            cluster_id=spec.get("clusterID"),
            cluster_version=spec.get("clusterVersion"),
            target_version=spec.get("targetVersion"),
            phase=status.get("phase"),
            points=tuple(Point.from_api(p) for p in _list(status.get("pointStatuses"))),
            lines=tuple(Line.from_api(x) for x in _list(status.get("lineStatuses"))),
            created_at=metadata.get("creationTimestamp"),
            updated_at=metadata.get("updateTimestamp"),
        )

    def point(self, task_type: str) -> Point | None:
        """The first point of a task type, or None when the graph has no such node."""
        return next((p for p in self.points if p.task_type == task_type), None)


def parse_workflow_list(raw: Any) -> tuple[Workflow, ...]:
    """Parse ListUpgradeWorkFlows, newest first (the API's item order is unspecified)."""
    items = []
    for item in workflow_items(raw):
        try:
            items.append(Workflow.from_api(item))
        except ValueError:
            continue  # an item without a uid cannot be watched; skip it, keep the rest
    return newest_first(items)


def workflow_items(raw: Any) -> list[Any]:
    """The raw items of a ListUpgradeWorkFlows body (unparsed: a caller may skip some)."""
    if not isinstance(raw, dict):
        raise ValueError("workflow list body is not a JSON object")
    return _list(raw.get("items"))


def item_uid(item: Any) -> str | None:
    """A raw list item's ``metadata.uid`` without parsing the item (None: it has none)."""
    metadata = item.get("metadata") if isinstance(item, dict) else None
    return _text(metadata.get("uid")) if isinstance(metadata, dict) else None  # as from_api


def newest_first(workflows: Iterable[Workflow]) -> tuple[Workflow, ...]:
    return tuple(sorted(workflows, key=_creation_key, reverse=True))


def _creation_key(workflow: Workflow) -> tuple[float, str]:
    created = workflow.created_at
    return (created.timestamp() if created else 0.0, workflow.uid)


class CheckItem(_Model):
    """One pre-check item result (``itemsStatus[]``)."""

    name: Text = None
    kind: Text = None
    group: Text = None
    level: Text = None
    phase: Text = None
    message: Text = None
    node: Text = None
    error_codes: tuple[str, ...] = ()
    risk: Text = None  # riskSource summarised for people (see risk_summary)

    @classmethod
    def from_api(cls, raw: Any, node: str | None = None) -> CheckItem:
        raw = _dict(raw)
        return cls(
            name=raw.get("name"),
            kind=raw.get("kind"),
            group=raw.get("group"),
            level=raw.get("level"),
            phase=raw.get("phase"),
            message=raw.get("message"),
            node=node,
            error_codes=tuple(str(c) for c in _list(raw.get("errorCodes")) if c not in (None, "")),
            risk=risk_summary(raw.get("riskSource")),
        )

    @property
    def failed(self) -> bool:
        # Item phases are not enumerated anywhere; Failed and Error are the two the pre-check
        # task itself uses for "did not pass", so items share that meaning.
        return (self.phase or "") in {"Failed", "Error"}


_MAX_RISKS = 3


def risk_summary(raw: Any) -> str | None:
    """``riskSource`` in a few words: which deprecated API which caller uses, which nodes,
    addons and configuration entries are at risk (CCE_API.md 1.4). None when empty."""
    source = _dict(raw)
    parts: list[str] = []
    apis = [_dict(r) for r in _list(source.get("deprecatedAPIRisks"))]
    for api in apis[:_MAX_RISKS]:
        url = _text(api.get("url")) or "?"
        caller = _text(api.get("userAgent"))
        parts.append(f"deprecated API {url}" + (f" called by {caller}" if caller else ""))
    if len(apis) > _MAX_RISKS:
        parts.append(f"{len(apis) - _MAX_RISKS} more deprecated API calls")
    nodes = [n for r in _list(source.get("nodeRisks")) if (n := _text(_dict(r).get("NodeID")))]
    if nodes:
        shown = ", ".join(nodes[:_MAX_RISKS])
        more = f" and {len(nodes) - _MAX_RISKS} more" if len(nodes) > _MAX_RISKS else ""
        parts.append(f"node{'s' if len(nodes) > 1 else ''} {shown}{more}")
    addons = [_dict(r) for r in _list(source.get("addonRisks"))]
    names = [n for a in addons if (n := _text(a.get("alias")) or _text(a.get("addonTemplateName")))]
    if names:
        parts.append(f"addon{'s' if len(names) > 1 else ''} {', '.join(names[:_MAX_RISKS])}")
    configs = [_dict(r) for r in _list(source.get("configurationRisks"))]
    for cfg in configs[:_MAX_RISKS]:
        field = _text(cfg.get("field")) or "?"
        where = _text(cfg.get("sourceFile")) or _text(cfg.get("package"))
        parts.append(f"configuration {field}" + (f" in {where}" if where else ""))
    return "; ".join(parts) or None


class PreCheckTask(_Model):
    """ShowPreCheck: the pre-check task behind the workflow's PreCheck point."""

    uid: str
    phase: Text = None
    expires_at: Time = None
    message: Text = None
    items: tuple[CheckItem, ...] = ()

    @classmethod
    def from_api(cls, raw: Any) -> PreCheckTask:
        if not isinstance(raw, dict):
            raise ValueError("pre-check body is not a JSON object")
        metadata, status = _dict(raw.get("metadata")), _dict(raw.get("status"))
        items: list[CheckItem] = []
        for key in ("clusterCheckStatus", "addonCheckStatus"):
            items += [
                CheckItem.from_api(i) for i in _list(_dict(status.get(key)).get("itemsStatus"))
            ]
        for raw_stage in _list(_dict(status.get("nodeCheckStatus")).get("nodeStageStatus")):
            stage = _dict(raw_stage)
            node = _text(_dict(stage.get("nodeInfo")).get("name"))
            items += [CheckItem.from_api(i, node) for i in _list(stage.get("itemsStatus"))]
        return cls(
            uid=_text(metadata.get("uid")) or "",
            phase=status.get("phase"),
            expires_at=status.get("expireTimeStamp"),
            message=status.get("message"),
            items=tuple(items),
        )

    @property
    def failed_items(self) -> tuple[CheckItem, ...]:
        return tuple(i for i in self.items if i.failed)


class UpgradeTask(_Model):
    """ShowUpgradeClusterTask: the task behind the workflow's Cluster point."""

    uid: str
    phase: Text = None
    progress: Text = None
    version: Text = None
    target_version: Text = None
    completed_at: Time = None

    @classmethod
    def from_api(cls, raw: Any) -> UpgradeTask:
        if not isinstance(raw, dict):
            raise ValueError("upgrade task body is not a JSON object")
        metadata, spec, status = (_dict(raw.get(k)) for k in ("metadata", "spec", "status"))
        return cls(
            uid=_text(metadata.get("uid")) or "",
            phase=status.get("phase"),
            progress=status.get("progress"),
            version=spec.get("version"),
            target_version=spec.get("targetVersion"),
            completed_at=status.get("completionTime"),
        )


class Cluster(_Model):
    """ShowCluster / one item of ListClusters, reduced to what the watcher uses.

    ``alias`` is the display name people gave the cluster (``metadata.alias``); ``reason``
    and ``message`` say why it is not Available (e.g. a failed rollback).
    """

    uid: str
    name: Text = None
    alias: Text = None
    version: Text = None
    phase: Text = None
    reason: Text = None
    message: Text = None
    category: Text = None
    flavor: Text = None
    # metadata.labels: what project targets filter on (``cluster_labels``). Keys and values
    # are strings in the API; anything else is dropped rather than guessed at.
    labels: dict[str, str] = {}

    @property
    def display_name(self) -> str | None:
        """``metadata.alias``, falling back to ``metadata.name`` (a blank alias is none)."""
        alias = self.alias.strip() if self.alias else None
        return alias or self.name

    @property
    def trouble(self) -> str | None:
        """ "RollbackFailed: reason: message" when the cluster is not Available, else None."""
        if self.phase in (None, "Available"):
            return None
        detail = ": ".join(t for t in (self.reason, self.message) if t)
        return f"cluster is {self.phase}" + (f" ({detail})" if detail else "")

    @classmethod
    def from_api(cls, raw: Any) -> Cluster:
        if not isinstance(raw, dict):
            raise ValueError("cluster body is not a JSON object")
        metadata, spec, status = (_dict(raw.get(k)) for k in ("metadata", "spec", "status"))
        return cls(
            uid=_text(metadata.get("uid")) or "",
            name=metadata.get("name"),
            alias=metadata.get("alias"),
            version=spec.get("version"),
            phase=status.get("phase"),
            reason=status.get("reason"),
            message=status.get("message"),
            category=spec.get("category"),
            flavor=spec.get("flavor"),
            labels={
                k: v
                for k, v in _dict(metadata.get("labels")).items()
                if isinstance(k, str) and isinstance(v, str)
            },
        )


def parse_cluster_list(raw: Any) -> tuple[Cluster, ...]:
    """Parse ListClusters. ``items`` must be a list (a body without one is not a cluster
    list: an empty project answers ``"items": []``); an item that is no object or has no
    uid cannot be watched and is skipped, the rest are kept."""
    if not isinstance(raw, dict):
        raise ValueError("cluster list body is not a JSON object")
    items = raw.get("items")
    if not isinstance(items, list):
        raise ValueError("cluster list body has no items list")
    clusters = (Cluster.from_api(c) for c in items if isinstance(c, dict))
    return tuple(c for c in clusters if c.uid)
