"""Silences: the one model of "deliver nothing for these events for a while".

Pure data and matching, used by routing (planning), the stores (persisting run-time
silences), the ops cache, the API and the CLI. Config silences convert to it
(``config.schema.Silence.to_silence``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from watcher.core.events import Event


def any_glob(patterns: Iterable[str], value: str) -> bool:
    """True if ``value`` matches any of the glob ``patterns`` (case-sensitive)."""
    return any(fnmatchcase(value, pattern) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class Silence:
    """Deliver nothing for matching events from ``starts_at`` until ``until``; ``None``
    fields match anything.

    ``target`` and ``kinds`` are globs over the target name and the event kind;
    ``cluster_id`` and ``workflow_id`` are exact ids (globs are accepted too); ``labels``
    must all be present on the event's target, values compared as globs (like routes).
    ``id`` names the silence in muted events: the store's row id for silences added at
    run time (``silence add``, the API), ``config:N`` for the config file's N-th one.
    """

    until: datetime
    target: str | None = None
    cluster_id: str | None = None
    workflow_id: str | None = None
    kinds: tuple[str, ...] = ("*",)
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    starts_at: datetime | None = None
    id: str | None = None
    creator: str = ""
    comment: str = ""
    created_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and now < self.until

    def matches(self, event: Event) -> bool:
        """True if every set matcher field matches ``event`` (time not considered)."""
        if self.target is not None and not fnmatchcase(event.target.name, self.target):
            return False
        if self.cluster_id is not None and not fnmatchcase(
            event.target.cluster_id, self.cluster_id
        ):
            return False
        if self.workflow_id is not None and not fnmatchcase(
            event.workflow_id or "", self.workflow_id
        ):
            return False
        labels = event.target.labels
        if not all(k in labels and fnmatchcase(labels[k], v) for k, v in self.labels.items()):
            return False
        return any_glob(self.kinds, event.kind)

    def matcher(self) -> dict[str, Any]:
        """The matcher fields as JSON (what the store keeps in its ``matcher`` column)."""
        return {
            "target": self.target,
            "cluster_id": self.cluster_id,
            "workflow_id": self.workflow_id,
            "kinds": list(self.kinds),
            "labels": dict(self.labels),
        }

    def to_json(self) -> dict[str, Any]:
        """The API and CLI form; times as ISO 8601 with offset."""
        return {
            "id": self.id,
            **self.matcher(),
            "starts_at": None if self.starts_at is None else self.starts_at.isoformat(),
            "until": self.until.isoformat(),
            "creator": self.creator,
            "comment": self.comment,
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
        }


def silenced_by(event: Event, silences: Sequence[Silence], now: datetime) -> Silence | None:
    """The first active silence that covers ``event``, or None."""
    return next((s for s in silences if s.active(now) and s.matches(event)), None)


def silenced(event: Event, silences: Sequence[Silence], now: datetime) -> bool:
    """True if an active silence covers ``event``."""
    return silenced_by(event, silences, now) is not None
