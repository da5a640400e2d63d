"""The transition engine: what changed in a workflow, and which time rules are now due.

Pure functions over frozen values (SPEC.md section 3): ``evaluate`` diffs a new snapshot
against the persisted ``WatchState`` and applies the time rules; ``evaluate_time`` applies
only the time rules when no new snapshot could be fetched; ``evaluate_vanished`` handles a
404. No I/O, no clock, no logging: the caller passes ``now`` and persists the returned state
together with the events (one transaction), so a replay after a crash yields the same keys.

Dedup keys (``:`` separated; every component taken from the cloud is escaped, ``%`` as
``%25`` and ``:`` as ``%3A``):

- ``{uid}:detected``                                  workflow.detected (first sight)
- ``{uid}:vanished``                                  workflow.vanished (once per workflow)
- ``{uid}:phase:{seq}:{phase}``                       started, failed, resumed, succeeded,
                                                       cancelled, workflow.changed; ``seq``
                                                       counts phase changes, so re-entering
                                                       a phase is a new key
- ``{uid}:reminder:{seq}:{k}``                        k-th reminder of the Pending entered at
                                                       phase change ``seq``
- ``{uid}:task:{slot}:a{n}:{task_id|-}:{status}``     queued, started, succeeded, failed and
                                                       task.changed
- ``{uid}:task:{slot}:a{n}:{task_id|-}:retried``      task.retried
- ``{uid}:task:{slot}:a{n}:stalled:{k}``              k-th task.stalled of attempt n
- ``{uid}:task:PreCheck:a{n}:{task_id|-}:expiring:{expiry}:{lead}m`` and
  ``{uid}:task:PreCheck:a{n}:{task_id|-}:expired:{expiry}``   precheck.expiring / expired

``slot`` is the task type (``Rollback#2`` for a second point of the same type) and ``n`` the
attempt counter of that slot, which re-arms every key of the point: it grows when a new task
ID replaces the last known one, when a new start time replaces the last known one (except
on Queuing → Running, where the cloud may re-stamp the start), and when a Failed or
Success point goes back to a non-final status (or Failed → Success: a retry we did not
see running).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from watcher.core import advice
from watcher.core.acks import Acknowledgement
from watcher.core.events import Event, Kind, Severity, TargetRef
from watcher.core.models import (
    ACTIVE_STATUSES,
    TERMINAL_PHASES,
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
from watcher.core.wording import format_duration, percent, rolled_back

__all__ = [
    "Enrichment",
    "Evaluation",
    "Track",
    "WatchState",
    "enrichment_wanted",
    "evaluate",
    "evaluate_time",
    "evaluate_vanished",
    "format_duration",
    "next_deadline",
    "precheck_expiry",
]

STATE_VERSION = 1

_KNOWN_TYPES = frozenset(t.value for t in TaskType)
_KNOWN_STATUSES = frozenset(s.value for s in TaskStatus)
_ACTIVE = frozenset(s.value for s in ACTIVE_STATUSES)
_TERMINAL = frozenset(p.value for p in TERMINAL_PHASES)
_FINAL_STATUSES = frozenset({TaskStatus.SUCCESS.value, TaskStatus.FAILED.value})
_LABELS = {
    "PreCheck": "Pre-check",
    "Snapshot": "Snapshot",
    "Cluster": "Cluster upgrade",
    "PostCheck": "Post-check",
    "Rollback": "Rollback",
}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Track:
    """What the engine remembers about one point (slot) across snapshots.

    ``task_id`` and ``started_at`` are the last values seen in the current attempt (they
    survive a snapshot where the cloud leaves them empty); ``active_since`` is when the
    watcher first saw the point Queuing/Running without a cloud start time (the stall base
    of last resort); ``progress`` is the upgrade task's progress (Cluster only);
    ``attempt_seen_at`` is when the watcher saw a retry begin (None for attempt 1): a retry
    whose cloud start time was not renewed is not stalled by the time of the first run.
    """

    attempt: int = 1
    task_id: str | None = None
    started_at: datetime | None = None
    active_since: datetime | None = None
    progress: str | None = None
    attempt_seen_at: datetime | None = None
    paused: bool = False  # the upgrade task behind the point was last seen in Pause
    pauses: int = 0  # how many pauses of this attempt were reported (names the key)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "task_id": self.task_id,
            "started_at": _iso(self.started_at),
            "active_since": _iso(self.active_since),
            "progress": self.progress,
            "attempt_seen_at": _iso(self.attempt_seen_at),
            "paused": self.paused,
            "pauses": self.pauses,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Track:
        return cls(
            attempt=int(data.get("attempt", 1)),
            task_id=data.get("task_id"),
            started_at=_from_iso(data.get("started_at")),
            active_since=_from_iso(data.get("active_since")),
            progress=data.get("progress"),
            attempt_seen_at=_from_iso(data.get("attempt_seen_at")),
            paused=bool(data.get("paused", False)),
            pauses=int(data.get("pauses", 0)),
        )


@dataclass(frozen=True, slots=True)
class WatchState:
    """Everything the engine needs from the previous poll; persisted as JSON by the store.

    ``observed_at`` is when ``workflow`` was fetched (``evaluate_time`` and
    ``evaluate_vanished`` keep it). ``fired`` holds the dedup keys that gate re-emission
    (point statuses and retries of the current attempts, time rules, vanished); keys that
    can never fire again are pruned. ``phase_seq`` counts phase changes and names the
    workflow-level keys. ``pending_since`` is the base of the reminders.
    """

    workflow: Workflow
    observed_at: datetime
    fired: frozenset[str] = frozenset()
    tracks: Mapping[str, Track] = field(default_factory=dict, hash=False)
    phase_seq: int = 0
    pending_since: datetime | None = None
    vanished: bool = False

    @property
    def attempts(self) -> dict[str, int]:
        """The re-arm counter of every slot (task type)."""
        return {slot: track.attempt for slot, track in self.tracks.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "workflow": self.workflow.model_dump(mode="json"),
            "observed_at": _iso(self.observed_at),
            "fired": sorted(self.fired),
            "tracks": {slot: t.to_json() for slot, t in sorted(self.tracks.items())},
            "phase_seq": self.phase_seq,
            "pending_since": _iso(self.pending_since),
            "vanished": self.vanished,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WatchState:
        """Restore a state from ``to_json``; raises ValueError on another schema version."""
        version = data.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise ValueError(f"unsupported watch state version {version!r}")
        observed = _from_iso(data.get("observed_at"))
        if observed is None:
            raise ValueError("watch state has no observed_at")
        return cls(
            workflow=Workflow.model_validate(data["workflow"]),
            observed_at=observed,
            fired=frozenset(data.get("fired") or ()),
            tracks={k: Track.from_json(v) for k, v in (data.get("tracks") or {}).items()},
            phase_seq=int(data.get("phase_seq", 0)),
            pending_since=_from_iso(data.get("pending_since")),
            vanished=bool(data.get("vanished", False)),
        )


@dataclass(frozen=True, slots=True)
class Enrichment:
    """Extra calls the runtime made this poll because ``enrichment_wanted`` asked."""

    precheck: PreCheckTask | None = None
    upgrade: UpgradeTask | None = None
    cluster: Cluster | None = None  # ShowCluster after a Cluster/Rollback task failed


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
    now = _utc(now)
    enrichment = enrichment or Enrichment()
    if previous is None or previous.workflow.uid != current.uid:
        return _first_sight(current, now, policy, target, cluster_name, enrichment)

    late_since: datetime | None = None
    if now - previous.observed_at > policy.late_after:
        late_since = previous.observed_at
    ctx = _Ctx(target, cluster_name, current, now, late_since, since=previous.observed_at)
    fired = set(previous.fired)
    opening: list[Event] = []
    task_events: list[tuple[tuple[float, int], Event]] = []
    closing: list[Event] = []

    # Points first: the phase event may name the failed task with its fresh status.
    prev_slots = dict(_slots(previous.workflow))
    tracks: dict[str, Track] = dict(previous.tracks)
    for order, (slot, point) in enumerate(_slots(current)):
        events, track = _point_step(
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
        event = _phase_event(ctx, old_phase, new_phase, phase_seq, enrichment)
        (
            opening if event.kind in (Kind.WORKFLOW_STARTED, Kind.WORKFLOW_RESUMED) else closing
        ).append(event)
        pending_since = _pending_base(current, now) if new_phase == Phase.PENDING else None
    elif new_phase == Phase.PENDING and pending_since is None:
        pending_since = _pending_base(current, now)

    state = WatchState(
        workflow=current,
        observed_at=now,
        fired=frozenset(fired),
        tracks=tracks,
        phase_seq=phase_seq,
        pending_since=pending_since,
        vanished=False,
    )
    timed, fired_after = _time_rules(state, ctx, policy, silent=False, ack=ack)
    events = [*opening, *(e for _, e in sorted(task_events, key=lambda x: x[0])), *closing, *timed]
    state = replace(state, fired=_prune(fired_after, state))
    return Evaluation(_unique(events, previous.fired), state)


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
    now = _utc(now)
    as_of = previous.observed_at if now - previous.observed_at > policy.late_after else None
    ctx = _Ctx(target, cluster_name, previous.workflow, now, None, as_of=as_of)
    events, fired = _time_rules(previous, ctx, policy, silent=False, ack=ack)
    state = replace(previous, fired=_prune(fired, previous))
    return Evaluation(_unique(events, previous.fired), state)


def evaluate_vanished(
    previous: WatchState,
    now: datetime,
    *,
    target: TargetRef,
    cluster_name: str | None = None,
) -> Evaluation:
    """A known workflow answered 404: ``workflow.vanished`` once, unless it had finished."""
    now = _utc(now)
    wf = previous.workflow
    state = replace(previous, vanished=True)
    key = f"{_esc(wf.uid)}:vanished"
    if wf.phase in _TERMINAL or key in previous.fired:
        return Evaluation((), state)
    ctx = _Ctx(target, cluster_name, wf, now, None)
    phase = wf.phase or "unknown"
    event = ctx.event(
        key,
        Kind.WORKFLOW_VANISHED,
        Severity.WARNING,
        f"Upgrade {_versions(wf)} no longer exists (HTTP 404); "
        f"last seen {phase} at {_clock(previous.observed_at, now)}",
        old_status=wf.phase,
        details={"last_seen_at": _iso(previous.observed_at), "last_phase": wf.phase},
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
    if cluster is not None and cluster.status in _ACTIVE and cluster.task_id:
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


def next_deadline(state: WatchState, now: datetime, policy: Policy) -> datetime | None:
    """The earliest moment at which a time rule of this state falls due, or None.

    It is after ``now`` unless a rule is overdue because it was not evaluated yet (the
    caller then polls or evaluates at once).
    """
    now = _utc(now)
    if state.workflow.phase in _TERMINAL:
        return None
    moments: list[datetime] = []
    for milestone in _precheck_milestones(state, policy):
        if milestone.key not in state.fired:
            moments.append(milestone.at)
    for stall in _stalls(state, policy):
        moments.append(stall.first + max(stall.k_at(now), stall.k_fired) * policy.repeat_interval)
    reminder = _reminder(state, policy)
    if reminder is not None:
        k = max(reminder.k_at(now), reminder.k_fired)
        moments.append(reminder.since + (k + 1) * policy.repeat_interval)
    return min(moments) if moments else None


# --------------------------------------------------------------------------- context


@dataclass(frozen=True, slots=True)
class _Ctx:
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
            message += f" (as of the last snapshot, {_clock(self.as_of, self.now)})"
            info["as_of"] = _iso(self.as_of)
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
                else self.cloud_time(_occurred(point, new_status, self.now))
            ),
        )


def _occurred(point: Point | None, status: str | None, now: datetime) -> datetime:
    """A transition's cloud time: the start for Running/Queuing, the end for Success/Failed.

    Anything else (and a missing stamp) is the observation time; a cloud time after the
    observation (clock skew) is capped at it.
    """
    if point is not None and point.status == status:
        if status in _ACTIVE and point.started_at is not None:
            return min(point.started_at, now)
        if status in _FINAL_STATUSES and point.ended_at is not None:
            return min(point.ended_at, now)
    return now


# --------------------------------------------------------------------------- first sight


def _first_sight(
    wf: Workflow,
    now: datetime,
    policy: Policy,
    target: TargetRef,
    cluster_name: str | None,
    enrichment: Enrichment,
) -> Evaluation:
    tracks: dict[str, Track] = {}
    for slot, point in _slots(wf):
        progress = _progress_for(point, enrichment)
        active_since = now if point.status in _ACTIVE and point.started_at is None else None
        tracks[slot] = Track(1, point.task_id, point.started_at, active_since, progress)
        if _paused(point, enrichment):  # the summary says so; the pause is not news later
            tracks[slot] = replace(tracks[slot], paused=True, pauses=1)
    pending_since = _pending_base(wf, now) if wf.phase == Phase.PENDING else None
    # The summary covers the current statuses: entering one of them again within the same
    # attempt (Running -> Pause -> Running) is not news.
    seen = {
        f"{_esc(wf.uid)}:task:{_esc(slot)}:a1:{_esc(point.task_id or '-')}:{_esc(_status(point))}"
        for slot, point in _slots(wf)
        if _status(point) != TaskStatus.INIT
    }
    state = WatchState(wf, now, frozenset(seen), tracks, 0, pending_since)
    ctx = _Ctx(target, cluster_name, wf, now, None)
    _, fired = _time_rules(state, ctx, policy, silent=True)
    state = replace(state, fired=_prune(fired, state))
    return Evaluation((_detected(ctx, state, policy, enrichment),), state)


def _detected(ctx: _Ctx, state: WatchState, policy: Policy, enrichment: Enrichment) -> Event:
    wf, now = state.workflow, ctx.now
    phase = wf.phase
    failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
    active = [p for p in wf.points if p.status in _ACTIVE]
    focus = failed[0] if failed else (active[0] if active else None)
    notes: list[str] = []
    details: dict[str, Any] = {
        "phase": phase,
        "points": [_point_json(p) for p in wf.points],
    }
    severity = Severity.FAILURE if phase == Phase.PENDING else Severity.INFO
    versions = _versions(wf)
    if rolled_back(wf):
        severity = Severity.WARNING
        head = f"Found upgrade {versions} rolled back; the cluster runs {_from(wf)} again"
    elif phase == Phase.PENDING:
        head = f"Found upgrade {versions} failed: {_failed_summary(wf)}"
        details["failed_tasks"] = [_point_json(p) for p in failed]
        details["next_step"] = advice.task_next_step(failed[0].task_type if failed else None)
        if any(p.task_type == TaskType.ROLLBACK for p in failed):
            details["critical"] = True
    elif phase == Phase.RUNNING:
        if active:
            p = active[0]
            since = p.started_at
            running = f" for {format_duration(now - since)}" if since else ""
            head = f"Found upgrade {versions} running: {_label(p.task_type)} {p.status}{running}"
        else:
            head = f"Found upgrade {versions} running"
    elif phase == Phase.INIT:
        head = f"Found upgrade {versions} not started yet"
    elif phase == Phase.SUCCESS:
        span = _workflow_span(wf)
        took = f" in {format_duration(span[1] - span[0])}" if span else ""
        head = f"Found upgrade {versions} already succeeded{took}"
    elif phase == Phase.CANCEL:
        head = f"Found upgrade {versions} cancelled"
    else:
        head = f"Found upgrade {versions} in phase {phase or 'unknown'}"
    pre = wf.point(TaskType.PRECHECK)
    expires = precheck_expiry(state.workflow)
    if pre is not None and expires is not None:
        if now >= expires:
            notes.append(f"pre-check expired at {_clock(expires, now)}: run it again")
            severity = Severity.FAILURE if severity == Severity.FAILURE else Severity.WARNING
        else:
            notes.append(f"pre-check expires in {format_duration(expires - now)}")
    for stall in _stalls(state, policy):
        if stall.k_at(now) >= 1:
            notes.append(
                f"{_label(stall.point.task_type)} {stall.point.status} for "
                f"{format_duration(now - stall.base)}, past its "
                f"{format_duration(policy.stall_threshold(stall.point.task_type))} threshold"
            )
            if severity.rank < Severity.WARNING.rank:
                severity = Severity.WARNING
    if pre is not None and pre.status == TaskStatus.FAILED:
        task = _precheck_for(pre, enrichment)
        if task is not None:
            items = advice.failed_item_dicts(task)
            details["failed_items"] = items
            notes.append(advice.items_text(items, task.message))
            details["next_step"] = advice.precheck_next_step(items)
    cluster = wf.point(TaskType.CLUSTER)
    cluster_track = state.tracks.get(TaskType.CLUSTER.value, Track())
    if cluster is not None and cluster.status in _ACTIVE and cluster_track.paused:
        pct = percent(cluster_track.progress)
        notes.append("the upgrade task is paused" + (f" at {pct}" if pct else ""))
        details["paused"] = True
    message = head + ("; " + "; ".join(notes) if notes else "")
    progress = cluster_track.progress
    if cluster is not None and cluster.status in _ACTIVE and progress is not None:
        details["progress"] = progress
    return ctx.event(
        f"{_esc(wf.uid)}:detected",
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


def _point_step(
    ctx: _Ctx,
    slot: str,
    prev: Point | None,
    cur: Point,
    track: Track | None,
    fired: set[str],
    enrichment: Enrichment,
) -> tuple[list[Event], Track]:
    """Diff one point; adds the keys it emits to ``fired``; returns events and new track."""
    ps = _status(prev)
    cs = _status(cur)
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
    elif (ps in _FINAL_STATUSES and cs not in _FINAL_STATUSES) or (
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
            (track.active_since or ctx.now) if cs in _ACTIVE and cur.started_at is None else None
        ),
        progress=_progress_for(cur, enrichment) or track.progress,
        attempt_seen_at=track.attempt_seen_at,
        paused=track.paused,
        pauses=track.pauses,
    )
    events: list[Event] = []
    uid, task = _esc(ctx.workflow.uid), _esc(cur.task_id or "-")
    base = f"{uid}:task:{_esc(slot)}:a{new_track.attempt}:{task}"
    label = _label(cur.task_type)
    common: dict[str, Any] = {"slot": slot, "attempt": new_track.attempt}
    if new_track.progress is not None and cur.task_type == TaskType.CLUSTER:
        common["progress"] = new_track.progress
    new_track = _pause_step(ctx, cur, new_track, base, common, enrichment, fired, events)
    if reason is None and cs == ps:
        return events, new_track

    if reason is not None and ps == TaskStatus.FAILED and not is_new_point:
        key = f"{base}:retried"
        if key not in fired:
            why = "with a new task ID" if reason == "new task ID" else "after it Failed"
            events.append(
                ctx.event(
                    key,
                    Kind.TASK_RETRIED,
                    Severity.WARNING,
                    f"{label} retried {why} (attempt {new_track.attempt}), now {cs}",
                    point=cur,
                    old_status=_raw(prev),
                    new_status=_raw(cur),
                    details={**common, "reason": reason, "previous_task_id": _task_id(prev)},
                )
            )
            fired.add(key)

    if cs == TaskStatus.INIT:
        return events, new_track  # a reset or a retry waiting to run: nothing to say yet

    key = f"{base}:{_esc(cs)}"
    if key in fired:
        return events, new_track
    old = _raw(prev)
    known = cur.task_type in _KNOWN_TYPES and cs in _KNOWN_STATUSES
    duration = _duration(cur)
    vers = _versions(ctx.workflow)
    in_vers = f" ({vers})" if cur.task_type in {TaskType.CLUSTER, TaskType.ROLLBACK} else ""
    details = dict(common)
    if not known:
        kind, severity = (
            Kind.TASK_CHANGED,
            (Severity.FAILURE if cs == TaskStatus.FAILED else Severity.WARNING),
        )
        message = f"{label} status {old or 'Init'} → {cs}"
    elif cs == TaskStatus.QUEUING:
        kind, severity = Kind.TASK_QUEUED, Severity.INFO
        message = f"{label} queued"
    elif cs == TaskStatus.RUNNING:
        kind = Kind.TASK_STARTED
        severity = Severity.WARNING if cur.task_type == TaskType.ROLLBACK else Severity.INFO
        message = f"{label} started{in_vers}"
        if cur.task_type == TaskType.ROLLBACK:
            message = f"Rollback started: the cluster is being rolled back{in_vers}"
        if "progress" in details:
            message += f", progress {_pct(details['progress'])}"
    elif cs == TaskStatus.SUCCESS:
        kind, severity = Kind.TASK_SUCCEEDED, Severity.SUCCESS
        took = f" in {format_duration(duration)}" if duration is not None else ""
        message = f"{label} succeeded{took}{in_vers}"
        if cur.task_type == TaskType.ROLLBACK:
            # The upgrade did not happen: good news for the cluster, not for the upgrade.
            severity = Severity.WARNING
            message += f": the cluster runs {ctx.workflow.cluster_version or '?'} again"
    else:  # Failed
        kind, severity = Kind.TASK_FAILED, Severity.FAILURE
        took = f" after {format_duration(duration)}" if duration is not None else ""
        message = f"{label} Failed{took}{in_vers}"
        details["next_step"] = advice.task_next_step(cur.task_type)
        if cur.task_type == TaskType.PRECHECK:
            pre_task = _precheck_for(cur, enrichment)
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
    if duration is not None and cs in _FINAL_STATUSES:
        details["duration_s"] = duration
    events.append(
        ctx.event(
            key,
            kind,
            severity,
            message,
            point=cur,
            old_status=old,
            new_status=_raw(cur),
            details=details,
        )
    )
    fired.add(key)
    return events, new_track


def _pause_step(
    ctx: _Ctx,
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
    key = f"{base}:paused:{track.pauses}"
    if key in fired:
        return track
    progress = _pct(task.progress)
    at = f" at {progress}" if progress else ""
    events.append(
        ctx.event(
            key,
            Kind.TASK_PAUSED,
            Severity.WARNING,
            f"{_label(cur.task_type)} paused{at} ({_versions(ctx.workflow)}): "
            "it stays paused until someone continues it",
            point=cur,
            old_status=cur.status,
            new_status="Pause",
            details={
                **common,
                "upgrade_phase": task.phase,
                "next_step": "Continue the upgrade in the CCE console when ready, "
                "or find out who paused it.",
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


def _paused(point: Point, enrichment: Enrichment) -> bool:
    task = enrichment.upgrade
    return (
        task is not None
        and point.status in _ACTIVE
        and _same_upgrade_task(point, task)
        and task.phase == "Pause"
    )


def _pct(progress: Any) -> str:
    """Progress for people ("45%"); the raw string when it is not a number."""
    return percent(progress) or str(progress)


def _cluster_trouble(point: Point, enrichment: Enrichment) -> str | None:
    cluster = enrichment.cluster
    if cluster is None or point.task_type not in {TaskType.CLUSTER, TaskType.ROLLBACK}:
        return None
    return cluster.trouble


def _task_id(point: Point | None) -> str | None:
    return point.task_id if point else None


# --------------------------------------------------------------------------- phase


def _phase_event(
    ctx: _Ctx, old: str | None, new: str | None, seq: int, enrichment: Enrichment
) -> Event:
    wf = ctx.workflow
    key = f"{_esc(wf.uid)}:phase:{seq}:{_esc(new or '-')}"
    vers = _versions(wf)
    details: dict[str, Any] = {"phase_seq": seq}
    span = _workflow_span(wf)
    if new in (Phase.PENDING, Phase.SUCCESS) and rolled_back(wf):
        # After a successful rollback CCE leaves the workflow Pending (or ends it): either
        # way the story is "rolled back", not a fresh failure and never a success.
        rollback = [p for p in wf.points if p.task_type == TaskType.ROLLBACK][-1]
        return ctx.event(
            key,
            Kind.WORKFLOW_ROLLED_BACK,
            Severity.WARNING,
            f"Upgrade {vers} rolled back; the cluster runs {_from(wf)} again",
            point=rollback,
            old_status=old,
            new_status=new,
            details={
                **details,
                "next_step": "Find out why the upgrade failed before you start it again.",
            },
            at=ctx.cloud_time(rollback.ended_at),
        )
    if new == Phase.PENDING:
        failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
        details["failed_tasks"] = [_point_json(p) for p in failed]
        focus = failed[-1] if failed else None
        ends = [p.ended_at for p in failed if p.ended_at]
        if focus is not None:
            details["next_step"] = advice.task_next_step(focus.task_type)
            if focus.task_type == TaskType.PRECHECK:
                task = _precheck_for(focus, enrichment)
                if task is not None:
                    details["next_step"] = advice.precheck_next_step(
                        advice.failed_item_dicts(task)
                    )
        if any(p.task_type == TaskType.ROLLBACK for p in failed):
            details["critical"] = True
        return ctx.event(
            key,
            Kind.WORKFLOW_FAILED,
            Severity.FAILURE,
            f"Upgrade {vers} failed: {_failed_summary(wf)}",
            point=focus,
            old_status=old,
            new_status=new,
            details=details,
            at=ctx.cloud_time(max(ends)) if ends else ctx.now,
        )
    if new == Phase.SUCCESS:
        took = ""
        started = ended = None
        if span:
            started, ended = span
            details["duration_s"] = (ended - started).total_seconds()
            took = f" in {format_duration(ended - started)}"
        return ctx.event(
            key,
            Kind.WORKFLOW_SUCCEEDED,
            Severity.SUCCESS,
            f"Upgrade {vers} succeeded{took}",
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
            f"Upgrade {vers} cancelled",
            old_status=old,
            new_status=new,
            details=details,
        )
    if new == Phase.RUNNING and old == Phase.INIT:
        return ctx.event(
            key,
            Kind.WORKFLOW_STARTED,
            Severity.INFO,
            f"Upgrade {vers} started",
            old_status=old,
            new_status=new,
            started_at=span[0] if span else None,
            details=details,
            at=ctx.cloud_time(_first_start(wf)),
        )
    if new == Phase.RUNNING and old not in _TERMINAL and old is not None:
        active = [p for p in wf.points if p.status in _ACTIVE]
        what = (
            f": {_label(active[0].task_type)} {active[0].status}"
            if active
            else " (retry or rollback began)"
        )
        after = "after failure" if old == Phase.PENDING else f"after {old}"
        return ctx.event(
            key,
            Kind.WORKFLOW_RESUMED,
            Severity.INFO,
            f"Upgrade {vers} resumed {after}{what}",
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
        f"Upgrade {vers} phase {old or 'unknown'} → {new or 'unknown'}",
        old_status=old,
        new_status=new,
        details=details,
    )


def _failed_summary(wf: Workflow) -> str:
    failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
    if not failed:
        return "a task failed (the workflow does not say which)"
    parts = []
    for p in failed:
        duration = _duration(p)
        took = f" after {format_duration(duration)}" if duration is not None else ""
        parts.append(f"{_label(p.task_type)} Failed{took}")
    return ", ".join(parts)


def _from(wf: Workflow) -> str:
    return wf.cluster_version or "the old version"


def _first_start(wf: Workflow) -> datetime | None:
    starts = [p.started_at for p in wf.points if p.started_at]
    return min(starts) if starts else None


def _pending_base(wf: Workflow, now: datetime) -> datetime:
    ends = [p.ended_at for p in wf.points if p.status == TaskStatus.FAILED and p.ended_at]
    return max(ends) if ends else now


# --------------------------------------------------------------------------- time rules


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
    if wf.phase in _TERMINAL:
        return None
    pre = wf.point(TaskType.PRECHECK)
    if pre is None or pre.status != TaskStatus.SUCCESS or pre.expires_at is None:
        return None
    cluster = wf.point(TaskType.CLUSTER)
    if cluster is not None and _status(cluster) != TaskStatus.INIT:
        return None
    return pre.expires_at


def _precheck_milestones(state: WatchState, policy: Policy) -> list[_Milestone]:
    expires = precheck_expiry(state.workflow)
    pre = state.workflow.point(TaskType.PRECHECK)
    if expires is None or pre is None:
        return []
    attempt = state.tracks.get(TaskType.PRECHECK.value, Track()).attempt
    stamp = expires.strftime("%Y%m%dT%H%M%S.%fZ")
    base = (
        f"{_esc(state.workflow.uid)}:task:{TaskType.PRECHECK.value}:a{attempt}:"
        f"{_esc(pre.task_id or '-')}"
    )
    out = [
        _Milestone(expires - lead, f"{base}:expiring:{stamp}:{_lead_tag(lead)}", lead)
        for lead in policy.precheck_leads
    ]
    out.append(_Milestone(expires, f"{base}:expired:{stamp}", None))
    return sorted(out, key=lambda m: m.at)


def _stalls(state: WatchState, policy: Policy) -> list[_Periodic]:
    wf = state.workflow
    if wf.phase in _TERMINAL:
        return []
    out = []
    fired_k = _k_index(state.fired)  # one pass, not one per point (5,000 points: seconds)
    for slot, point in _slots(wf):
        if point.status not in _ACTIVE:
            continue
        track = state.tracks.get(slot, Track())
        base = point.started_at or track.active_since
        if base is not None and track.attempt_seen_at is not None:
            base = max(base, track.attempt_seen_at)
        if base is None:
            continue
        prefix = f"{_esc(wf.uid)}:task:{_esc(slot)}:a{track.attempt}:stalled:"
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


def _reminder(state: WatchState, policy: Policy) -> _Reminder | None:
    if state.workflow.phase != Phase.PENDING or state.pending_since is None:
        return None
    if rolled_back(state.workflow):
        return None  # the cluster runs the old version again: nothing is left failing
    prefix = f"{_esc(state.workflow.uid)}:reminder:{state.phase_seq}:"
    return _Reminder(
        state.pending_since, policy.repeat_interval, prefix, _max_k(state.fired, prefix)
    )


def _time_rules(
    state: WatchState,
    ctx: _Ctx,
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

    due = [m for m in _precheck_milestones(state, policy) if m.at <= now]
    if due:
        most_urgent = due[-1]  # the expiry, or the shortest lead already reached
        if most_urgent.key not in fired and not silent:
            events.append(_precheck_event(ctx, state, most_urgent))
        fired.update(m.key for m in due)  # longer leads jumped over are not sent late

    for stall in _stalls(state, policy):
        k = stall.k_at(now)
        if k >= 1 and k > stall.k_fired:
            key = f"{stall.prefix}{k}"
            fired.add(key)
            if not silent and not (acked and k >= 2):
                events.append(_stall_event(ctx, state, stall, key, policy))

    reminder = _reminder(state, policy)
    if reminder is not None:
        k = reminder.k_at(now)
        if k >= 1 and k > reminder.k_fired:
            key = f"{reminder.prefix}{k}"
            fired.add(key)
            if not silent and not acked:
                failed = [p for p in wf.points if p.status == TaskStatus.FAILED]
                since = reminder.since
                events.append(
                    ctx.event(
                        key,
                        Kind.WORKFLOW_REMINDER,
                        Severity.FAILURE,
                        f"Upgrade {_versions(wf)} still failed after "
                        f"{format_duration(now - since)} ({_failed_summary(wf)} at "
                        f"{_clock(since, now)}): retry, roll back or cancel it",
                        point=failed[0] if failed else None,
                        new_status=wf.phase,
                        details={
                            "reminder": k,
                            "pending_since": _iso(since),
                            "next_step": advice.task_next_step(
                                failed[-1].task_type if failed else None
                            ),
                        },
                        at=since + k * reminder.repeat,
                    )
                )
    return events, frozenset(fired)


def _precheck_event(ctx: _Ctx, state: WatchState, m: _Milestone) -> Event:
    pre = state.workflow.point(TaskType.PRECHECK)
    expires = m.at if m.lead is None else m.at + m.lead
    when = _clock(expires, ctx.now)
    details: dict[str, Any] = {"expires_at": _iso(expires)}
    if m.lead is None:
        kind = Kind.PRECHECK_EXPIRED
        message = f"Pre-check result expired at {when}: run the pre-check again before upgrading"
    else:
        kind = Kind.PRECHECK_EXPIRING
        details["lead_minutes"] = _minutes(m.lead)
        message = (
            f"Pre-check result expires in {format_duration(expires - ctx.now)} (at {when}): "
            f"start the cluster upgrade before then"
        )
    return ctx.event(
        m.key,
        kind,
        Severity.WARNING,
        message,
        point=pre,
        new_status=pre.status if pre else None,
        expires_at=expires,
        details=details,
        at=m.at,  # the due time: expiry minus the lead, or the expiry itself
    )


def _stall_event(ctx: _Ctx, state: WatchState, stall: _Periodic, key: str, policy: Policy) -> Event:
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
    message = (
        f"{_label(point.task_type)} {point.status} for {format_duration(ctx.now - stall.base)}, "
        f"past its {format_duration(threshold)} threshold"
    )
    if point.started_at is None:
        message += " (no start time from the cloud; counted from when the watcher saw it)"
    if track.progress is not None and point.task_type == TaskType.CLUSTER:
        details["progress"] = track.progress
        message += f", progress {_pct(track.progress)}"
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


# --------------------------------------------------------------------------- pruning


def _prune(fired: Iterable[str], state: WatchState) -> frozenset[str]:
    """Drop keys that can never fire again (older attempts, lower repeats, old Pendings)."""
    uid = _esc(state.workflow.uid)
    keep: set[str] = set()
    best: dict[str, int] = {}  # periodic prefix -> highest k kept
    for key in fired:
        parts = key.split(":")
        try:
            if parts[0] != uid:
                continue
            if parts[1] == "task":
                track = state.tracks.get(_unesc(parts[2]))
                if track is not None and int(parts[3][1:]) < track.attempt:
                    continue
                if parts[4] == "stalled":
                    prefix = ":".join(parts[:5]) + ":"
                    best[prefix] = max(best.get(prefix, 0), int(parts[5]))
                    continue
            elif parts[1] == "reminder":
                if state.workflow.phase != Phase.PENDING or int(parts[2]) != state.phase_seq:
                    continue
                prefix = ":".join(parts[:3]) + ":"
                best[prefix] = max(best.get(prefix, 0), int(parts[3]))
                continue
        except (IndexError, ValueError):
            pass  # a key of a shape we do not know: keep it, it costs nothing
        keep.add(key)
    keep.update(f"{prefix}{k}" for prefix, k in best.items())
    return frozenset(keep)


def _k_index(fired: Iterable[str]) -> dict[str, int]:
    """``_max_k`` for every prefix at once: periodic key prefix -> highest k fired."""
    best: dict[str, int] = {}
    for key in fired:
        head, sep, tail = key.rpartition(":")
        if not sep:
            continue
        try:
            k = int(tail)
        except ValueError:
            continue
        prefix = head + sep
        best[prefix] = max(best.get(prefix, 0), k)
    return best


def _max_k(fired: Iterable[str], prefix: str) -> int:
    best = 0
    for key in fired:
        if key.startswith(prefix):
            try:
                best = max(best, int(key[len(prefix) :]))
            except ValueError:
                continue
    return best


def _unique(events: Iterable[Event], already: frozenset[str]) -> tuple[Event, ...]:
    """Safety net: never emit a key twice, within a batch or after the previous state."""
    seen = set(already)
    out = []
    for event in events:
        if event.dedup_key not in seen:
            seen.add(event.dedup_key)
            out.append(event)
    return tuple(out)


# --------------------------------------------------------------------------- helpers


def _slots(wf: Workflow) -> list[tuple[str, Point]]:
    """Name each point: its task type, ``Type#2`` for a second point of the same type."""
    counts: dict[str, int] = {}
    out = []
    for point in wf.points:
        n = counts.get(point.task_type, 0) + 1
        counts[point.task_type] = n
        out.append((point.task_type if n == 1 else f"{point.task_type}#{n}", point))
    return out


