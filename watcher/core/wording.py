"""Words and numbers people read: one duration formatter, true line times, human states.

Chat, e-mail, the status page and ``check`` all render through these helpers, so a duration
or a state reads the same everywhere (issue 9). Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from watcher.core.models import Phase, Point, TaskStatus, TaskType, Workflow

if TYPE_CHECKING:
    from watcher.core.events import Event


def format_duration(seconds: float | timedelta | None) -> str:
    """Render a duration for people: ``45s``, ``9m 5s``, ``2h 5m``, ``3d 4h`` ('' for None).

    A negative value (clock skew) is 0s; callers that mean "ago" say so in words.
    """
    if seconds is None:
        return ""
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if not math.isfinite(seconds):
        return ""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours}h" if hours else f"{days}d"
    elif hours:
        text = f"{hours}h {minutes}m" if minutes else f"{hours}h"
    elif minutes:
        text = f"{minutes}m {secs}s" if secs else f"{minutes}m"
    else:
        text = f"{secs}s"
    return text


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``1 attempt``, ``2 attempts``: never "1 attempts"."""
    return f"{count} {noun if count == 1 else (plural_noun or noun + 's')}"


def percent(progress: str | float | None) -> str | None:
    """The upgrade task's progress ("45.00") as ``45%``; None when absent or not a number."""
    if progress is None:
        return None
    try:
        value = float(progress)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    value = min(100.0, max(0.0, value))
    return f"{value:.0f}%" if value == int(value) else f"{value:.1f}%"


def clock(moment: datetime, now: datetime | None = None) -> str:
    """``10:05 UTC``, with the date when it is not the day of ``now``."""
    moment = moment.astimezone(UTC)
    if now is not None and moment.date() == now.astimezone(UTC).date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# ------------------------------------------------------------------------- line times


def line_time(event: Event) -> datetime:
    """When the fact an event reports happened (the time its timeline line shows).

    The engine stamps ``occurred_at``: the cloud's timestamp for a transition, the due time
    for a time rule, the observation time for the watcher's own findings. Events stored by
    an older version have no stamp; they fall back to the transition's cloud time, never
    to a start time for a line that reports an end.
    """
    if event.occurred_at is not None:
        return event.occurred_at
    if event.ended_at is not None:
        return min(event.ended_at, event.observed_at)
    if event.new_status in {TaskStatus.RUNNING, TaskStatus.QUEUING} and event.started_at:
        return min(event.started_at, event.observed_at)
    return event.observed_at


def late_note(event: Event) -> str | None:
    """The one "observed late" note of a line, or None (rendered once, by the templates)."""
    if event.late_since is None:
        return None
    return (
        f"observed late: happened between {clock(event.late_since, event.observed_at)}"
        f" and {clock(event.observed_at, event.observed_at)}"
    )


# ------------------------------------------------------------------------- human state

RUNNING = "Running"
NOT_STARTED = "Not started"
FAILED = "Failed"
ROLLING_BACK = "Rolling back"
ROLLED_BACK = "Rolled back"
SUCCEEDED = "Succeeded"
CANCELLED = "Cancelled"

_ACTIVE = {TaskStatus.QUEUING.value, TaskStatus.RUNNING.value}


def human_state(workflow: Workflow) -> str:
    """The state people read (check, API ``state``, the page, ``/metrics``).

    CCE's ``Pending`` (a task failed) reads "Failed"; a Rollback point decides between
    "Rolling back", "Rolled back" and "Failed" whatever the phase says, because after a
    successful rollback the cluster runs the old version again: that is neither a fresh
    failure nor a success. The raw phase stays in the JSON.
    """
    phase = workflow.phase
    if phase == Phase.CANCEL:
        return CANCELLED
    rollbacks = [p for p in workflow.points if p.task_type == TaskType.ROLLBACK]
    if rollbacks and not _retried_since(workflow, rollbacks[-1]):
        last = rollbacks[-1].status or TaskStatus.INIT.value
        if last in _ACTIVE:
            return ROLLING_BACK
        if last == TaskStatus.SUCCESS:
            return ROLLED_BACK
        if last == TaskStatus.FAILED:
            return FAILED
    if phase == Phase.PENDING:
        return FAILED
    if phase == Phase.SUCCESS:
        return SUCCEEDED
    if phase == Phase.RUNNING:
        return RUNNING
    if phase is None:  # no phase in the answer: what the tasks say
        statuses = {p.status for p in workflow.points}
        if statuses & _ACTIVE:
            return RUNNING
        return FAILED if TaskStatus.FAILED.value in statuses else NOT_STARTED
    if phase == Phase.INIT:
        return NOT_STARTED
    return str(phase)  # an unknown phase is shown as the cloud spells it


def _retried_since(workflow: Workflow, rollback: Point) -> bool:
    """An upgrade task started after the rollback ended: the rollback is history now."""
    since = rollback.ended_at or rollback.started_at
    if since is None or rollback.status in _ACTIVE:
        return False
    return any(
        p.task_type != TaskType.ROLLBACK and p.started_at is not None and p.started_at > since
        for p in workflow.points
    )


def rolled_back(workflow: Workflow) -> bool:
    """The last Rollback point succeeded: the cluster runs the old version again."""
    return human_state(workflow) == ROLLED_BACK
