"""The transition engine: one table row per catalog row and diff rule, then the details."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import load_fixture
from tests.core.strategies import FROM, TARGET, TO, UID, at, pt, wf
from watcher.core import engine, wording
from watcher.core.engine import Enrichment, Evaluation
from watcher.core.events import Event, Severity
from watcher.core.models import CheckItem, PreCheckTask, UpgradeTask, Workflow
from watcher.core.policy import Policy
from watcher.core.state import WatchState
from watcher.core.wording import late_note

POLICY = Policy()
SEED = Workflow.from_api(load_fixture("seed_workflow.json"))


@dataclass(frozen=True)
class S:
    """A step: at ``minutes`` after T0, a snapshot (``w``), a time-only tick (``w=None``) or a
    404 (``vanished``); ``expect`` lists ``kind:severity`` of the events, in order."""

    minutes: float
    w: Workflow | None = None
    expect: tuple[str, ...] = ()
    vanished: bool = False
    enrich: Enrichment | None = None


def run(steps: list[S], policy: Policy = POLICY) -> list[Evaluation]:
    state: WatchState | None = None
    results = []
    for step in steps:
        now = at(step.minutes)
        if step.vanished:
            assert state is not None
            result = engine.evaluate_vanished(state, now, target=TARGET)
        elif step.w is None:
            assert state is not None
            result = engine.evaluate_time(state, now, policy, target=TARGET)
        else:
            result = engine.evaluate(
                state, step.w, now, policy, target=TARGET, enrichment=step.enrich
            )
        results.append(result)
        state = result.state
    return results


def kinds(result: Evaluation) -> tuple[str, ...]:
    return tuple(f"{e.kind}:{e.severity}" for e in result.events)


DETECTED = ("workflow.detected:info",)
DETECTED_FAILED = ("workflow.detected:failure",)
PRE_OK = pt("PreCheck", "Success", "pre-1", start=-5, end=0, expire=120)
CL_INIT = pt("Cluster", "Init")
CL_RUN = pt("Cluster", "Running", "cl-1", start=2)
CL_FAIL = pt("Cluster", "Failed", "cl-1", start=2, end=11)
PENDING = wf("Pending", PRE_OK, CL_FAIL)
WAITING = wf("Init", PRE_OK, CL_INIT)  # pre-check passed, upgrade not started

TABLE: dict[str, list[S]] = {
    "detected_first_sight": [S(0, wf("Init", pt("PreCheck"), pt("Cluster")), DETECTED)],
    "detected_seed_is_failure": [S(0, SEED, DETECTED_FAILED)],
    "started": [
        S(0, wf("Init", pt("PreCheck"), CL_INIT), DETECTED),
        S(
            1,
            wf("Running", pt("PreCheck", "Running", "pre-1", start=0.5), CL_INIT),
            ("workflow.started:info", "task.started:info"),
        ),
    ],
    "failed": [
        S(0, wf("Running", PRE_OK, CL_RUN), DETECTED),
        S(1, PENDING, ("task.failed:failure", "workflow.failed:failure")),
    ],
    "resumed_and_retried_same_task_id_rearms_failed": [
        S(0, PENDING, DETECTED_FAILED),
        S(
            1,
            wf("Running", PRE_OK, CL_RUN),
            ("workflow.resumed:info", "task.retried:warning", "task.started:info"),
        ),
        S(2, PENDING, ("task.failed:failure", "workflow.failed:failure")),
    ],
    "retried_with_new_task_id_missed_run": [
        S(0, PENDING, DETECTED_FAILED),
        S(
            2,
            wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl-2", start=20, end=30)),
            ("task.retried:warning", "task.failed:failure"),
        ),
    ],
    "retried_with_new_task_id_running": [
        S(0, PENDING, DETECTED_FAILED),
        S(
            1,
            wf("Running", PRE_OK, pt("Cluster", "Queuing", "cl-2")),
            ("workflow.resumed:info", "task.retried:warning", "task.queued:info"),
        ),
        S(
            2,
            wf("Running", PRE_OK, pt("Cluster", "Running", "cl-2", start=2)),
            ("task.started:info",),
        ),
    ],
    "succeeded": [
        S(
            0,
            wf(
                "Running",
                PRE_OK,
                pt("Cluster", "Success", "cl-1", start=2, end=40),
                pt("PostCheck", "Running", "po-1", start=41),
            ),
            DETECTED,
        ),
        S(
            1,
            wf(
                "Success",
                PRE_OK,
                pt("Cluster", "Success", "cl-1", start=2, end=40),
                pt("PostCheck", "Success", "po-1", start=41, end=42),
            ),
            ("task.succeeded:success", "workflow.succeeded:success"),
        ),
    ],
    "cancelled": [
        S(0, WAITING, DETECTED),
        S(1, wf("Cancel", PRE_OK, CL_INIT), ("workflow.cancelled:warning",)),
    ],
    "vanished_once": [
        S(0, wf("Running", PRE_OK, CL_RUN), DETECTED),
        S(1, vanished=True, expect=("workflow.vanished:warning",)),
        S(2, vanished=True),
    ],
    "vanished_not_after_success": [
        S(0, wf("Success", PRE_OK, pt("Cluster", "Success", "cl-1", start=2, end=4)), DETECTED),
        S(1, vanished=True),
    ],
    "reminder_every_repeat_interval_from_failure_end": [
        S(12, PENDING, DETECTED_FAILED),  # the Cluster task failed at minute 11
        S(250, None),
        S(252, None, ("workflow.reminder:failure",)),
        S(300, None),
        S(491, None, ("workflow.reminder:failure",)),
        S(492, PENDING),
        S(731, PENDING, ("workflow.reminder:failure",)),
    ],
    "reminder_rearms_on_a_new_failure": [
        S(12, PENDING, DETECTED_FAILED),
        S(252, None, ("workflow.reminder:failure",)),
        S(
            253,
            wf("Running", PRE_OK, CL_RUN),
            ("workflow.resumed:info", "task.retried:warning", "task.started:info"),
        ),
        S(
            254,
            wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl-1", start=2, end=254)),
            ("task.failed:failure", "workflow.failed:failure"),
        ),
        S(300, None),
        S(495, None, ("workflow.reminder:failure",)),
    ],
    "queued": [
        S(0, wf("Running", PRE_OK, CL_INIT), DETECTED),
        S(1, wf("Running", PRE_OK, pt("Cluster", "Queuing", "cl-1")), ("task.queued:info",)),
    ],
    "rollback_started_is_warning": [
        S(0, PENDING, DETECTED_FAILED),
        S(
            1,
            wf("Running", PRE_OK, CL_FAIL, pt("Rollback", "Running", "rb-1", start=1)),
            ("workflow.resumed:info", "task.started:warning"),
        ),
    ],
    "task_succeeded": [
        S(0, wf("Running", PRE_OK, CL_RUN), DETECTED),
        S(
            1,
            wf("Running", PRE_OK, pt("Cluster", "Success", "cl-1", start=2, end=40)),
            ("task.succeeded:success",),
        ),
    ],
    "missed_running_point_init_to_success": [
        S(0, wf("Running", PRE_OK, CL_INIT), DETECTED),
        S(
            1,
            wf("Running", PRE_OK, pt("Cluster", "Success", "cl-1", start=2, end=40)),
            ("task.succeeded:success",),
        ),
    ],
    "missed_running_phase_init_to_success": [
        S(0, wf("Init", pt("PreCheck"), CL_INIT), DETECTED),
        S(
            1,
            wf("Success", PRE_OK, pt("Cluster", "Success", "cl-1", start=2, end=40)),
            ("task.succeeded:success", "task.succeeded:success", "workflow.succeeded:success"),
        ),
    ],
    "unknown_phase_paused": [
        S(0, wf("Running", PRE_OK, CL_RUN), DETECTED),
        S(1, wf("Paused", PRE_OK, CL_RUN), ("workflow.changed:warning",)),
        S(2, wf("Running", PRE_OK, CL_RUN), ("workflow.resumed:info",)),
    ],
    "unknown_status_pause_then_running_again_is_quiet": [
        S(0, wf("Running", PRE_OK, CL_RUN), DETECTED),
        S(
            1,
            wf("Running", PRE_OK, pt("Cluster", "Pause", "cl-1", start=2)),
            ("task.changed:warning",),
        ),
        S(2, wf("Running", PRE_OK, CL_RUN)),
    ],
    "unknown_task_type_canary": [
        S(0, wf("Running", PRE_OK, pt("Canary", "Init")), DETECTED),
        S(
            1,
            wf("Running", PRE_OK, pt("Canary", "Running", "ca-1", start=1)),
            ("task.changed:warning",),
        ),
        S(
            2,
            wf("Running", PRE_OK, pt("Canary", "Failed", "ca-1", start=1, end=2)),
            ("task.changed:failure",),
        ),
    ],
    "stalled_then_repeats": [
        S(0, wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=0)), DETECTED),
        S(119, None),
        S(121, None, ("task.stalled:warning",)),
        S(200, None),
        S(359, None),
        S(361, None, ("task.stalled:warning",)),
        S(601, None, ("task.stalled:warning",)),
    ],
    "stalled_precheck_threshold_30m": [
        S(0, wf("Running", pt("PreCheck", "Running", "pre-1", start=0), CL_INIT), DETECTED),
        S(29, None),
        S(31, None, ("task.stalled:warning",)),
    ],
    "stalled_rearms_on_retry": [
        S(0, wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=0)), DETECTED),
        S(121, None, ("task.stalled:warning",)),
        S(
            122,
            wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl-1", start=0, end=122)),
            ("task.failed:failure", "workflow.failed:failure"),
        ),
        S(
            123,
            wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=123)),
            ("workflow.resumed:info", "task.retried:warning", "task.started:info"),
        ),
        S(244, None, ("task.stalled:warning",)),
    ],
    "stall_already_past_at_first_sight_waits_for_the_repeat": [
        S(
            150,
            wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=0)),
            ("workflow.detected:warning",),
        ),
        S(151, None),
        S(361, None, ("task.stalled:warning",)),
    ],
    "precheck_leads_60_15_and_expired_each_once": [
        S(0, WAITING, DETECTED),
        S(59, None),
        S(61, None, ("precheck.expiring:warning",)),
        S(62, WAITING),
        S(104, None),
        S(106, None, ("precheck.expiring:warning",)),
        S(119, None),
        S(120, None, ("precheck.expired:warning",)),
        S(121, WAITING),
        S(600, None),
    ],
    "precheck_rules_with_cluster_point_missing_status": [
        S(0, wf("Init", PRE_OK, pt("Cluster")), DETECTED),
        S(61, None, ("precheck.expiring:warning",)),
        S(121, None, ("precheck.expired:warning",)),
    ],
    "precheck_lead_still_ahead_at_first_sight_fires_later": [
        S(70, WAITING, DETECTED),  # 50 min left: the 60 min lead is past, 15 min ahead
        S(90, None),
        S(106, None, ("precheck.expiring:warning",)),
        S(121, None, ("precheck.expired:warning",)),
    ],
    "precheck_expired_before_first_sight_is_only_in_the_summary": [
        S(130, WAITING, ("workflow.detected:warning",)),
        S(131, None),
    ],
    "precheck_jump_over_the_60m_lead_sends_only_the_15m_one": [
        S(0, WAITING, DETECTED),
        S(110, None, ("precheck.expiring:warning",)),
        S(111, None),
    ],
    "precheck_rules_stop_once_the_cluster_task_starts": [
        S(0, WAITING, DETECTED),
        S(
            30,
            wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=30)),
            ("workflow.started:info", "task.started:info"),
        ),
        S(61, None),
        S(121, None),
    ],
    "precheck_rerun_rearms_the_expiry_rules": [
        S(0, WAITING, DETECTED),
        S(121, None, ("precheck.expired:warning",)),
        S(
            125,
            wf("Init", pt("PreCheck", "Running", "pre-2", start=124), CL_INIT),
            ("task.started:info",),
        ),
        S(
            126,
            wf("Init", pt("PreCheck", "Success", "pre-2", start=124, end=126, expire=250), CL_INIT),
            ("task.succeeded:success",),
        ),
        S(191, None, ("precheck.expiring:warning",)),
        S(236, None, ("precheck.expiring:warning",)),
        S(251, None, ("precheck.expired:warning",)),
    ],
    "same_snapshot_twice_is_quiet": [
        S(0, wf("Running", PRE_OK, CL_RUN), DETECTED),
        S(1, wf("Running", PRE_OK, CL_RUN)),
    ],
    "point_added_later_counts_from_init": [
        S(0, wf("Running", PRE_OK), DETECTED),
        S(
            1,
            wf("Running", PRE_OK, pt("Snapshot", "Success", "sn-1", start=0, end=1)),
            ("task.succeeded:success",),
        ),
    ],
    "reset_to_init_and_new_start_is_a_new_run": [
        S(0, wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=0)), DETECTED),
        S(1, wf("Running", PRE_OK, pt("Cluster", "Init", "cl-1"))),
        S(
            2,
            wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=2)),
            ("task.started:info",),
        ),
    ],
}


@pytest.mark.parametrize("steps", list(TABLE.values()), ids=list(TABLE))
def test_catalog(steps: list[S]) -> None:
    results = run(steps)
    assert [kinds(r) for r in results] == [s.expect for s in steps]


# --------------------------------------------------------------------------- details


def test_seed_first_sight_is_one_failure_summary_naming_the_cluster_task() -> None:
    (result,) = run([S(0, SEED)])
    (event,) = result.events
    assert event.kind == "workflow.detected" and event.severity == Severity.FAILURE
    assert event.message == (
        "Found upgrade v1.17.17-r0 → v1.19.16-r80 failed: Cluster upgrade task Failed after 9m 5s"
    )
    assert event.dedup_key == f"{SEED.uid}:detected"
    assert (event.task_type, event.task_id) == ("Cluster", "6d799ff6-3afe-4242-80b4-6f0a0fa746cb")
    assert (event.from_version, event.to_version) == ("v1.17.17-r0", "v1.19.16-r80")
    assert event.details["failed_tasks"][0]["task_type"] == "Cluster"
    assert event.late_since is None
    assert result.state.pending_since == SEED.points[2].ended_at


def test_task_failed_message_names_task_duration_and_versions() -> None:
    before = SEED.model_copy(
        update={
            "phase": "Running",
            "points": (
                SEED.points[0],
                SEED.points[1],
                SEED.points[2].model_copy(update={"status": "Running", "ended_at": None}),
                SEED.points[3],
            ),
        }
    )
    now = datetime(2023, 11, 25, 7, 59, tzinfo=UTC)
    first = engine.evaluate(None, before, now, POLICY, target=TARGET)
    result = engine.evaluate(first.state, SEED, now + timedelta(minutes=1), POLICY, target=TARGET)
    failed, wf_failed = result.events
    assert failed.message == "Cluster upgrade task Failed after 9m 5s (v1.17.17-r0 → v1.19.16-r80)"
    assert failed.dedup_key == (
        f"{SEED.uid}:task:Cluster:a1:6d799ff6-3afe-4242-80b4-6f0a0fa746cb:Failed"
    )
    assert wf_failed.message == (
        "Upgrade v1.17.17-r0 → v1.19.16-r80 failed: Cluster upgrade task Failed after 9m 5s"
    )
    assert wf_failed.dedup_key == f"{SEED.uid}:phase:1:Pending"
    assert wf_failed.details["failed_tasks"][0]["task_id"] == SEED.points[2].task_id


def test_every_event_carries_the_full_context() -> None:
    first = engine.evaluate(
        None, wf("Running", PRE_OK, CL_RUN), at(0), POLICY, target=TARGET, cluster_name="prod-a"
    )
    result = engine.evaluate(
        first.state, PENDING, at(1), POLICY, target=TARGET, cluster_name="prod-a"
    )
    event = result.events[0]
    assert event.target == TARGET and event.cluster_name == "prod-a"
    assert event.workflow_id == UID and (event.from_version, event.to_version) == (FROM, TO)
    assert (event.task_type, event.task_id) == ("Cluster", "cl-1")
    assert (event.old_status, event.new_status) == ("Running", "Failed")
    assert (event.started_at, event.ended_at) == (at(2), at(11))
    assert event.observed_at == at(1) and event.duration_s == 540.0
    assert Event.from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_workflow_succeeded_reports_versions_and_total_cloud_duration() -> None:
    done = wf(
        "Success",
        PRE_OK,
        pt("Cluster", "Success", "cl-1", start=2, end=40),
        pt("PostCheck", "Success", "po-1", start=41, end=65),
    )
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_RUN), at(0), POLICY, target=TARGET)
    result = engine.evaluate(first.state, done, at(66), POLICY, target=TARGET)
    final = result.events[-1]
    assert final.kind == "workflow.succeeded"
    assert (final.started_at, final.ended_at) == (at(-5), at(65))
    assert final.message.startswith(f"Upgrade {FROM} → {TO} succeeded in 1h 10m")
    assert final.details["duration_s"] == 70 * 60


def test_task_succeeded_carries_cloud_times_and_duration_even_when_running_was_missed() -> None:
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_INIT), at(0), POLICY, target=TARGET)
    done = wf("Running", PRE_OK, pt("Cluster", "Success", "cl-1", start=2, end=40))
    (event,) = engine.evaluate(first.state, done, at(1), POLICY, target=TARGET).events
    assert (event.old_status, event.new_status) == ("Init", "Success")
    assert (event.started_at, event.ended_at) == (at(2), at(40))
    assert event.message == f"Cluster upgrade task succeeded in 38m ({FROM} → {TO})"
    assert event.details["duration_s"] == 38 * 60


def test_events_after_a_gap_are_marked_late_with_the_window() -> None:
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_RUN), at(0), POLICY, target=TARGET)
    result = engine.evaluate(first.state, PENDING, at(30), POLICY, target=TARGET)
    assert result.events and all(e.late_since == at(0) for e in result.events)
    # the note is rendered once, from late_since, never baked into the event text
    assert not any("observed late" in e.message for e in result.events)
    note = late_note(result.events[0])
    assert note is not None and "between 08:00 UTC and 08:30 UTC" in note


def test_events_within_late_after_are_not_late() -> None:
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_RUN), at(0), POLICY, target=TARGET)
    result = engine.evaluate(first.state, PENDING, at(2.5), POLICY, target=TARGET)
    assert result.events and all(e.late_since is None for e in result.events)


def test_failed_precheck_names_its_failed_items() -> None:
    running = wf("Running", pt("PreCheck", "Running", "pre-1", start=0), CL_INIT)
    failed = wf("Pending", pt("PreCheck", "Failed", "pre-1", start=0, end=2), CL_INIT)
    first = engine.evaluate(None, running, at(0), POLICY, target=TARGET)
    assert engine.enrichment_wanted(first.state, failed) == {"precheck"}
    task = PreCheckTask(
        uid="pre-1",
        phase="Failed",
        items=(
            CheckItem(
                name="NodeOS",
                level="Fatal",
                phase="Failed",
                message="EulerOS 2.5 unsupported",
                node="node-1",
            ),
            CheckItem(name="Addons", level="Info", phase="Success", message="ok"),
            CheckItem(name="DeprecatedAPI", level="Warning", phase="Error", message="v1beta1 used"),
        ),
    )
    result = engine.evaluate(
        first.state, failed, at(2), POLICY, target=TARGET, enrichment=Enrichment(precheck=task)
    )
    task_failed = result.events[0]
    assert task_failed.kind == "task.failed"
    base = {"kind": None, "group": None, "error_codes": [], "risk": None}
    assert task_failed.details["failed_items"] == [
        {
            **base,
            "name": "NodeOS",
            "level": "Fatal",
            "message": "EulerOS 2.5 unsupported",
            "node": "node-1",
        },
        {
            **base,
            "name": "DeprecatedAPI",
            "level": "Warning",
            "message": "v1beta1 used",
            "node": None,
        },
    ]
    assert task_failed.message == (
        "Pre-check task Failed after 2m: 2 checks failed: NodeOS [Fatal] on node-1; "
        "DeprecatedAPI [Warning]"
    )
    assert engine.enrichment_wanted(result.state, failed) == frozenset()


def test_precheck_items_of_another_task_are_ignored() -> None:
    first = engine.evaluate(
        None,
        wf("Running", pt("PreCheck", "Running", "pre-1", start=0)),
        at(0),
        POLICY,
        target=TARGET,
    )
    other = PreCheckTask(uid="pre-9", items=(CheckItem(name="X", phase="Failed"),))
    result = engine.evaluate(
        first.state,
        wf("Pending", pt("PreCheck", "Failed", "pre-1", start=0, end=1)),
        at(1),
        POLICY,
        target=TARGET,
        enrichment=Enrichment(precheck=other),
    )
    assert "failed_items" not in result.events[0].details


def test_running_cluster_task_reports_progress_now_and_in_later_state() -> None:
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_INIT), at(0), POLICY, target=TARGET)
    running = wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=0))
    assert engine.enrichment_wanted(first.state, running) == {"upgrade"}
    result = engine.evaluate(
        first.state,
        running,
        at(1),
        POLICY,
        target=TARGET,
        enrichment=Enrichment(upgrade=UpgradeTask(uid="cl-1", progress="12.50")),
    )
    (started,) = result.events
    assert started.details["progress"] == "12.50"
    assert started.message == f"Cluster upgrade task started ({FROM} → {TO}), progress 12.5%"
    later = engine.evaluate(
        result.state,
        running,
        at(2),
        POLICY,
        target=TARGET,
        enrichment=Enrichment(upgrade=UpgradeTask(uid="cl-1", progress="40.00")),
    )
    assert later.events == ()
    assert later.state.tracks["Cluster"].progress == "40.00"
    stalled = engine.evaluate_time(later.state, at(121), POLICY, target=TARGET)
    assert stalled.events[0].details["progress"] == "40.00"
    assert "progress 40%" in stalled.events[0].message


def test_enrichment_wanted_only_for_what_the_snapshot_needs() -> None:
    assert engine.enrichment_wanted(None, PENDING) == frozenset()
    assert engine.enrichment_wanted(None, wf("Running", PRE_OK, pt("Cluster", "Queuing"))) == (
        frozenset()  # no task ID: nothing to ask for
    )
    failed_pre = wf("Pending", pt("PreCheck", "Failed", "pre-1", start=0, end=1))
    assert engine.enrichment_wanted(None, failed_pre) == {"precheck"}


def test_stall_message_and_fired_keeps_only_the_latest_repeat() -> None:
    steps = [S(0, wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=0)))]
    steps += [S(121 + 240 * k, None) for k in range(5)]
    results = run(steps)
    first_stall = results[1].events[0]
    assert first_stall.message.startswith(
        "Cluster upgrade task Running for 2h 1m, past its 2h threshold (as of the last snapshot"
    )
    assert first_stall.dedup_key == f"{UID}:task:Cluster:a1:stalled:1"
    assert results[-1].events[0].dedup_key == f"{UID}:task:Cluster:a1:stalled:5"
    stall_keys = [k for k in results[-1].state.fired if ":stalled:" in k]
    assert stall_keys == [f"{UID}:task:Cluster:a1:stalled:5"]


def test_stall_without_cloud_start_counts_from_first_sight() -> None:
    results = run([S(0, wf("Running", PRE_OK, pt("Cluster", "Queuing", "cl-1"))), S(121, None)])
    (event,) = results[1].events
    assert event.kind == "task.stalled" and "no start time from the cloud" in event.message
    assert event.started_at == at(0)


def test_precheck_event_keys_and_messages() -> None:
    results = run([S(0, WAITING), S(61, None), S(120, None)])
    expiring, expired = results[1].events[0], results[2].events[0]
    stamp = "20240301T100000.000000Z"
    assert expiring.dedup_key == f"{UID}:task:PreCheck:a1:pre-1:expiring:{stamp}:60m"
    assert expiring.message.startswith(
        "Pre-check result expires in 59m (at 10:00 UTC): start the cluster upgrade before then"
    )
    assert expiring.expires_at == at(120) and expiring.details["lead_minutes"] == 60
    assert expired.dedup_key == f"{UID}:task:PreCheck:a1:pre-1:expired:{stamp}"
    assert expired.message.startswith(
        "Pre-check result expired at 10:00 UTC: run the pre-check again before upgrading"
    )


def test_reminder_and_retry_keys() -> None:
    results = run(
        [
            S(12, PENDING),
            S(252, None),
            S(253, wf("Running", PRE_OK, CL_RUN)),
            S(254, wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl-1", start=2, end=254))),
        ]
    )
    assert results[1].events[0].dedup_key == f"{UID}:reminder:0:1"
    assert [e.dedup_key for e in results[2].events] == [
        f"{UID}:phase:1:Running",
        f"{UID}:task:Cluster:a2:cl-1:retried",
        f"{UID}:task:Cluster:a2:cl-1:Running",
    ]
    assert [e.dedup_key for e in results[3].events] == [
        f"{UID}:task:Cluster:a2:cl-1:Failed",
        f"{UID}:phase:2:Pending",
    ]
    assert results[3].state.attempts == {"PreCheck": 1, "Cluster": 2}
    assert not any(":a1:" in k for k in results[3].state.fired if ":Cluster:" in k)


def test_vanished_event_and_state() -> None:
    first = engine.evaluate(None, wf("Running", PRE_OK, CL_RUN), at(0), POLICY, target=TARGET)
    result = engine.evaluate_vanished(first.state, at(5), target=TARGET)
    (event,) = result.events
    assert event.dedup_key == f"{UID}:vanished"
    assert (
        event.message
        == f"Upgrade {FROM} → {TO} no longer exists (HTTP 404); last seen Running at 08:00 UTC"
    )
    assert result.state.vanished and result.state.observed_at == at(0)
    back = engine.evaluate(
        result.state, wf("Running", PRE_OK, CL_RUN), at(6), POLICY, target=TARGET
    )
    assert not back.state.vanished
    assert engine.evaluate_vanished(back.state, at(7), target=TARGET).events == ()


def test_evaluate_time_keeps_observed_at_and_notes_stale_snapshot() -> None:
    first = engine.evaluate(None, WAITING, at(0), POLICY, target=TARGET)
    result = engine.evaluate_time(first.state, at(61), POLICY, target=TARGET)
    assert result.state.observed_at == at(0)
    (event,) = result.events
    assert event.late_since is None and event.details["as_of"] == at(0).isoformat()
    assert "as of the last snapshot" in event.message


def test_same_snapshot_later_gives_only_newly_due_time_rules() -> None:
    first = engine.evaluate(None, WAITING, at(0), POLICY, target=TARGET)
    again = engine.evaluate(first.state, WAITING, at(62), POLICY, target=TARGET)
    assert [e.kind for e in again.events] == ["precheck.expiring"]
    assert engine.evaluate(again.state, WAITING, at(63), POLICY, target=TARGET).events == ()


def test_another_workflow_uid_is_a_first_sight() -> None:
    first = engine.evaluate(None, PENDING, at(0), POLICY, target=TARGET)
    other = wf("Init", uid="wf-other")
    result = engine.evaluate(first.state, other, at(1), POLICY, target=TARGET)
    assert [e.kind for e in result.events] == ["workflow.detected"]
    assert result.state.workflow.uid == "wf-other" and result.state.phase_seq == 0


def test_naive_now_is_taken_as_utc() -> None:
    naive = datetime(2024, 3, 1, 8, 0)  # naive on purpose
    result = engine.evaluate(None, WAITING, naive, POLICY, target=TARGET)
    assert result.state.observed_at == at(0)


def test_duplicate_task_types_get_their_own_slots() -> None:
    two = wf(
        "Running",
        pt("Rollback", "Success", "rb-1", start=0, end=1),
        pt("Rollback", "Running", "rb-2", start=2),
    )
    first = engine.evaluate(
        None,
        wf("Running", pt("Rollback", "Success", "rb-1", start=0, end=1)),
        at(0),
        POLICY,
        target=TARGET,
    )
    result = engine.evaluate(first.state, two, at(1), POLICY, target=TARGET)
    (event,) = result.events
    assert event.task_id == "rb-2" and event.dedup_key == f"{UID}:task:Rollback#2:a1:rb-2:Running"


def test_keys_escape_colons_from_the_cloud() -> None:
    first = engine.evaluate(
        None, wf("Running", pt("Odd:Type", "Init"), uid="a:b"), at(0), POLICY, target=TARGET
    )
    result = engine.evaluate(
        first.state,
        wf("Running", pt("Odd:Type", "Running", "t:1", start=0), uid="a:b"),
        at(1),
        POLICY,
        target=TARGET,
    )
    assert result.events[0].dedup_key == "a%3Ab:task:Odd%3AType:a1:t%3A1:Running"


@pytest.mark.parametrize(
    "workflow", [SEED, WAITING, wf("Running", PRE_OK, CL_RUN), wf(None), wf("Paused")]
)
def test_state_json_round_trips_exactly(workflow: Workflow) -> None:
    state = engine.evaluate(None, workflow, at(100), POLICY, target=TARGET).state
    state = engine.evaluate_time(state, at(200), POLICY, target=TARGET).state
    data: dict[str, Any] = json.loads(json.dumps(state.to_json()))
    assert WatchState.from_json(data) == state
    assert WatchState.from_json(data).to_json() == state.to_json()


def test_state_of_another_version_is_refused() -> None:
    data = engine.evaluate(None, WAITING, at(0), POLICY, target=TARGET).state.to_json()
    with pytest.raises(ValueError, match="version"):
        WatchState.from_json({**data, "version": 99})


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45.9, "45s"),
        (60, "1m"),
        (545, "9m 5s"),
        (3600, "1h"),
        (7260, "2h 1m"),
        (86400, "1d"),
        (90000, "1d 1h"),
        (-5, "0s"),
        (timedelta(minutes=70), "1h 10m"),
    ],
)
def test_format_duration(seconds: float | timedelta, text: str) -> None:
    assert wording.format_duration(seconds) == text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"precheck_leads": (timedelta(0),)},
        {"repeat_interval": timedelta(0)},
        {"stall_default": timedelta(seconds=-1)},
        {"stall_thresholds": {"Cluster": timedelta(0)}},
        {"late_after": timedelta(seconds=-1)},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        Policy(**kwargs)


def test_policy_normalises_leads_and_defaults() -> None:
    policy = Policy(
        precheck_leads=(timedelta(minutes=15), timedelta(minutes=60), timedelta(minutes=15))
    )
    assert policy.precheck_leads == (timedelta(minutes=60), timedelta(minutes=15))
    assert policy.stall_threshold("Cluster") == timedelta(minutes=120)
    assert policy.stall_threshold("Canary") == timedelta(minutes=60)
    assert Policy() == Policy()


def test_now_in_another_timezone_is_the_same_instant() -> None:
    from datetime import timezone

    cst = timezone(timedelta(hours=8))
    result = engine.evaluate(None, WAITING, at(0).astimezone(cst), POLICY, target=TARGET)
    assert result.state.observed_at == at(0) and result.state.observed_at.tzinfo == UTC


# -- issue 7: thousands of points in linear time -------------------------------------------


def test_five_thousand_points_evaluate_in_linear_time() -> None:
    running = wf("Running", *[pt("PreCheck", "Running", f"t-{i}", start=0) for i in range(5000)])
    started = time.thread_time()
    first = engine.evaluate(None, running, at(1), Policy(), target=TARGET)
    second = engine.evaluate(first.state, running, at(500), Policy(), target=TARGET)
    # a per-point scan of every fired key made this 11 s; linear it is well under one
    assert time.thread_time() - started < 2.0
    assert len(second.events) == 5000  # every point stalled once, none lost
