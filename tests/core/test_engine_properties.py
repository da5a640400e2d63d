"""Properties of the engine over random histories of a workflow (hypothesis).

Random phases (unknown ones and None included), point statuses, task types, task IDs and
times, with ``now`` moving forward by random gaps; snapshots interleaved with time-only
ticks and 404s.
"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings

from tests.core.strategies import T0, TARGET, Step, histories, workflows
from watcher.core import cadence, engine, rules
from watcher.core.engine import Evaluation
from watcher.core.models import Workflow
from watcher.core.policy import Policy, PollPolicy
from watcher.core.state import WatchState
from watcher.core.wording import rolled_back

POLICY = Policy()
POLL = PollPolicy()
PROFILE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TERMINAL_KIND = {"Success": "workflow.succeeded", "Cancel": "workflow.cancelled"}
PHASE_KINDS = {
    "workflow.rolled_back",
    "workflow.started",
    "workflow.failed",
    "workflow.resumed",
    "workflow.succeeded",
    "workflow.cancelled",
    "workflow.changed",
}


def replay(steps: list[Step]) -> list[tuple[Step, WatchState | None, Evaluation]]:
    """Run a history; return (step, state before, result) for each step."""
    state: WatchState | None = None
    now = T0
    out = []
    for step in steps:
        now += step.gap
        before = state
        if step.workflow is not None:
            result = engine.evaluate(state, step.workflow, now, POLICY, target=TARGET)
        elif state is None:
            continue
        elif step.vanished:
            result = engine.evaluate_vanished(state, now, target=TARGET)
        else:
            result = engine.evaluate_time(state, now, POLICY, target=TARGET)
        out.append((step, before, result))
        state = result.state
    return out


@PROFILE
@given(histories())
def test_no_dedup_key_is_ever_emitted_twice(steps: list[Step]) -> None:
    keys = [e.dedup_key for _, _, r in replay(steps) for e in r.events]
    assert len(keys) == len(set(keys))


@PROFILE
@given(histories())
def test_each_phase_change_yields_exactly_one_phase_event(steps: list[Step]) -> None:
    for step, before, result in replay(steps):
        phase_events = [e for e in result.events if e.kind in PHASE_KINDS]
        if before is None or step.workflow is None:
            assert phase_events == []
            continue
        old, new = before.workflow.phase, step.workflow.phase
        if old == new:
            assert phase_events == []
            continue
        (event,) = phase_events
        assert (event.old_status, event.new_status) == (old, new)
        if rolled_back(step.workflow) and new in ("Pending", "Success"):
            # a successful rollback is its own outcome, never a fresh failure or a success
            assert event.kind == "workflow.rolled_back"
            continue
        if new in TERMINAL_KIND:
            assert event.kind == TERMINAL_KIND[new]
        if new == "Pending":
            assert event.kind == "workflow.failed"


@PROFILE
@given(histories())
def test_replaying_the_same_snapshot_at_the_same_time_is_quiet(steps: list[Step]) -> None:
    for _, _, result in replay(steps):
        state = result.state
        again = engine.evaluate(state, state.workflow, state.observed_at, POLICY, target=TARGET)
        assert again.events == ()
        if not state.vanished:
            # evaluate_time keeps observed_at, so only compare when it did not move on
            assert (
                engine.evaluate_time(state, state.observed_at, POLICY, target=TARGET).events == ()
            )


@PROFILE
@given(histories())
def test_state_json_round_trips_and_cadence_is_sane(steps: list[Step]) -> None:
    for _, _, result in replay(steps):
        state = result.state
        data = json.loads(json.dumps(result.state.to_json()))
        assert WatchState.from_json(data) == state
        delay = cadence.next_poll_in(state, state.observed_at, POLL, POLICY)
        assert delay is None or POLL.min_s <= delay <= max(POLL.idle_s, POLL.failed_s)


@PROFILE
@given(histories())
def test_every_event_names_its_workflow_and_lateness_is_consistent(steps: list[Step]) -> None:
    for step, before, result in replay(steps):
        for event in result.events:
            assert event.workflow_id == "wf-0001" and event.target == TARGET and event.message
            if event.late_since is not None:
                assert before is not None and step.workflow is not None
                assert event.observed_at - event.late_since > POLICY.late_after


@settings(max_examples=200, deadline=None)
@given(workflows(), workflows())
def test_evaluate_never_raises_on_any_pair(first: Workflow, second: Workflow) -> None:
    start = engine.evaluate(None, first, T0, POLICY, target=TARGET)
    later = T0 + timedelta(hours=5)
    engine.evaluate(start.state, second, later, POLICY, target=TARGET)
    engine.enrichment_wanted(start.state, second)
    rules.next_deadline(start.state, later, POLICY)
