"""Target health: one alert per outage, one recovery, keys unique per outage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.core.strategies import TARGET
from watcher.core import health
from watcher.core.events import Severity
from watcher.core.health import TargetHealth

T = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def polls(outcomes: list[str], threshold: int = 5) -> list[tuple[list[str], TargetHealth]]:
    """Feed "ok" or an error kind per minute; return the event kinds and state after each."""
    state = TargetHealth()
    out = []
    for i, outcome in enumerate(outcomes):
        now = T + timedelta(minutes=i)
        if outcome == "ok":
            events, state = health.record_success(state, now, target=TARGET)
        else:
            events, state = health.record_failure(state, now, outcome, threshold, target=TARGET)
        out.append(([e.kind for e in events], state))
    return out


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["transport"] * 4 + ["ok"], [[]] * 5),
        (
            ["transport"] * 5 + ["server", "ok", "ok"],
            [[]] * 4 + [["watcher.target_unreachable"], [], ["watcher.target_recovered"], []],
        ),
        (
            ["auth", "auth", "auth", "auth", "auth", "auth", "ok"],
            [["watcher.auth_failed"]] + [[]] * 5 + [["watcher.target_recovered"]],
        ),
        (
            ["auth", "transport", "transport", "transport", "throttled", "ok"],
            [
                ["watcher.auth_failed"],
                [],
                [],
                [],
                ["watcher.target_unreachable"],
                ["watcher.target_recovered"],
            ],
        ),
        (
            ["bad_response", "server", "ok", "throttled", "transport"],
            [[], [], [], [], []],
        ),
        (["mystery"] * 5, [[]] * 4 + [["watcher.target_unreachable"]]),
    ],
    ids=[
        "below_threshold",
        "unreachable_once_then_recovered",
        "auth_once_per_outage",
        "auth_then_transport",
        "run_resets_on_success",
        "unknown_kind_counts",
    ],
)
def test_health_table(outcomes: list[str], expected: list[list[str]]) -> None:
    assert [kinds for kinds, _ in polls(outcomes)] == expected


def test_each_outage_has_its_own_keys_and_one_alert() -> None:
    state = TargetHealth()
    keys: list[str] = []
    for outage in range(2):
        base = T + timedelta(hours=outage)
        for i in range(7):
            events, state = health.record_failure(
                state, base + timedelta(minutes=i), "transport", 3, target=TARGET
            )
            keys += [e.dedup_key for e in events]
        events, state = health.record_success(state, base + timedelta(minutes=30), target=TARGET)
        keys += [e.dedup_key for e in events]
    assert keys == [
        "watcher:prod@c-1:unreachable:20240301T080000.000000Z",
        "watcher:prod@c-1:recovered:20240301T080000.000000Z",
        "watcher:prod@c-1:unreachable:20240301T090000.000000Z",
        "watcher:prod@c-1:recovered:20240301T090000.000000Z",
    ]


def test_event_contents() -> None:
    state = TargetHealth()
    for i in range(5):
        events, state = health.record_failure(
            state, T + timedelta(minutes=i), "server", 5, target=TARGET
        )
    (down,) = events
    assert down.severity == Severity.FAILURE and down.target == TARGET
    assert down.message == (
        "Target prod unreachable: 5 failed polls in a row since 2024-03-01 08:00 UTC "
        "(last: server error)"
    )
    assert state.unreachable_since == T and state.consecutive_failures == 5
    (up,) = health.record_success(state, T + timedelta(minutes=12), target=TARGET)[0]
    assert up.severity == Severity.SUCCESS
    assert up.message == "Target prod answers again after 12m (5 failed polls)"
    assert up.details["outage_started_at"] == T.isoformat()


def test_auth_failed_event() -> None:
    (event,), state = health.record_failure(TargetHealth(), T, "auth", 5, target=TARGET)
    assert event.kind == "watcher.auth_failed" and event.severity == Severity.FAILURE
    assert event.dedup_key == "watcher:prod@c-1:auth_failed:20240301T080000.000000Z"
    assert state.auth_failed_since == T and state.last_error_kind == "auth"


@pytest.mark.parametrize("outcomes", [[], ["transport"], ["auth"] * 2, ["server"] * 6])
def test_json_round_trip(outcomes: list[str]) -> None:
    state = polls(outcomes)[-1][1] if outcomes else TargetHealth()
    assert TargetHealth.from_json(json.loads(json.dumps(state.to_json()))) == state
