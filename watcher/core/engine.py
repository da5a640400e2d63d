"""The transition engine: what changed in a workflow, and which time rules are now due.

Pure functions over frozen values (SPEC.md section 3): ``evaluate`` diffs a new snapshot
against the persisted ``WatchState`` and applies the time rules; ``evaluate_time`` applies
only the time rules when no new snapshot could be fetched; ``evaluate_vanished`` handles a
404. No I/O, no clock, no logging: the caller passes ``now`` and persists the returned state
together with the events (one transaction), so a replay after a crash yields the same keys.

Each job lives in its own module: watcher.core.state (the persisted state), keys (dedup
keys), diff (transitions), rules (time rules), wording (message text); this module only
puts them together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from watcher.core import diff, keys, rules, wording
from watcher.core.acks import Acknowledgement
from watcher.core.diff import Enrichment
from watcher.core.eventctx import ACTIVE, TERMINAL, EventContext, slots, status_of
from watcher.core.events import Event, Kind, Severity, TargetRef
from watcher.core.models import Phase, TaskStatus, TaskType, Workflow
from watcher.core.policy import Policy
from watcher.core.state import Track, WatchState
from watcher.core.timeutil import iso, utc

__all__ = [
    "Enrichment",
    "Evaluation",
    "enrichment_wanted",
    "evaluate",
    "evaluate_time",
    "evaluate_vanished",
]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The events to commit and the state to persist with them (one transaction)."""

    events: tuple[Event, ...]
    state: WatchState


# --------------------------------------------------------------------------- public API


def evaluate(
    previous: WatchState | None,
    current: Workflow,
    now: datetime,
    policy: Policy,
    *,
    target: TargetRef,
    cluster_name: str | None = None,
    enrichment: Enrichment | None = None,
    ack: Acknowledgement | None = None,
) -> Evaluation:
    """Diff a new snapshot against the previous state and apply the time rules.

    While ``ack`` is in force, reminders and repeated stall notices fire without an event.

    ``previous=None`` (or a state of another workflow uid) is first sight: one
    ``workflow.detected`` summary, and every time rule already due is marked as fired
    without an event. Events observed more than ``policy.late_after`` after the previous
    snapshot carry ``late_since``. Never raises for odd cloud values.
    """
    now = utc(now)
    enrichment = enrichment or Enrichment()
    if previous is None or previous.workflow.uid != current.uid:
        return _first_sight(current, now, policy, target, cluster_name, enrichment)

    late_since: datetime | None = None
    if now - previous.observed_at > policy.late_after:
        late_since = previous.observed_at
    ctx = EventContext(target, cluster_name, current, now, late_since, since=previous.observed_at)
    fired = set(previous.fired)
    opening: list[Event] = []
    task_events: list[tuple[tuple[float, int], Event]] = []
    closing: list[Event] = []

    # Points first: the phase event may name the failed task with its fresh status.
    prev_slots = dict(slots(previous.workflow))
    tracks: dict[str, Track] = dict(previous.tracks)
    for order, (slot, point) in enumerate(slots(current)):
        events, track = diff.point_step(
            ctx, slot, prev_slots.get(slot), point, tracks.get(slot), fired, enrichment
        )
        tracks[slot] = track
        for event in events:
            when = event.ended_at or event.started_at or now
            task_events.append(((when.timestamp(), order), event))

    phase_seq = previous.phase_seq
    pending_since = previous.pending_since
    old_phase, new_phase = previous.workflow.phase, current.phase
    if old_phase != new_phase:
        phase_seq += 1
        event = diff.phase_event(ctx, old_phase, new_phase, phase_seq, enrichment)
        (
            opening if event.kind in (Kind.WORKFLOW_STARTED, Kind.WORKFLOW_RESUMED) else closing
        ).append(event)
        pending_since = diff.pending_base(current, now) if new_phase == Phase.PENDING else None
    elif new_phase == Phase.PENDING and pending_since is None:
        pending_since = diff.pending_base(current, now)

    state = WatchState(
        workflow=current,
        observed_at=now,
        fired=frozenset(fired),
        tracks=tracks,
        phase_seq=phase_seq,
        pending_since=pending_since,
        vanished=False,
    )
    timed, fired_after = rules.time_rules(state, ctx, policy, silent=False, ack=ack)
    events = [*opening, *(e for _, e in sorted(task_events, key=lambda x: x[0])), *closing, *timed]
    state = replace(state, fired=keys.prune(fired_after, state))
    return Evaluation(unique(events, previous.fired), state)


