"""The event builder shared by the diff and the time rules, and how points are named.

``EventContext`` carries what every event of one evaluation shares (target, workflow,
``now``, the "observed late" window) and stamps each event's ``occurred_at``. Kept apart so
watcher.core.diff and watcher.core.rules both build events the same way without importing
each other. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.core import wording
from watcher.core.events import Event, Severity, TargetRef
from watcher.core.models import ACTIVE_STATUSES, TERMINAL_PHASES, Point, TaskStatus, Workflow
from watcher.core.timeutil import iso

__all__ = [
    "ACTIVE",
    "FINAL_STATUSES",
    "TERMINAL",
    "EventContext",
    "occurred",
    "raw_status",
    "slots",
    "status_of",
]

ACTIVE = frozenset(s.value for s in ACTIVE_STATUSES)
TERMINAL = frozenset(p.value for p in TERMINAL_PHASES)
FINAL_STATUSES = frozenset({TaskStatus.SUCCESS.value, TaskStatus.FAILED.value})


@dataclass(frozen=True, slots=True)
class EventContext:
    """What every event of one evaluation shares; ``event`` builds one."""

    target: TargetRef
    cluster_name: str | None
    workflow: Workflow
    now: datetime
    late_since: datetime | None
    as_of: datetime | None = None
    # When the previous snapshot was taken: a change found now happened after it, so no
    # transition line may show an earlier time (None on first sight and for time rules).
    since: datetime | None = None

    def cloud_time(self, moment: datetime | None) -> datetime:
        """A cloud timestamp for a transition line, kept within (previous poll, now]."""
        if moment is None:
            return self.now
        moment = min(moment, self.now)
        return max(moment, self.since) if self.since is not None else moment

    def event(
        self,
        key: str,
        kind: str,
        severity: Severity,
        message: str,
        *,
        point: Point | None = None,
        old_status: str | None = None,
        new_status: str | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        expires_at: datetime | None = None,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> Event:
        """Build an event; ``at`` is when its fact happened (default: see ``_occurred``).

        "Observed late" is not written into the message: the templates render it once
        from ``late_since`` (watcher.core.wording.late_note).
        """
        wf = self.workflow
        info: dict[str, Any] = dict(details or {})
        if self.as_of is not None:
            message += wording.as_of_note(self.as_of, self.now)
            info["as_of"] = iso(self.as_of)
        return Event(
            dedup_key=key,
            kind=kind,
            severity=severity,
            target=self.target,
            observed_at=self.now,
            message=message,
            workflow_id=wf.uid,
            cluster_name=self.cluster_name,
            from_version=wf.cluster_version,
            to_version=wf.target_version,
            task_type=point.task_type if point else None,
            task_id=point.task_id if point else None,
            old_status=old_status,
            new_status=new_status,
            started_at=started_at if started_at else (point.started_at if point else None),
            ended_at=ended_at if ended_at else (point.ended_at if point else None),
            expires_at=expires_at if expires_at else (point.expires_at if point else None),
            late_since=self.late_since,
            details=info,
            occurred_at=(
                min(at, self.now)
                if at is not None
                else self.cloud_time(occurred(point, new_status, self.now))
            ),
        )


def occurred(point: Point | None, status: str | None, now: datetime) -> datetime:
    """A transition's cloud time: the start for Running/Queuing, the end for Success/Failed.

    Anything else (and a missing stamp) is the observation time; a cloud time after the
    observation (clock skew) is capped at it.
    """
    if point is not None and point.status == status:
        if status in ACTIVE and point.started_at is not None:
            return min(point.started_at, now)
        if status in FINAL_STATUSES and point.ended_at is not None:
            return min(point.ended_at, now)
    return now


def slots(wf: Workflow) -> list[tuple[str, Point]]:
    """Name each point: its task type, ``Type#2`` for a second point of the same type."""
    counts: dict[str, int] = {}
    out = []
    for point in wf.points:
        n = counts.get(point.task_type, 0) + 1
        counts[point.task_type] = n
        out.append((point.task_type if n == 1 else f"{point.task_type}#{n}", point))
    return out


def status_of(point: Point | None) -> str:
    """A point's status for the rules: a missing point or status is Init (not started)."""
    return (point.status if point else None) or TaskStatus.INIT.value


def raw_status(point: Point | None) -> str | None:
    return point.status if point else None
