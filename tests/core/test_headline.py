"""The headline precedence (issue 9 item 1), as a table: which event titles a message."""

from __future__ import annotations

import pytest

from tests.core.strategies import TARGET, at
from watcher.core.events import Event, Kind, Severity
from watcher.core.headline import UNKNOWN, headline, is_critical, message_severity, rank

IN, S, W, F = Severity.INFO, Severity.SUCCESS, Severity.WARNING, Severity.FAILURE


def ev(kind: str, severity: Severity, **details: object) -> Event:
    return Event(
        dedup_key=f"{kind}:{severity}:{sorted(details.items())}",
        kind=kind,
        severity=severity,
        target=TARGET,
        observed_at=at(0),
        message=kind,
        details=details,
    )


# (events of one message in timeline order, the kind that must title it, its severity)
TABLE: list[tuple[list[Event], str, Severity]] = [
    # the outcome beats everything, even a louder unknown value or a task failure
    ([ev("task.changed", F), ev("workflow.succeeded", S)], "workflow.succeeded", S),
    ([ev("task.succeeded", S), ev("workflow.succeeded", S)], "workflow.succeeded", S),
    ([ev("task.failed", F), ev("workflow.failed", F)], "workflow.failed", F),
    ([ev("task.succeeded", W), ev("workflow.rolled_back", W)], "workflow.rolled_back", W),
    ([ev("task.failed", F), ev("workflow.rolled_back", W)], "workflow.rolled_back", W),
    ([ev("precheck.expired", W), ev("workflow.cancelled", W)], "workflow.cancelled", W),
    ([ev("task.stalled", W), ev("workflow.vanished", W)], "workflow.vanished", W),
    # then task failures
    ([ev("task.stalled", W), ev("task.failed", F)], "task.failed", F),
    ([ev("workflow.changed", F), ev("task.failed", F)], "task.failed", F),
    # then the pre-check expiry, the expiry before the warning ahead of it
    ([ev("task.started", IN), ev("precheck.expiring", W)], "precheck.expiring", W),
    ([ev("precheck.expiring", W), ev("precheck.expired", W)], "precheck.expired", W),
    ([ev("task.stalled", W), ev("precheck.expiring", W)], "precheck.expiring", W),
    # then stalls
    ([ev("task.started", IN), ev("task.stalled", W)], "task.stalled", W),
    # then known transitions: an unknown value never titles a message with a known event
    ([ev("task.changed", W), ev("task.started", IN)], "task.started", IN),
    ([ev("workflow.changed", W), ev("task.succeeded", S)], "task.succeeded", S),
    ([ev("task.started", IN), ev("task.retried", W)], "task.retried", W),
    ([ev("workflow.started", IN), ev("task.started", IN)], "workflow.started", IN),
    ([ev("task.started", IN), ev("task.paused", W)], "task.paused", W),
    # generic *.changed last; among equals the louder, then the earlier
    ([ev("task.changed", W), ev("workflow.changed", F)], "workflow.changed", F),
    ([ev("task.changed", W), ev("workflow.changed", W)], "task.changed", W),
    # first sight titles its own message
    ([ev("workflow.detected", F)], "workflow.detected", F),
]


@pytest.mark.parametrize(("events", "kind", "severity"), TABLE)
def test_headline_precedence(events: list[Event], kind: str, severity: Severity) -> None:
    assert headline(events).kind == kind
    assert message_severity(events) == severity
    ranks = {(rank(e), e.severity.rank) for e in events}
    if len(ranks) == len(events):  # no tie: the order of the timeline does not matter
        assert headline(list(reversed(events))).kind == kind


def test_every_kind_has_a_place() -> None:
    """A new kind cannot silently fall to the bottom: only *.changed ranks last."""
    for kind in Kind:
        expected_last = kind.endswith(".changed")
        assert (rank(ev(kind, IN)) == UNKNOWN) is expected_last, kind


def test_a_failed_rollback_is_marked_critical() -> None:
    assert is_critical(ev("workflow.failed", F, critical=True))
    assert not is_critical(ev("workflow.failed", F))


def test_no_events_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        headline([])