def evaluate_time(
    previous: WatchState,
    now: datetime,
    policy: Policy,
    *,
    target: TargetRef,
    cluster_name: str | None = None,
    ack: Acknowledgement | None = None,
) -> Evaluation:
    """Apply only the time rules to the last snapshot (no new one could be fetched).

    ``observed_at`` is kept, so the next real snapshot is still judged against it. The
    events are not marked late (they fire at their due time); when the snapshot is older than
    ``policy.late_after`` they carry ``details["as_of"]`` and say so.
    """
    now = utc(now)
    as_of = previous.observed_at if now - previous.observed_at > policy.late_after else None
    ctx = EventContext(target, cluster_name, previous.workflow, now, None, as_of=as_of)
    events, fired = rules.time_rules(previous, ctx, policy, silent=False, ack=ack)
    state = replace(previous, fired=keys.prune(fired, previous))
    return Evaluation(unique(events, previous.fired), state)


def evaluate_vanished(
    previous: WatchState,
    now: datetime,
    *,
    target: TargetRef,
    cluster_name: str | None = None,
) -> Evaluation:
    """A known workflow answered 404: ``workflow.vanished`` once, unless it had finished."""
    now = utc(now)
    wf = previous.workflow
    state = replace(previous, vanished=True)
    key = keys.vanished(wf.uid)
    if wf.phase in TERMINAL or key in previous.fired:
        return Evaluation((), state)
    ctx = EventContext(target, cluster_name, wf, now, None)
    event = ctx.event(
        key,
        Kind.WORKFLOW_VANISHED,
        Severity.WARNING,
        wording.workflow_vanished(wf, previous.observed_at, now),
        old_status=wf.phase,
        details={"last_seen_at": iso(previous.observed_at), "last_phase": wf.phase},
    )
    return Evaluation((event,), replace(state, fired=previous.fired | {key}))


def enrichment_wanted(previous: WatchState | None, current: Workflow) -> frozenset[str]:
    """Which extra calls the runtime should make before ``evaluate`` for this snapshot.

    ``"precheck"`` (ShowPreCheck) when the PreCheck point is Failed with a known task ID and
    was not already Failed with that task and start time; ``"upgrade"``
    (ShowUpgradeClusterTask) while the Cluster point is Queuing/Running with a task ID;
    ``"cluster"`` (ShowCluster) when a Cluster or Rollback point newly Failed.
    """
    wanted: set[str] = set()
    prev_wf = previous.workflow if previous and previous.workflow.uid == current.uid else None
    pre = current.point(TaskType.PRECHECK)
    if pre is not None and pre.status == TaskStatus.FAILED and pre.task_id:
        old = prev_wf.point(TaskType.PRECHECK) if prev_wf else None
        if old is None or (old.status, old.task_id, old.started_at) != (
            pre.status,
            pre.task_id,
            pre.started_at,
        ):
            wanted.add("precheck")
    cluster = current.point(TaskType.CLUSTER)
    if cluster is not None and cluster.status in ACTIVE and cluster.task_id:
        wanted.add("upgrade")
    # ShowCluster after a Cluster or Rollback task newly failed: its status.reason and
    # status.message say what state the failure left the cluster in.
    for point in current.points:
        if point.task_type in {TaskType.CLUSTER, TaskType.ROLLBACK} and (
            point.status == TaskStatus.FAILED
        ):
            if prev_wf is None:
                continue  # first sight: the summary does not report the cluster's state
            old = prev_wf.point(point.task_type)
            if old is None or (old.status, old.task_id, old.started_at) != (
                point.status,
                point.task_id,
                point.started_at,
            ):
                wanted.add("cluster")
    return frozenset(wanted)


def _first_sight(
    wf: Workflow,
    now: datetime,
    policy: Policy,
    target: TargetRef,
    cluster_name: str | None,
    enrichment: Enrichment,
) -> Evaluation:
    tracks: dict[str, Track] = {}
    for slot, point in slots(wf):
        progress = diff.progress_for(point, enrichment)
        active_since = now if point.status in ACTIVE and point.started_at is None else None
        tracks[slot] = Track(1, point.task_id, point.started_at, active_since, progress)
        if diff.paused(point, enrichment):  # the summary says so; the pause is not news later
            tracks[slot] = replace(tracks[slot], paused=True, pauses=1)
    pending_since = diff.pending_base(wf, now) if wf.phase == Phase.PENDING else None
    # The summary covers the current statuses: entering one of them again within the same
    # attempt (Running -> Pause -> Running) is not news.
    seen = {
        keys.task_status(keys.task_base(wf.uid, slot, 1, point.task_id), status_of(point))
        for slot, point in slots(wf)
        if status_of(point) != TaskStatus.INIT
    }
    state = WatchState(wf, now, frozenset(seen), tracks, 0, pending_since)
    ctx = EventContext(target, cluster_name, wf, now, None)
    _, fired = rules.time_rules(state, ctx, policy, silent=True)
    state = replace(state, fired=keys.prune(fired, state))
    return Evaluation((diff.detected(ctx, state, policy, enrichment),), state)


def unique(events: Iterable[Event], already: frozenset[str]) -> tuple[Event, ...]:
    """Safety net: never emit a key twice, within a batch or after the previous state."""
    seen = set(already)
    out = []
    for event in events:
        if event.dedup_key not in seen:
            seen.add(event.dedup_key)
            out.append(event)
    return tuple(out)
