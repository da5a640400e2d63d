"""The event vocabulary (SPEC.md section 3): what the engine emits and delivery sends.

Events are immutable values. An event's id is derived from its dedup key, so the same
logical event computed twice (a replay after a crash) has the same id and is stored once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from watcher.core.timeparse import parse_timestamp

_EVENT_NAMESPACE = uuid.UUID("5b0f8a2e-3c1d-4f7a-9d64-2f0c6b1e8a11")
_NAMESPACE_BYTES = _EVENT_NAMESPACE.bytes


def event_id(dedup_key: str) -> str:
    """``str(uuid.uuid5(_EVENT_NAMESPACE, dedup_key))`` without building a UUID object (the
    same RFC 4122 steps, a third of the CPU: every committed event asks for its id)."""
    name = _NAMESPACE_BYTES + dedup_key.encode()
    digest = bytearray(hashlib.sha1(name, usedforsecurity=False).digest()[:16])  # as uuid5
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


class Severity(StrEnum):
    """Apprise's NotifyType values, ordered by how loud they are."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.SUCCESS: 1, Severity.WARNING: 2, Severity.FAILURE: 3}


class Kind(StrEnum):
    """Every event kind in the catalog, plus the generic ones for unknown enum values."""

    WORKFLOW_DETECTED = "workflow.detected"
    WORKFLOW_STARTED = "workflow.started"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_RESUMED = "workflow.resumed"
    WORKFLOW_SUCCEEDED = "workflow.succeeded"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    WORKFLOW_ROLLED_BACK = "workflow.rolled_back"
    WORKFLOW_VANISHED = "workflow.vanished"
    WORKFLOW_REMINDER = "workflow.reminder"
    WORKFLOW_CHANGED = "workflow.changed"
    TASK_QUEUED = "task.queued"
    TASK_STARTED = "task.started"
    TASK_SUCCEEDED = "task.succeeded"
    TASK_FAILED = "task.failed"
    TASK_RETRIED = "task.retried"
    TASK_STALLED = "task.stalled"
    TASK_CHANGED = "task.changed"
    TASK_PAUSED = "task.paused"
    PRECHECK_EXPIRING = "precheck.expiring"
    PRECHECK_EXPIRED = "precheck.expired"
    TARGET_UNREACHABLE = "watcher.target_unreachable"
    TARGET_RECOVERED = "watcher.target_recovered"
    AUTH_FAILED = "watcher.auth_failed"
    STORE_FAILED = "watcher.store_failed"
    STORE_RECOVERED = "watcher.store_recovered"
    BUDGET_EXCEEDED = "watcher.budget_exceeded"
    BUDGET_RECOVERED = "watcher.budget_recovered"
    TEST = "watcher.test"


@dataclass(frozen=True, slots=True)
class TargetRef:
    """Who an event is about: the configured target's identity and labels."""

    name: str
    region: str
    project_id: str
    cluster_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    api: str = "cce"  # "cce" (/api/v3) or "autopilot" (/autopilot/v3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "project_id": self.project_id,
            "cluster_id": self.cluster_id,
            "labels": dict(self.labels),
            "api": self.api,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetRef:
        return cls(
            name=data["name"],
            region=data["region"],
            project_id=data["project_id"],
            cluster_id=data["cluster_id"],
            labels=dict(data.get("labels") or {}),
            api=data.get("api", "cce"),
        )


_TIME_FIELDS = (
    "started_at",
    "ended_at",
    "expires_at",
    "observed_at",
    "late_since",
    "occurred_at",
)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, with everything a template or route may need."""

    dedup_key: str
    kind: str
    severity: Severity
    target: TargetRef
    observed_at: datetime
    message: str
    workflow_id: str | None = None
    cluster_name: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    task_type: str | None = None
    task_id: str | None = None
    old_status: str | None = None
    new_status: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    expires_at: datetime | None = None
    # Set when the change happened while the watcher was not looking (restart, outage):
    # the change occurred somewhere between late_since and observed_at.
    late_since: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    # When the reported fact happened (the time its line shows): the cloud's timestamp of a
    # transition, a time rule's due time, or the observation time. None on events stored
    # before it existed (watcher.core.wording.line_time falls back).
    occurred_at: datetime | None = None

    @property
    def id(self) -> str:
        return event_id(self.dedup_key)

    @property
    def observed_late(self) -> bool:
        return self.late_since is not None

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.ended_at:
            return max(0.0, (self.ended_at - self.started_at).total_seconds())
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` restores an equal event."""
        out: dict[str, Any] = {}
        for name in _FIELD_NAMES:  # listed once: dataclasses.fields() is slow per call
            value = getattr(self, name)
            if name == "target":
                value = value.to_dict()
            elif name == "severity":
                value = str(value)
            elif name == "details":
                value = dict(value)
            elif isinstance(value, datetime):
                value = value.isoformat()
            out[name] = value
        out["id"] = self.id
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        kwargs: dict[str, Any] = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kwargs["target"] = TargetRef.from_dict(data["target"])
        kwargs["severity"] = Severity(data["severity"])
        kwargs["details"] = dict(data.get("details") or {})
        for name in _TIME_FIELDS:
            if isinstance(kwargs.get(name), str):
                kwargs[name] = parse_timestamp(kwargs[name])
        return cls(**kwargs)


_FIELD_NAMES = tuple(f.name for f in fields(Event))


def most_severe(events: list[Event] | tuple[Event, ...]) -> Severity:
    """The loudest severity among events (INFO for none)."""
    return max((e.severity for e in events), key=lambda s: s.rank, default=Severity.INFO)
