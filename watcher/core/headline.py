"""Which event titles a message that groups several events of one workflow (issue 9 item 1).

A person paged at night reads only the title, so it names the most *important* event, not
merely the loudest: the workflow's outcome first, then task failures, pre-check expiry,
stalls, other known transitions, and generic ``*.changed`` events (unknown cloud values)
last. The message's severity is the headline's. This module is the only place that order
lives; it is tested by a table (tests/core/test_headline.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from watcher.core.events import Event, Kind, Severity

# Higher wins. Ties go to the louder severity, then to the earlier event of the timeline.
OUTCOME = 100
SUMMARY = 90  # first sight: the summary of the whole workflow
FAILURE = 80
EXPIRY = 70
EXPIRING = 65
STALL = 60
WATCHER = 50
TRANSITION = 40
UNKNOWN = 0

_RANKS: dict[str, int] = {
    Kind.WORKFLOW_FAILED: OUTCOME,
    Kind.WORKFLOW_ROLLED_BACK: OUTCOME,
    Kind.WORKFLOW_SUCCEEDED: OUTCOME,
    Kind.WORKFLOW_CANCELLED: OUTCOME,
    Kind.WORKFLOW_VANISHED: OUTCOME,
    Kind.WORKFLOW_DETECTED: SUMMARY,
    Kind.TASK_FAILED: FAILURE,
    Kind.WORKFLOW_REMINDER: FAILURE,
    Kind.PRECHECK_EXPIRED: EXPIRY,
    Kind.PRECHECK_EXPIRING: EXPIRING,
    Kind.TASK_STALLED: STALL,
    Kind.TARGET_UNREACHABLE: WATCHER,
    Kind.AUTH_FAILED: WATCHER,
    Kind.TARGET_RECOVERED: WATCHER,
    Kind.WORKFLOW_CHANGED: UNKNOWN,
    Kind.TASK_CHANGED: UNKNOWN,
}


def rank(event: Event) -> int:
    """The event's place in the precedence; any other known kind is a transition."""
    if event.kind.endswith(".changed"):
        return UNKNOWN
    return _RANKS.get(event.kind, TRANSITION)


def headline(events: Sequence[Event]) -> Event:
    """The event that titles the message (raises ValueError for no events)."""
    if not events:
        raise ValueError("a message needs at least one event")
    best = events[0]
    for event in events[1:]:
        if (rank(event), event.severity.rank) > (rank(best), best.severity.rank):
            best = event
    return best


def message_severity(events: Sequence[Event]) -> Severity:
    """The severity of the whole message: its headline's."""
    return headline(events).severity


def is_critical(event: Event) -> bool:
    """Marked critical (a failed rollback): the title says CRITICAL, not just FAILURE."""
    return bool(event.details.get("critical")) if event.details else False
