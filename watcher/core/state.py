"""What the engine remembers between polls: ``WatchState`` and ``Track``, and their JSON codec.

The store persists ``WatchState.to_json()`` in the same transaction as the events a poll
produced, so a replay after a crash yields the same dedup keys. ``STATE_VERSION`` names the
schema; ``from_json`` refuses another version loudly rather than guessing. Pure values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from watcher.core.models import Workflow
from watcher.core.timeutil import from_iso, iso

__all__ = ["STATE_VERSION", "Track", "WatchState"]

STATE_VERSION = 1


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
            "started_at": iso(self.started_at),
            "active_since": iso(self.active_since),
            "progress": self.progress,
            "attempt_seen_at": iso(self.attempt_seen_at),
            "paused": self.paused,
            "pauses": self.pauses,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Track:
        return cls(
            attempt=int(data.get("attempt", 1)),
            task_id=data.get("task_id"),
            started_at=from_iso(data.get("started_at")),
            active_since=from_iso(data.get("active_since")),
            progress=data.get("progress"),
            attempt_seen_at=from_iso(data.get("attempt_seen_at")),
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
            "observed_at": iso(self.observed_at),
            "fired": sorted(self.fired),
            "tracks": {slot: t.to_json() for slot, t in sorted(self.tracks.items())},
            "phase_seq": self.phase_seq,
            "pending_since": iso(self.pending_since),
            "vanished": self.vanished,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WatchState:
        """Restore a state from ``to_json``; raises ValueError on another schema version."""
        version = data.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise ValueError(f"unsupported watch state version {version!r}")
        observed = from_iso(data.get("observed_at"))
        if observed is None:
            raise ValueError("watch state has no observed_at")
        return cls(
            workflow=Workflow.model_validate(data["workflow"]),
            observed_at=observed,
            fired=frozenset(data.get("fired") or ()),
            tracks={k: Track.from_json(v) for k, v in (data.get("tracks") or {}).items()},
            phase_seq=int(data.get("phase_seq", 0)),
            pending_since=from_iso(data.get("pending_since")),
            vanished=bool(data.get("vanished", False)),
        )
