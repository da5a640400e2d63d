"""Acknowledgements: an operator says "I know about this workflow" (pure data, no I/O).

Why this module exists: the engine must stay pure, so an acknowledgement reaches it as a
value. While one is in force for a workflow, its reminders (``workflow.reminder``) and
repeated stall notices (``task.stalled`` after the first) are marked as fired without an
event. It ends when it expires or when the workflow changes again (any event that is not a
time rule); the runtime persists that end. The first message after it names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.core.events import Event, Kind

# Events the time rules emit; every other event means the workflow itself changed.
TIME_RULE_KINDS = frozenset(
    {Kind.WORKFLOW_REMINDER, Kind.TASK_STALLED, Kind.PRECHECK_EXPIRING, Kind.PRECHECK_EXPIRED}
)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """``by`` acknowledged workflow ``workflow_key`` at ``created_at`` until ``until``."""

    workflow_key: str
    by: str
    note: str
    created_at: datetime
    until: datetime
    ended_at: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.ended_at is None and self.created_at <= now < self.until

    def text(self) -> str:
        """How messages and the page name it: ``acknowledged by NAME: note``."""
        return (
            f"acknowledged by {self.by}: {self.note}"
            if self.note
            else (f"acknowledged by {self.by}")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow_key": self.workflow_key,
            "by": self.by,
            "note": self.note,
            "created_at": self.created_at.isoformat(),
            "until": self.until.isoformat(),
            "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
        }


def changes_workflow(events: Iterable[Event]) -> bool:
    """True if any event reports a change of the workflow (not a time rule firing)."""
    return any(e.kind not in TIME_RULE_KINDS for e in events)
