"""Words and numbers people read: one duration formatter, true line times, human states.

Chat, e-mail, the status page and ``check`` all render through these helpers, so a duration
or a state reads the same everywhere (issue 9). Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from watcher.core.models import Phase, TaskStatus, TaskType, Workflow

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
    if rollbacks:
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
    if phase == Phase.INIT or phase is None:
        return NOT_STARTED
    return str(phase)  # an unknown phase is shown as the cloud spells it


def rolled_back(workflow: Workflow) -> bool:
    """The last Rollback point succeeded: the cluster runs the old version again."""
    return human_state(workflow) == ROLLED_BACK


# ------------------------------------------------------------------------- engine phrases

_LABELS = {
    "PreCheck": "Pre-check",
    "Snapshot": "Snapshot",
    "Cluster": "Cluster upgrade",
    "PostCheck": "Post-check",
    "Rollback": "Rollback",
}


def progress_text(progress: Any) -> str:
    """Progress for people ("45%"); the raw string when it is not a number."""
    return percent(progress) or str(progress)


def failed_summary(wf: Workflow) -> str:
    """``Cluster upgrade task Failed after 5m, ...``: every failed point of a workflow."""
    failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
    if not failed:
        return "a task failed (the workflow does not say which)"
    parts = []
    for p in failed:
        duration = p.duration_s()
        took = f" after {format_duration(duration)}" if duration is not None else ""
        parts.append(f"{label(p.task_type)} Failed{took}")
    return ", ".join(parts)


def runs_again(wf: Workflow) -> str:
    """The version a rolled-back cluster runs again."""
    return wf.cluster_version or "the old version"


def label(task_type: str) -> str:
    """``Pre-check task``, ``Cluster upgrade task``; an unknown type as the cloud spells it."""
    return f"{_LABELS.get(task_type, task_type or 'Unnamed')} task"


def versions(wf: Workflow) -> str:
    """``v1.28 → v1.29``, ``?`` for a version the workflow does not give."""
    return f"{wf.cluster_version or '?'} → {wf.target_version or '?'}"
