"""The store-health state machine: one failed and one recovered alert per outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watcher.core import selfhealth
from watcher.core.events import Event, Kind, Severity

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AFTER = timedelta(seconds=30)


def _run(checks: list[tuple[int, str | None]]) -> list[list[str]]:
    state = selfhealth.StoreHealth()
    out: list[list[str]] = []
    for second, problem in checks:
        events, state = selfhealth.observe(
            state, T0 + timedelta(seconds=second), problem, recover_after=AFTER
        )
        out.append([e.kind for e in events])
    return out


def test_one_outage_gives_one_failed_and_one_recovered_alert() -> None:
    got = _run([(0, None), (5, "full"), (10, "full"), (15, None), (50, None), (55, None)])
    assert got == [[], ["watcher.store_failed"], [], [], ["watcher.store_recovered"], []]


def test_a_store_that_fails_again_before_recovery_is_one_outage() -> None:
    # Good, bad, good, bad: the disk freed a page and filled again; no second page.
    got = _run([(0, "full"), (5, None), (20, "full"), (40, None), (60, None), (75, None)])
    assert got == [["watcher.store_failed"], [], [], [], [], ["watcher.store_recovered"]]


def test_events_carry_reason_severity_and_stable_keys() -> None:
    events, state = selfhealth.observe(
        selfhealth.StoreHealth(), T0, "disk is full", recover_after=AFTER
    )
    (failed,) = events
    assert failed.kind == Kind.STORE_FAILED and failed.severity is Severity.FAILURE
    assert "disk is full" in failed.message and failed.details["reason"] == "disk is full"
    assert state.failing and state.reason == "disk is full"
    assert Event.from_dict(failed.to_dict()) == failed
    named, _ = selfhealth.observe(
        selfhealth.StoreHealth(), T0, "disk is full", recover_after=AFTER, host="vm-7"
    )
    assert named[0].message.startswith("The watcher on vm-7 cannot write its state store")
    assert named[0].dedup_key == failed.dedup_key
    recovered = selfhealth.store_recovered(T0, T0 + timedelta(minutes=3))
    assert recovered.severity is Severity.SUCCESS and "3 min" in recovered.message
    assert recovered.dedup_key != failed.dedup_key
