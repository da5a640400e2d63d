"""Every line tells true time (issue 9 item 2): ``occurred_at`` of every event kind.

A transition shows the cloud's timestamp (never before the previous poll that saw the old
status, never after it was observed), a time rule its due time, and the watcher's own
findings the observation time. Times are minutes after T0.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.core.strategies import TARGET, at, pt, wf
from watcher.core import engine
from watcher.core.engine import Enrichment
from watcher.core.events import Event
from watcher.core.models import UpgradeTask, Workflow
from watcher.core.policy import Policy
from watcher.core.wording import late_note, line_time

POLICY = Policy(late_after=timedelta(hours=12))

PRE_OK = pt("PreCheck", "Success", "pre", start=-30, end=-20, expire=120)
CL_INIT = pt("Cluster", "Init")
CL_RUN = pt("Cluster", "Running", "cl", start=1)


def second(
    before: Workflow,
    after: Workflow | None,
    now: float,
    *,
    enrichment: Enrichment | None = None,
) -> list[Event]:
    first = engine.evaluate(None, before, at(0), POLICY, target=TARGET)
    if after is None:
        return list(engine.evaluate_time(first.state, at(now), POLICY, target=TARGET).events)
    return list(
        engine.evaluate(
            first.state, after, at(now), POLICY, target=TARGET, enrichment=enrichment
        ).events
    )


# (case, before, after (None: time only), now, kind, expected line time in minutes)
CASES: list[tuple[str, Workflow, Workflow | None, float, str, float]] = [
    (
        "started: the cloud's start",
        wf("Running", PRE_OK, CL_INIT),
        wf("Running", PRE_OK, CL_RUN),
        3,
        "task.started",
        1,
    ),
    (
        "started: a start stamped before the poll that saw it Queuing is that poll",
        wf("Running", PRE_OK, pt("Cluster", "Queuing", "cl", start=-1)),
        wf("Running", PRE_OK, pt("Cluster", "Running", "cl", start=-1)),
        3,
        "task.started",
        0,
    ),
    (
        "succeeded: the cloud's end",
        wf("Running", PRE_OK, CL_RUN),
        wf("Running", PRE_OK, pt("Cluster", "Success", "cl", start=1, end=4)),
        5,
        "task.succeeded",
        4,
    ),
    (
        "succeeded without an end stamp: when it was seen, not the start",
        wf("Running", PRE_OK, CL_RUN),
        wf("Running", PRE_OK, pt("Cluster", "Success", "cl", start=1)),
        5,
        "task.succeeded",
        5,
    ),
    (
        "failed: the cloud's end",
        wf("Running", PRE_OK, CL_RUN),
        wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl", start=1, end=4)),
        5,
        "task.failed",
        4,
    ),
    (
        "workflow failed: the failed task's end",
        wf("Running", PRE_OK, CL_RUN),
        wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl", start=1, end=4)),
        5,
        "workflow.failed",
        4,
    ),
    (
        "a cloud stamp after the observation (skew) is the observation",
        wf("Running", PRE_OK, CL_RUN),
        wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl", start=1, end=9)),
        5,
        "task.failed",
        5,
    ),
    (
        "workflow succeeded: the last end",
        wf("Running", PRE_OK, CL_RUN),
        wf("Success", PRE_OK, pt("Cluster", "Success", "cl", start=1, end=4)),
        5,
        "workflow.succeeded",
        4,
    ),
    (
        "workflow started: the first start since the last poll",
        wf("Init", pt("PreCheck", "Init")),
        wf("Running", pt("PreCheck", "Running", "pre", start=2)),
        3,
        "workflow.started",
        2,
    ),
    (
        "workflow resumed: the active task's start",
        wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl", start=-10, end=-5)),
        wf(
            "Running",
            PRE_OK,
            pt("Cluster", "Failed", "cl", start=-10, end=-5),
            pt("Rollback", "Running", "rb", start=2),
        ),
        3,
        "workflow.resumed",
        2,
    ),
    (
        "rolled back: the rollback's end",
        wf(
            "Running",
            PRE_OK,
            pt("Cluster", "Failed", "cl", start=-10, end=-5),
            pt("Rollback", "Running", "rb", start=1),
        ),
        wf(
            "Pending",
            PRE_OK,
            pt("Cluster", "Failed", "cl", start=-10, end=-5),
            pt("Rollback", "Success", "rb", start=1, end=4),
        ),
        5,
        "workflow.rolled_back",
        4,
    ),
    (
        "cancelled: when it was seen",
        wf("Pending", pt("PreCheck", "Failed", "p", start=-9, end=-8)),
        wf("Cancel", pt("PreCheck", "Failed", "p", start=-9, end=-8)),
        5,
        "workflow.cancelled",
        5,
    ),
    (
        "retried: the new run's start",
        wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl", start=-10, end=-5)),
        wf("Running", PRE_OK, pt("Cluster", "Running", "cl", start=2)),
        3,
        "task.retried",
        2,
    ),
    (
        "expiring: expiry minus the lead",
        wf("Running", PRE_OK, CL_INIT),
        None,
        65,
        "precheck.expiring",
        60,
    ),
    ("expired: the expiry", wf("Running", PRE_OK, CL_INIT), None, 125, "precheck.expired", 120),
    (
        "stalled: start plus threshold",
        wf("Running", PRE_OK, CL_RUN),
        None,
        130,
        "task.stalled",
        121,
    ),
    (
        "reminder: failure plus the repeat interval",
        wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl", start=1, end=4)),
        None,
        250,
        "workflow.reminder",
        244,
    ),
]


@pytest.mark.parametrize(
    ("before", "after", "now", "kind", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_line_time_of_every_kind(
    before: Workflow, after: Workflow | None, now: float, kind: str, expected: float
) -> None:
    events = second(before, after, now)
    (event,) = [e for e in events if e.kind == kind]
    assert event.occurred_at == at(expected)
    assert line_time(event) == at(expected)
    assert event.occurred_at <= event.observed_at


def test_first_sight_vanished_and_paused_are_observation_times() -> None:
    detected = engine.evaluate(None, wf("Running", PRE_OK, CL_RUN), at(7), POLICY, target=TARGET)
    assert detected.events[0].occurred_at == at(7)
    vanished = engine.evaluate_vanished(detected.state, at(9), target=TARGET)
    assert vanished.events[0].occurred_at == at(9)
    paused = second(
        wf("Running", PRE_OK, CL_RUN),
        wf("Running", PRE_OK, CL_RUN),
        4,
        enrichment=Enrichment(upgrade=UpgradeTask(uid="cl", phase="Pause", progress="40.00")),
    )
    assert [(e.kind, e.occurred_at) for e in paused] == [("task.paused", at(4))]
    assert paused[0].message.startswith("Cluster upgrade task paused at 40%")


def test_a_second_stall_notice_shows_its_own_due_time() -> None:
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_RUN), at(0), POLICY, target=TARGET)
    one = engine.evaluate_time(first.state, at(130), POLICY, target=TARGET)
    two = engine.evaluate_time(one.state, at(365), POLICY, target=TARGET)
    assert [e.occurred_at for e in two.events] == [at(121 + 240)]


def test_observed_late_is_a_note_not_part_of_the_text() -> None:
    policy = Policy()  # late after 150 s
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_RUN), at(0), policy, target=TARGET)
    done = wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl", start=1, end=4))
    events = engine.evaluate(first.state, done, at(30), policy, target=TARGET).events
    for event in events:
        assert event.occurred_at == at(4)  # the cloud's time, even when seen late
        assert "observed late" not in event.message
        note = late_note(event)
        assert note is not None and note.count("observed late") == 1


def test_a_workflow_first_seen_paused_says_so_once() -> None:
    paused = Enrichment(upgrade=UpgradeTask(uid="cl", phase="Pause", progress="40.00"))
    running = wf("Running", PRE_OK, CL_RUN)
    first = engine.evaluate(None, running, at(0), POLICY, target=TARGET, enrichment=paused)
    assert "the upgrade task is paused at 40%" in first.events[0].message
    again = engine.evaluate(first.state, running, at(1), POLICY, target=TARGET, enrichment=paused)
    assert again.events == ()  # not news: the summary said it
    resumed = Enrichment(upgrade=UpgradeTask(uid="cl", phase="Running", progress="41.00"))
    moving = engine.evaluate(again.state, running, at(2), POLICY, target=TARGET, enrichment=resumed)
    paused_again = engine.evaluate(
        moving.state, running, at(3), POLICY, target=TARGET, enrichment=paused
    )
    assert [e.kind for e in paused_again.events] == ["task.paused"]  # a new pause is news


def test_an_expiring_line_is_never_before_the_precheck_passed() -> None:
    # The pre-check passes at minute 2 with a result valid until minute 30; the 60-minute
    # lead is due at minute -30, before the result existed (and before the last poll, 0).
    events = second(
        wf("Running", pt("PreCheck", "Running", "pre", start=-5), CL_INIT),
        wf("Running", pt("PreCheck", "Success", "pre", start=-5, end=2, expire=30), CL_INIT),
        3,
    )
    expiring = [e for e in events if e.kind == "precheck.expiring"]
    assert expiring
    assert line_time(expiring[0]) >= at(2)
