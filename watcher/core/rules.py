"""The time rules: pre-check expiry milestones, stall notices, failure reminders.

Each rule fires at a due time, not on a change: ``time_rules`` emits what fell due by
``now`` (or, on first sight, marks it fired silently) and ``next_deadline`` says when the
next one falls due, so the scheduler can poll just in time (watcher.core.cadence). Keys come
from watcher.core.keys; the k-th repeat of a periodic rule is its own key. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from watcher.core import advice, keys, wording
from watcher.core.acks import Acknowledgement
from watcher.core.eventctx import ACTIVE, TERMINAL, EventContext, slots, status_of
from watcher.core.events import Event, Kind, Severity
from watcher.core.models import Phase, Point, TaskStatus, TaskType, Workflow
from watcher.core.policy import Policy
from watcher.core.state import Track, WatchState
from watcher.core.timeutil import iso, utc
from watcher.core.wording import rolled_back

__all__ = ["next_deadline", "precheck_expiry", "stalls", "time_rules"]


def next_deadline(state: WatchState, now: datetime, policy: Policy) -> datetime | None:
    """The earliest moment at which a time rule of this state falls due, or None.

    It is after ``now`` unless a rule is overdue because it was not evaluated yet (the
    caller then polls or evaluates at once).
    """
    now = utc(now)
    if state.workflow.phase in TERMINAL:
        return None
    moments: list[datetime] = []
    for milestone in precheck_milestones(state, policy):
        if milestone.key not in state.fired:
            moments.append(milestone.at)
    for stall in stalls(state, policy):
        moments.append(stall.first + max(stall.k_at(now), stall.k_fired) * policy.repeat_interval)
    reminder = reminder_rule(state, policy)
    if reminder is not None:
        k = max(reminder.k_at(now), reminder.k_fired)
        moments.append(reminder.since + (k + 1) * policy.repeat_interval)
    return min(moments) if moments else None


@dataclass(frozen=True, slots=True)
class _Milestone:
    at: datetime
    key: str
    lead: timedelta | None  # None: the expiry itself


@dataclass(frozen=True, slots=True)
class _Periodic:
    """A rule that fires at first, first+repeat, ... (k counts from 1 at ``first``)."""

    first: datetime
    repeat: timedelta
    prefix: str
    k_fired: int
    base: datetime
    point: Point
    slot: str

    def k_at(self, now: datetime) -> int:
        if now < self.first:
            return 0
        return 1 + int((now - self.first) / self.repeat)


def precheck_expiry(wf: Workflow) -> datetime | None:
    """When a passed pre-check stops being valid, while that matters (the upgrade has not
    started and the workflow is not over); else None. The expiry rules and every view of
    the countdown (check, API, status page) use this one rule."""
    if wf.phase in TERMINAL:
        return None
    pre = wf.point(TaskType.PRECHECK)
    if pre is None or pre.status != TaskStatus.SUCCESS or pre.expires_at is None:
        return None
    cluster = wf.point(TaskType.CLUSTER)
    if cluster is not None and status_of(cluster) != TaskStatus.INIT:
        return None
    return pre.expires_at


def precheck_milestones(state: WatchState, policy: Policy) -> list[_Milestone]:
    expires = precheck_expiry(state.workflow)
    pre = state.workflow.point(TaskType.PRECHECK)
    if expires is None or pre is None:
        return []
    attempt = state.tracks.get(TaskType.PRECHECK.value, Track()).attempt
    base = keys.task_base(state.workflow.uid, TaskType.PRECHECK.value, attempt, pre.task_id)
    out = [
        _Milestone(expires - lead, keys.precheck_expiring(base, expires, lead), lead)
        for lead in policy.precheck_leads
    ]
    out.append(_Milestone(expires, keys.precheck_expired(base, expires), None))
    return sorted(out, key=lambda m: m.at)


def stalls(state: WatchState, policy: Policy) -> list[_Periodic]:
    wf = state.workflow
    if wf.phase in TERMINAL:
        return []
    out = []
    fired_k = keys.k_index(state.fired)  # one pass, not one per point (5,000 points: seconds)
    for slot, point in slots(wf):
        if point.status not in ACTIVE:
            continue
        track = state.tracks.get(slot, Track())
        base = point.started_at or track.active_since
        if base is not None and track.attempt_seen_at is not None:
            base = max(base, track.attempt_seen_at)
        if base is None:
            continue
        prefix = keys.stalled_prefix(wf.uid, slot, track.attempt)
        out.append(
            _Periodic(
                first=base + policy.stall_threshold(point.task_type),
                repeat=policy.repeat_interval,
                prefix=prefix,
                k_fired=fired_k.get(prefix, 0),
                base=base,
                point=point,
                slot=slot,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class _Reminder:
    since: datetime
    repeat: timedelta
    prefix: str
    k_fired: int

    def k_at(self, now: datetime) -> int:
        if now < self.since:
            return 0
        return int((now - self.since) / self.repeat)


def reminder_rule(state: WatchState, policy: Policy) -> _Reminder | None:
    if state.workflow.phase != Phase.PENDING or state.pending_since is None:
        return None
    if rolled_back(state.workflow):
        return None  # the cluster runs the old version again: nothing is left failing
    prefix = keys.reminder_prefix(state.workflow.uid, state.phase_seq)
    return _Reminder(
        state.pending_since, policy.repeat_interval, prefix, keys.max_k(state.fired, prefix)
    )


def time_rules(
    state: WatchState,
    ctx: EventContext,
    policy: Policy,
    *,
    silent: bool,
    ack: Acknowledgement | None = None,
) -> tuple[list[Event], frozenset[str]]:
    """Events of every time rule newly due at ``ctx.now``, and the fired set after them.

    ``silent`` (first sight) marks what is due as fired without emitting it; an ``ack`` in
    force does the same for reminders and stall notices after the first.
    """
    now, wf = ctx.now, state.workflow
    acked = ack is not None and ack.in_force(now)
    fired = set(state.fired)
    events: list[Event] = []

    due = [m for m in precheck_milestones(state, policy) if m.at <= now]
    if due:
        most_urgent = due[-1]  # the expiry, or the shortest lead already reached
        if most_urgent.key not in fired and not silent:
            events.append(_precheck_event(ctx, state, most_urgent))
        fired.update(m.key for m in due)  # longer leads jumped over are not sent late

    for stall in stalls(state, policy):
        k = stall.k_at(now)
        if k >= 1 and k > stall.k_fired:
            key = keys.nth(stall.prefix, k)
            fired.add(key)
            if not silent and not (acked and k >= 2):
                events.append(_stall_event(ctx, state, stall, key, policy))

    reminder = reminder_rule(state, policy)
    if reminder is not None:
        k = reminder.k_at(now)
        if k >= 1 and k > reminder.k_fired:
            key = keys.nth(reminder.prefix, k)
            fired.add(key)
            if not silent and not acked:
                failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
                since = reminder.since
                events.append(
                    ctx.event(
                        key,
                        Kind.WORKFLOW_REMINDER,
                        Severity.FAILURE,
                        wording.reminder_line(wf, since, now),
                        point=failed[0] if failed else None,
                        new_status=wf.phase,
                        details={
                            "reminder": k,
                            "pending_since": iso(since),
                            "next_step": advice.task_next_step(
                                failed[-1].task_type if failed else None
                            ),
                        },
                        at=since + k * reminder.repeat,
                    )
                )
    return events, frozenset(fired)


def _precheck_event(ctx: EventContext, state: WatchState, m: _Milestone) -> Event:
    pre = state.workflow.point(TaskType.PRECHECK)
    expires = m.at if m.lead is None else m.at + m.lead
    details: dict[str, Any] = {"expires_at": iso(expires)}
    if m.lead is None:
        kind = Kind.PRECHECK_EXPIRED
        message = wording.precheck_expired_line(expires, ctx.now)
    else:
        kind = Kind.PRECHECK_EXPIRING
        details["lead_minutes"] = _minutes(m.lead)
        message = wording.precheck_expiring_line(expires, ctx.now)
    return ctx.event(
        m.key,
        kind,
        Severity.WARNING,
        message,
        point=pre,
        new_status=pre.status if pre else None,
        expires_at=expires,
        details=details,
        at=_due(m.at, pre, ctx.now),
    )


def _due(at: datetime, pre: Point | None, now: datetime) -> datetime:
    """A time rule's line time: its due time (expiry minus the lead, or the expiry), but
    never before the pre-check passed (a short validity with a long lead is due at once)."""
    passed = pre.ended_at if pre is not None else None
    return max(at, min(passed, now)) if passed is not None else at


def _stall_event(
    ctx: EventContext, state: WatchState, stall: _Periodic, key: str, policy: Policy
) -> Event:
    point = stall.point
    threshold = policy.stall_threshold(point.task_type)
    slot = stall.slot
    track = state.tracks.get(slot, Track())
    details: dict[str, Any] = {
        "slot": slot,
        "attempt": track.attempt,
        "threshold_s": threshold.total_seconds(),
        "running_s": (ctx.now - stall.base).total_seconds(),
        "repeat": stall.k_at(ctx.now),
    }
    message = wording.stall_text(point.task_type, point.status, ctx.now - stall.base, threshold)
    if point.started_at is None:
        message += wording.NO_START_NOTE
    if track.progress is not None and point.task_type == TaskType.CLUSTER:
        details["progress"] = track.progress
        message += wording.progress_note(track.progress)
    k = int(details["repeat"])
    return ctx.event(
        key,
        Kind.TASK_STALLED,
        Severity.WARNING,
        message,
        point=point,
        new_status=point.status,
        started_at=stall.base,
        details=details,
        at=stall.first + (k - 1) * stall.repeat,  # when this stall notice fell due
    )


def _minutes(lead: timedelta) -> int:
    return int(lead.total_seconds() // 60)
