"""The transition diff: what changed between two snapshots of one workflow.

``detected`` is the one summary of a workflow seen for the first time; ``point_step`` diffs
one point (task) and decides when its attempt counter re-arms: when a new task ID replaces
the last known one, when a new start time replaces the last known one (except on
Queuing → Running, where the cloud may re-stamp the start), and when a Failed or Success
point goes back to a non-final status (or Failed → Success: a retry we did not see
running); ``phase_event`` reports a phase change. Keys come from watcher.core.keys. Pure.

Over ~400 lines on purpose: the three diffs share the enrichment helpers at the bottom and
each is one long decision table that reads best whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from watcher.core import advice, keys, rules, wording
from watcher.core.eventctx import (
    ACTIVE,
    FINAL_STATUSES,
    TERMINAL,
    EventContext,
    raw_status,
    status_of,
)
from watcher.core.events import Event, Kind, Severity
from watcher.core.models import (
    Cluster,
    Phase,
    Point,
    PreCheckTask,
    TaskStatus,
    TaskType,
    UpgradeTask,
    Workflow,
)
from watcher.core.policy import Policy
from watcher.core.state import Track, WatchState
from watcher.core.timeutil import iso
from watcher.core.wording import rolled_back

__all__ = ["Enrichment", "detected", "pending_base", "phase_event", "point_step"]

_KNOWN_TYPES = frozenset(t.value for t in TaskType)
_KNOWN_STATUSES = frozenset(s.value for s in TaskStatus)


@dataclass(frozen=True, slots=True)
class Enrichment:
    """Extra calls the runtime made this poll because ``enrichment_wanted`` asked."""

    precheck: PreCheckTask | None = None
    upgrade: UpgradeTask | None = None
    cluster: Cluster | None = None  # ShowCluster after a Cluster/Rollback task failed


def detected(ctx: EventContext, state: WatchState, policy: Policy, enrichment: Enrichment) -> Event:
    wf, now = state.workflow, ctx.now
    phase = wf.phase
    failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
    active = [p for p in wf.points if p.status in ACTIVE]
    focus = failed[0] if failed else (active[0] if active else None)
    notes: list[str] = []
    details: dict[str, Any] = {
        "phase": phase,
        "points": [point_json(p) for p in wf.points],
    }
    severity = Severity.FAILURE if phase == Phase.PENDING else Severity.INFO
    span = workflow_span(wf) if phase == Phase.SUCCESS else None
    head = wording.found_line(wf, now, span[1] - span[0] if span else None)
    if rolled_back(wf):
        severity = Severity.WARNING
    elif phase == Phase.PENDING:
        details["failed_tasks"] = [point_json(p) for p in failed]
        details["next_step"] = advice.task_next_step(failed[0].task_type if failed else None)
        if any(p.task_type == TaskType.ROLLBACK for p in failed):
            details["critical"] = True
    pre = wf.point(TaskType.PRECHECK)
    expires = rules.precheck_expiry(state.workflow)
    if pre is not None and expires is not None:
        if now >= expires:
            notes.append(wording.precheck_expired_note(expires, now))
            severity = Severity.FAILURE if severity == Severity.FAILURE else Severity.WARNING
        else:
            notes.append(wording.precheck_expires_note(expires - now))
    for stall in rules.stalls(state, policy):
        if stall.k_at(now) >= 1:
            point = stall.point
            threshold = policy.stall_threshold(point.task_type)
            notes.append(
                wording.stall_text(point.task_type, point.status, now - stall.base, threshold)
            )
            if severity.rank < Severity.WARNING.rank:
                severity = Severity.WARNING
    if pre is not None and pre.status == TaskStatus.FAILED:
        task = precheck_for(pre, enrichment)
        if task is not None:
            items = advice.failed_item_dicts(task)
            details["failed_items"] = items
            notes.append(advice.items_text(items, task.message))
            details["next_step"] = advice.precheck_next_step(items)
    cluster = wf.point(TaskType.CLUSTER)
    cluster_track = state.tracks.get(TaskType.CLUSTER.value, Track())
    if cluster is not None and cluster.status in ACTIVE and cluster_track.paused:
        notes.append(wording.paused_note(cluster_track.progress))
        details["paused"] = True
    message = head + ("; " + "; ".join(notes) if notes else "")
    progress = cluster_track.progress
    if cluster is not None and cluster.status in ACTIVE and progress is not None:
        details["progress"] = progress
    return ctx.event(
        keys.detected(wf.uid),
        Kind.WORKFLOW_DETECTED,
        severity,
        message,
        point=focus,
        new_status=phase,
        expires_at=expires,
        details=details,
        at=now,
    )


# --------------------------------------------------------------------------- points


def point_step(
    ctx: EventContext,
    slot: str,
    prev: Point | None,
    cur: Point,
    track: Track | None,
    fired: set[str],
    enrichment: Enrichment,
) -> tuple[list[Event], Track]:
    """Diff one point; adds the keys it emits to ``fired``; returns events and new track."""
    ps = status_of(prev)
    cs = status_of(cur)
    is_new_point = track is None
    track = track or Track()
    reason: str | None = None
    if cur.task_id and track.task_id and cur.task_id != track.task_id:
        reason = "new task ID"
    elif (
        cur.started_at
        and track.started_at
        and cur.started_at != track.started_at
        and ps != TaskStatus.QUEUING
    ):
        reason = "new start time"
    elif (ps in FINAL_STATUSES and cs not in FINAL_STATUSES) or (
        ps == TaskStatus.FAILED and cs == TaskStatus.SUCCESS
    ):
        reason = "re-run"
    if reason is not None and not is_new_point:
        track = Track(attempt=track.attempt + 1, attempt_seen_at=ctx.now)
    new_track = Track(
        attempt=track.attempt,
        task_id=cur.task_id or track.task_id,
        started_at=cur.started_at or track.started_at,
        active_since=(
            (track.active_since or ctx.now) if cs in ACTIVE and cur.started_at is None else None
        ),
        progress=progress_for(cur, enrichment) or track.progress,
        attempt_seen_at=track.attempt_seen_at,
        paused=track.paused,
        pauses=track.pauses,
    )
    events: list[Event] = []
    base = keys.task_base(ctx.workflow.uid, slot, new_track.attempt, cur.task_id)
    common: dict[str, Any] = {"slot": slot, "attempt": new_track.attempt}
    if new_track.progress is not None and cur.task_type == TaskType.CLUSTER:
        common["progress"] = new_track.progress
    new_track = _pause_step(ctx, cur, new_track, base, common, enrichment, fired, events)
    if reason is None and cs == ps:
        return events, new_track

    if reason is not None and ps == TaskStatus.FAILED and not is_new_point:
        key = keys.retried(base)
        if key not in fired:
            events.append(
                ctx.event(
                    key,
                    Kind.TASK_RETRIED,
                    Severity.WARNING,
                    wording.task_retried(
                        cur.task_type, reason == "new task ID", new_track.attempt, cs
                    ),
                    point=cur,
                    old_status=raw_status(prev),
                    new_status=raw_status(cur),
                    details={**common, "reason": reason, "previous_task_id": _task_id(prev)},
                )
            )
            fired.add(key)

    if cs == TaskStatus.INIT:
        return events, new_track  # a reset or a retry waiting to run: nothing to say yet

    key = keys.task_status(base, cs)
    if key in fired:
        return events, new_track
    old = raw_status(prev)
    known = cur.task_type in _KNOWN_TYPES and cs in _KNOWN_STATUSES
    duration = cur.duration_s()
    details = dict(common)
    message = wording.task_line(
        cur.task_type,
        old,
        cs,
        known=known,
        wf=ctx.workflow,
        duration=duration,
        progress=details.get("progress"),
    )
    if not known:
        kind, severity = (
            Kind.TASK_CHANGED,
            (Severity.FAILURE if cs == TaskStatus.FAILED else Severity.WARNING),
        )
    elif cs == TaskStatus.QUEUING:
        kind, severity = Kind.TASK_QUEUED, Severity.INFO
    elif cs == TaskStatus.RUNNING:
        kind = Kind.TASK_STARTED
        severity = Severity.WARNING if cur.task_type == TaskType.ROLLBACK else Severity.INFO
    elif cs == TaskStatus.SUCCESS:
        kind, severity = Kind.TASK_SUCCEEDED, Severity.SUCCESS
        if cur.task_type == TaskType.ROLLBACK:
            # The upgrade did not happen: good news for the cluster, not for the upgrade.
            severity = Severity.WARNING
    else:  # Failed
        kind, severity = Kind.TASK_FAILED, Severity.FAILURE
        details["next_step"] = advice.task_next_step(cur.task_type)
        if cur.task_type == TaskType.PRECHECK:
            pre_task = precheck_for(cur, enrichment)
            if pre_task is not None:
                items = advice.failed_item_dicts(pre_task)
                details["failed_items"] = items
                if pre_task.message:
                    details["precheck_message"] = pre_task.message
                message += f": {advice.items_text(items, pre_task.message)}"
                details["next_step"] = advice.precheck_next_step(items)
        if cur.task_type == TaskType.ROLLBACK:
            details["critical"] = True
        trouble = _cluster_trouble(cur, enrichment)
        if trouble:
            details["cluster_trouble"] = trouble
            message += f"; {trouble}"
    if duration is not None and cs in FINAL_STATUSES:
        details["duration_s"] = duration
    events.append(
        ctx.event(
            key,
            kind,
            severity,
            message,
            point=cur,
            old_status=old,
            new_status=raw_status(cur),
            details=details,
        )
    )
    fired.add(key)
    return events, new_track


def _pause_step(
    ctx: EventContext,
    cur: Point,
    track: Track,
    base: str,
    common: Mapping[str, Any],
    enrichment: Enrichment,
    fired: set[str],
    events: list[Event],
) -> Track:
    """``task.paused`` once per pause of the upgrade task (the point itself stays Running:
    the workflow's point enum has no Pause, the upgrade task's has, CCE_API.md 1.4)."""
    task = enrichment.upgrade
    if task is None or not _same_upgrade_task(cur, task):
        return track
    if task.phase != "Pause":
        return replace(track, paused=False) if track.paused else track
    if track.paused:
        return track
    track = replace(track, paused=True, pauses=track.pauses + 1)
    key = keys.paused(base, track.pauses)
    if key in fired:
        return track
    events.append(
        ctx.event(
            key,
            Kind.TASK_PAUSED,
            Severity.WARNING,
            wording.task_paused(cur.task_type, task.progress, ctx.workflow),
            point=cur,
            old_status=cur.status,
            new_status="Pause",
            details={
                **common,
                "upgrade_phase": task.phase,
                "next_step": wording.PAUSE_NEXT_STEP,
            },
            at=ctx.now,
        )
    )
    fired.add(key)
    return track


def _same_upgrade_task(point: Point, task: UpgradeTask) -> bool:
    if point.task_type != TaskType.CLUSTER:
        return False
    return not (task.uid and point.task_id and task.uid != point.task_id)


def paused(point: Point, enrichment: Enrichment) -> bool:
    task = enrichment.upgrade
    return (
        task is not None
        and point.status in ACTIVE
        and _same_upgrade_task(point, task)
        and task.phase == "Pause"
    )


def _cluster_trouble(point: Point, enrichment: Enrichment) -> str | None:
    cluster = enrichment.cluster
    if cluster is None or point.task_type not in {TaskType.CLUSTER, TaskType.ROLLBACK}:
        return None
    return cluster.trouble


def _task_id(point: Point | None) -> str | None:
    return point.task_id if point else None


# --------------------------------------------------------------------------- phase


def phase_event(
    ctx: EventContext, old: str | None, new: str | None, seq: int, enrichment: Enrichment
) -> Event:
    wf = ctx.workflow
    key = keys.phase(wf.uid, seq, new)
    details: dict[str, Any] = {"phase_seq": seq}
    span = workflow_span(wf)
    if new in (Phase.PENDING, Phase.SUCCESS) and rolled_back(wf):
        # After a successful rollback CCE leaves the workflow Pending (or ends it): either
        # way the story is "rolled back", not a fresh failure and never a success.
        rollback = [p for p in wf.points if p.task_type == TaskType.ROLLBACK][-1]
        return ctx.event(
            key,
            Kind.WORKFLOW_ROLLED_BACK,
            Severity.WARNING,
            wording.rolled_back_line(wf),
            point=rollback,
            old_status=old,
            new_status=new,
            details={**details, "next_step": wording.ROLLED_BACK_NEXT_STEP},
            at=ctx.cloud_time(rollback.ended_at),
        )
    if new == Phase.PENDING:
        failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
        details["failed_tasks"] = [point_json(p) for p in failed]
        focus = failed[-1] if failed else None
        ends = [p.ended_at for p in failed if p.ended_at]
        if focus is not None:
            details["next_step"] = advice.task_next_step(focus.task_type)
            if focus.task_type == TaskType.PRECHECK:
                task = precheck_for(focus, enrichment)
                if task is not None:
                    details["next_step"] = advice.precheck_next_step(advice.failed_item_dicts(task))
        if any(p.task_type == TaskType.ROLLBACK for p in failed):
            details["critical"] = True
        return ctx.event(
            key,
            Kind.WORKFLOW_FAILED,
            Severity.FAILURE,
            wording.workflow_failed(wf),
            point=focus,
            old_status=old,
            new_status=new,
            details=details,
            at=ctx.cloud_time(max(ends)) if ends else ctx.now,
        )
    if new == Phase.SUCCESS:
        started = ended = None
        if span:
            started, ended = span
            details["duration_s"] = (ended - started).total_seconds()
        return ctx.event(
            key,
            Kind.WORKFLOW_SUCCEEDED,
            Severity.SUCCESS,
            wording.workflow_succeeded(wf, ended - started if started and ended else None),
            old_status=old,
            new_status=new,
            started_at=started,
            ended_at=ended,
            details=details,
            at=ctx.cloud_time(ended),
        )
    if new == Phase.CANCEL:
        return ctx.event(
            key,
            Kind.WORKFLOW_CANCELLED,
            Severity.WARNING,
            wording.workflow_cancelled(wf),
            old_status=old,
            new_status=new,
            details=details,
        )
    if new == Phase.RUNNING and old == Phase.INIT:
        return ctx.event(
            key,
            Kind.WORKFLOW_STARTED,
            Severity.INFO,
            wording.workflow_started(wf),
            old_status=old,
            new_status=new,
            started_at=span[0] if span else None,
            details=details,
            at=ctx.cloud_time(_first_start(wf)),
        )
    if new == Phase.RUNNING and old not in TERMINAL and old is not None:
        active = [p for p in wf.points if p.status in ACTIVE]
        return ctx.event(
            key,
            Kind.WORKFLOW_RESUMED,
            Severity.INFO,
            wording.workflow_resumed(wf, old, active[0] if active else None),
            point=active[0] if active else None,
            old_status=old,
            new_status=new,
            details=details,
            at=ctx.cloud_time(active[0].started_at if active else None),
        )
    return ctx.event(
        key,
        Kind.WORKFLOW_CHANGED,
        Severity.WARNING,
        wording.workflow_changed(wf, old, new),
        old_status=old,
        new_status=new,
        details=details,
    )


def _first_start(wf: Workflow) -> datetime | None:
    starts = [p.started_at for p in wf.points if p.started_at]
    return min(starts) if starts else None


def pending_base(wf: Workflow, now: datetime) -> datetime:
    ends = [p.ended_at for p in wf.points if p.status == TaskStatus.FAILED and p.ended_at]
    return max(ends) if ends else now


def workflow_span(wf: Workflow) -> tuple[datetime, datetime] | None:
    starts = [p.started_at for p in wf.points if p.started_at]
    ends = [p.ended_at for p in wf.points if p.ended_at]
    if not starts or not ends:
        return None
    first, last = min(starts), max(ends)
    return (first, last) if last >= first else None


def progress_for(point: Point, enrichment: Enrichment) -> str | None:
    task = enrichment.upgrade
    if task is None or point.task_type != TaskType.CLUSTER or point.status not in ACTIVE:
        return None
    if task.uid and point.task_id and task.uid != point.task_id:
        return None
    return task.progress


def precheck_for(point: Point, enrichment: Enrichment) -> PreCheckTask | None:
    task = enrichment.precheck
    if task is None or (task.uid and point.task_id and task.uid != point.task_id):
        return None
    return task


def point_json(p: Point) -> dict[str, Any]:
    return {
        "task_type": p.task_type,
        "task_id": p.task_id,
        "status": p.status,
        "started_at": iso(p.started_at),
        "ended_at": iso(p.ended_at),
        "expires_at": iso(p.expires_at),
    }