def _status(point: Point | None) -> str:
    """A point's status for the rules: a missing point or status is Init (not started)."""
    return (point.status if point else None) or TaskStatus.INIT.value


def _raw(point: Point | None) -> str | None:
    return point.status if point else None


def _label(task_type: str) -> str:
    return f"{_LABELS.get(task_type, task_type or 'Unnamed')} task"


def _versions(wf: Workflow) -> str:
    return f"{wf.cluster_version or '?'} → {wf.target_version or '?'}"


def _duration(point: Point) -> float | None:
    if point.started_at and point.ended_at:
        return max(0.0, (point.ended_at - point.started_at).total_seconds())
    return None


def _workflow_span(wf: Workflow) -> tuple[datetime, datetime] | None:
    starts = [p.started_at for p in wf.points if p.started_at]
    ends = [p.ended_at for p in wf.points if p.ended_at]
    if not starts or not ends:
        return None
    first, last = min(starts), max(ends)
    return (first, last) if last >= first else None


def _progress_for(point: Point, enrichment: Enrichment) -> str | None:
    task = enrichment.upgrade
    if task is None or point.task_type != TaskType.CLUSTER or point.status not in _ACTIVE:
        return None
    if task.uid and point.task_id and task.uid != point.task_id:
        return None
    return task.progress


def _precheck_for(point: Point, enrichment: Enrichment) -> PreCheckTask | None:
    task = enrichment.precheck
    if task is None or (task.uid and point.task_id and task.uid != point.task_id):
        return None
    return task


def _point_json(p: Point) -> dict[str, Any]:
    return {
        "task_type": p.task_type,
        "task_id": p.task_id,
        "status": p.status,
        "started_at": _iso(p.started_at),
        "ended_at": _iso(p.ended_at),
        "expires_at": _iso(p.expires_at),
    }


def _minutes(lead: timedelta) -> int:
    return int(lead.total_seconds() // 60)


def _lead_tag(lead: timedelta) -> str:
    """``15m`` for whole minutes; ``20s`` otherwise (sub-minute leads must not collide)."""
    seconds = int(lead.total_seconds())
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _clock(moment: datetime, now: datetime) -> str:
    moment = moment.astimezone(UTC)
    if moment.date() == now.astimezone(UTC).date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive ``now`` is taken to be UTC rather than failing the comparison."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _from_iso(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return _utc(datetime.fromisoformat(text))


def _esc(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def _unesc(part: str) -> str:
    return part.replace("%3A", ":").replace("%25", "%")
