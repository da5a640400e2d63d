"""Acknowledgements reach the pure engine as data: reminders and repeated stall notices of an
acknowledged workflow fire silently until the acknowledgement ends; then they resume."""

from __future__ import annotations

from dataclasses import replace

from tests.core.strategies import TARGET, UID, at, pt, wf
from watcher.core import engine
from watcher.core.acks import Acknowledgement, changes_workflow
from watcher.core.policy import Policy

POLICY = Policy()  # stall threshold 2h for Cluster, repeats every 4h
PRE_OK = pt("PreCheck", "Success", "pre-1", start=-5, end=0, expire=120)
PENDING = wf("Pending", PRE_OK, pt("Cluster", "Failed", "cl-1", start=2, end=11))
RUNNING = wf("Running", PRE_OK, pt("Cluster", "Running", "cl-1", start=0))


def ack_until(minutes: float) -> Acknowledgement:
    return Acknowledgement(f"{TARGET.name}/{UID}", "alice", "on it", at(10), at(minutes))


def test_an_acknowledged_workflow_gets_no_reminder_until_the_ack_expires() -> None:
    first = engine.evaluate(None, PENDING, at(12), POLICY, target=TARGET)
    acked = engine.evaluate_time(first.state, at(252), POLICY, target=TARGET, ack=ack_until(300))
    assert acked.events == ()
    assert f"{UID}:reminder:0:1" in acked.state.fired  # not sent late once the ack ends
    still = engine.evaluate_time(acked.state, at(299), POLICY, target=TARGET, ack=ack_until(300))
    assert still.events == ()
    after = engine.evaluate_time(still.state, at(492), POLICY, target=TARGET, ack=ack_until(300))
    assert [e.dedup_key for e in after.events] == [f"{UID}:reminder:0:2"]


def test_without_an_ack_the_same_reminder_fires() -> None:
    first = engine.evaluate(None, PENDING, at(12), POLICY, target=TARGET)
    plain = engine.evaluate_time(first.state, at(252), POLICY, target=TARGET)
    assert [e.kind for e in plain.events] == ["workflow.reminder"]


def test_an_ended_ack_no_longer_mutes() -> None:
    first = engine.evaluate(None, PENDING, at(12), POLICY, target=TARGET)
    ended = replace(ack_until(600), ended_at=at(100))
    result = engine.evaluate_time(first.state, at(252), POLICY, target=TARGET, ack=ended)
    assert [e.kind for e in result.events] == ["workflow.reminder"]


def test_the_first_stall_notice_still_fires_its_repeats_do_not() -> None:
    ack = ack_until(500)
    state = engine.evaluate(None, RUNNING, at(0), POLICY, target=TARGET).state
    first = engine.evaluate_time(state, at(121), POLICY, target=TARGET, ack=ack)
    assert [e.dedup_key for e in first.events] == [f"{UID}:task:Cluster:a1:stalled:1"]
    repeat = engine.evaluate(first.state, RUNNING, at(361), POLICY, target=TARGET, ack=ack)
    assert repeat.events == ()
    resumed = engine.evaluate_time(repeat.state, at(601), POLICY, target=TARGET, ack=ack)
    assert [e.dedup_key for e in resumed.events] == [f"{UID}:task:Cluster:a1:stalled:3"]


def test_only_a_change_of_the_workflow_ends_an_ack() -> None:
    state = engine.evaluate(None, RUNNING, at(0), POLICY, target=TARGET).state
    stall = engine.evaluate_time(state, at(121), POLICY, target=TARGET).events
    assert not changes_workflow(stall)
    failed = engine.evaluate(state, PENDING, at(130), POLICY, target=TARGET).events
    assert changes_workflow(failed)
    assert ack_until(60).text() == "acknowledged by alice: on it"
