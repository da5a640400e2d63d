"""Words and numbers people read: one duration formatter, true line times, human states.

Chat, e-mail, the status page and ``check`` all render through these helpers, so a duration
or a state reads the same everywhere (issue 9). Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

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
    if progress is None or isinstance(progress, bool):
        return None
    if isinstance(progress, str):  # "45.00", or "45%" as some clouds spell it
        progress = progress.strip().removesuffix("%")
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


# ------------------------------------------------------------------------- engine messages
# Every sentence the engine puts into an event's ``message``. The engine decides kind,
# severity and details; these only say it in words (issue 8: one place for the text).

PAUSE_NEXT_STEP = "Continue the upgrade in the CCE console when ready, or find out who paused it."
ROLLED_BACK_NEXT_STEP = "Find out why the upgrade failed before you start it again."
NO_START_NOTE = " (no start time from the cloud; counted from when the watcher saw it)"


def found_line(wf: Workflow, now: datetime, took: timedelta | None) -> str:
    """The head of ``workflow.detected``; ``took`` is the whole run of a finished workflow."""
    vers, phase = versions(wf), wf.phase
    if rolled_back(wf):
        return f"Found upgrade {vers} rolled back; the cluster runs {runs_again(wf)} again"
    if phase == Phase.PENDING:
        return f"Found upgrade {vers} failed: {failed_summary(wf)}"
    if phase == Phase.RUNNING:
        active = [p for p in wf.points if p.status in _ACTIVE]
        if not active:
            return f"Found upgrade {vers} running"
        p = active[0]
        running = f" for {format_duration(now - p.started_at)}" if p.started_at else ""
        return f"Found upgrade {vers} running: {label(p.task_type)} {p.status}{running}"
    if phase == Phase.INIT:
        return f"Found upgrade {vers} not started yet"
    if phase == Phase.SUCCESS:
        in_took = f" in {format_duration(took)}" if took is not None else ""
        return f"Found upgrade {vers} already succeeded{in_took}"
    if phase == Phase.CANCEL:
        return f"Found upgrade {vers} cancelled"
    return f"Found upgrade {vers} in phase {phase or 'unknown'}"


def precheck_expired_note(expires: datetime, now: datetime) -> str:
    return f"pre-check expired at {clock(expires, now)}: run it again"


def precheck_expires_note(left: timedelta) -> str:
    return f"pre-check expires in {format_duration(left)}"


def paused_note(progress: str | None) -> str:
    pct = percent(progress)
    return "the upgrade task is paused" + (f" at {pct}" if pct else "")


def stall_text(task_type: str, status: str | None, running: timedelta, threshold: timedelta) -> str:
    """``Cluster upgrade task Running for 2h, past its 1h threshold`` (notice and summary)."""
    return (
        f"{label(task_type)} {status} for {format_duration(running)}, "
        f"past its {format_duration(threshold)} threshold"
    )


def task_retried(task_type: str, new_task_id: bool, attempt: int, status: str) -> str:
    why = "with a new task ID" if new_task_id else "after it Failed"
    return f"{label(task_type)} retried {why} (attempt {attempt}), now {status}"


def task_line(
    task_type: str,
    old: str | None,
    status: str,
    *,
    known: bool,
    wf: Workflow,
    duration: float | None,
    progress: str | None,
) -> str:
    """One point's new status: queued, started, succeeded, Failed, or an unknown change."""
    name = label(task_type)
    in_vers = f" ({versions(wf)})" if task_type in {TaskType.CLUSTER, TaskType.ROLLBACK} else ""
    if not known:
        return f"{name} status {old or 'Init'} → {status}"
    if status == TaskStatus.QUEUING:
        return f"{name} queued"
    if status == TaskStatus.RUNNING:
        text = f"{name} started{in_vers}"
        if task_type == TaskType.ROLLBACK:
            text = f"Rollback started: the cluster is being rolled back{in_vers}"
        if progress is not None:
            text += progress_note(progress)
        return text
    if status == TaskStatus.SUCCESS:
        took = f" in {format_duration(duration)}" if duration is not None else ""
        text = f"{name} succeeded{took}{in_vers}"
        if task_type == TaskType.ROLLBACK:
            text += f": the cluster runs {wf.cluster_version or '?'} again"
        return text
    took = f" after {format_duration(duration)}" if duration is not None else ""
    return f"{name} Failed{took}{in_vers}"


def progress_note(progress: str) -> str:
    """``, progress 45%`` after a started or stalled line."""
    return f", progress {progress_text(progress)}"


def task_paused(task_type: str, progress: str | None, wf: Workflow) -> str:
    shown = progress_text(progress)
    at = f" at {shown}" if shown else ""
    return (
        f"{label(task_type)} paused{at} ({versions(wf)}): "
        "it stays paused until someone continues it"
    )


def rolled_back_line(wf: Workflow) -> str:
    return f"Upgrade {versions(wf)} rolled back; the cluster runs {runs_again(wf)} again"


def workflow_failed(wf: Workflow) -> str:
    return f"Upgrade {versions(wf)} failed: {failed_summary(wf)}"


def workflow_succeeded(wf: Workflow, took: timedelta | None) -> str:
    in_took = f" in {format_duration(took)}" if took is not None else ""
    return f"Upgrade {versions(wf)} succeeded{in_took}"


def workflow_cancelled(wf: Workflow) -> str:
    return f"Upgrade {versions(wf)} cancelled"


def workflow_started(wf: Workflow) -> str:
    return f"Upgrade {versions(wf)} started"


def workflow_resumed(wf: Workflow, old: str, active: Point | None) -> str:
    what = (
        f": {label(active.task_type)} {active.status}"
        if active is not None
        else " (retry or rollback began)"
    )
    after = "after failure" if old == Phase.PENDING else f"after {old}"
    return f"Upgrade {versions(wf)} resumed {after}{what}"


def workflow_changed(wf: Workflow, old: str | None, new: str | None) -> str:
    return f"Upgrade {versions(wf)} phase {old or 'unknown'} → {new or 'unknown'}"


def workflow_vanished(wf: Workflow, last_seen: datetime, now: datetime) -> str:
    return (
        f"Upgrade {versions(wf)} no longer exists (HTTP 404); "
        f"last seen {wf.phase or 'unknown'} at {clock(last_seen, now)}"
    )


def reminder_line(wf: Workflow, since: datetime, now: datetime) -> str:
    return (
        f"Upgrade {versions(wf)} still failed after {format_duration(now - since)} "
        f"({failed_summary(wf)} at {clock(since, now)}): retry, roll back or cancel it"
    )


def precheck_expired_line(expires: datetime, now: datetime) -> str:
    return (
        f"Pre-check result expired at {clock(expires, now)}: "
        "run the pre-check again before upgrading"
    )


def precheck_expiring_line(expires: datetime, now: datetime) -> str:
    return (
        f"Pre-check result expires in {format_duration(expires - now)} "
        f"(at {clock(expires, now)}): start the cluster upgrade before then"
    )


def as_of_note(as_of: datetime, now: datetime) -> str:
    return f" (as of the last snapshot, {clock(as_of, now)})"
