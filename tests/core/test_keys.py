"""Dedup keys: every builder's exact shape, escaping, and parse as its inverse."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.strategies import at, pt, wf
from watcher.core import events, keys
from watcher.core.state import Track, WatchState

EXPIRY = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (keys.detected("wf-1"), "wf-1:detected"),
        (keys.vanished("wf-1"), "wf-1:vanished"),
        (keys.phase("wf-1", 3, "Pending"), "wf-1:phase:3:Pending"),
        (keys.phase("wf-1", 1, None), "wf-1:phase:1:-"),
        (keys.nth(keys.reminder_prefix("wf-1", 2), 4), "wf-1:reminder:2:4"),
        (keys.task_base("wf-1", "Cluster", 2, "t-9"), "wf-1:task:Cluster:a2:t-9"),
        (keys.task_base("wf-1", "Rollback#2", 1, None), "wf-1:task:Rollback#2:a1:-"),
        (keys.task_status("b", "Running"), "b:Running"),
        (keys.retried("b"), "b:retried"),
        (keys.paused("b", 2), "b:paused:2"),
        (keys.nth(keys.stalled_prefix("wf-1", "Cluster", 3), 2), "wf-1:task:Cluster:a3:stalled:2"),
        (
            keys.precheck_expiring("b", EXPIRY, timedelta(minutes=15)),
            "b:expiring:20260102T030405.600000Z:15m",
        ),
        (
            keys.precheck_expiring("b", EXPIRY, timedelta(seconds=20)),
            "b:expiring:20260102T030405.600000Z:20s",
        ),
        (keys.precheck_expired("b", EXPIRY), "b:expired:20260102T030405.600000Z"),
        (keys.target("prod", "c-1"), "watcher:prod@c-1"),
        (
            keys.target_outage("prod", "c:1", "unreachable", EXPIRY),
            "watcher:prod@c%3A1:unreachable:20260102T030405.600000Z",
        ),
        (keys.store_health("failed", EXPIRY), "watcher:store:failed:20260102T030405.600000Z"),
    ],
)
def test_builders_have_the_documented_shape(key: str, expected: str) -> None:
    assert key == expected


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a:b", "a%3Ab"),
        ("50%", "50%25"),
        ("%3A", "%253A"),  # an escaped-looking value stays distinct from ":"
        ("::%%", "%3A%3A%25%25"),
        ("", ""),
    ],
)
def test_escaping_round_trips(raw: str, escaped: str) -> None:
    assert keys.esc(raw) == escaped
    assert keys.unesc(escaped) == raw


def test_a_colon_in_a_cloud_value_cannot_forge_another_key() -> None:
    forged = keys.task_base("wf:1", "Cluster", 1, "t:Running")
    assert forged == "wf%3A1:task:Cluster:a1:t%3ARunning"
    assert keys.parse(keys.task_status(forged, "Failed")) == (
        "wf:1", "task", "Cluster", "a1", "t:Running", "Failed",
    )  # fmt: skip
    assert keys.target("a:b", "c%d") == "watcher:a%3Ab@c%25d"


@given(st.text(), st.text(), st.integers(1, 99), st.text(), st.text())
def test_parse_is_the_inverse_of_the_builders(
    uid: str, slot: str, attempt: int, task_id: str, status: str
) -> None:
    key = keys.task_status(keys.task_base(uid, slot, attempt, task_id or None), status)
    assert keys.parse(key) == (uid, "task", slot, f"a{attempt}", task_id or "-", status)


def test_prune_reads_the_keys_the_builders_make() -> None:
    flow = wf("Pending", pt("Cluster", "Running", "t1"), uid="u:1")
    state = WatchState(flow, at(0), tracks={"Cluster": Track(attempt=2)}, phase_seq=3)
    old_attempt = keys.task_status(keys.task_base("u:1", "Cluster", 1, "t1"), "Running")
    current = keys.task_status(keys.task_base("u:1", "Cluster", 2, "t1"), "Running")
    stalls = [keys.nth(keys.stalled_prefix("u:1", "Cluster", 2), k) for k in (1, 2, 3)]
    reminders = [keys.nth(keys.reminder_prefix("u:1", seq), 1) for seq in (2, 3)]
    other = keys.detected("another")
    unknown = f"{keys.esc('u:1')}:something:odd"
    kept = keys.prune([old_attempt, current, *stalls, *reminders, other, unknown], state)
    assert kept == {current, stalls[-1], reminders[-1], unknown}


def test_highest_repeat_per_prefix() -> None:
    prefix = keys.stalled_prefix("u", "Cluster", 1)
    fired = [keys.nth(prefix, 1), keys.nth(prefix, 4), "u:detected", f"{prefix}x"]
    assert keys.max_k(fired, prefix) == 4
    assert keys.k_index(fired)[prefix] == 4
    assert keys.max_k([], prefix) == 0


@given(st.text())
def test_event_id_is_the_uuid5_of_the_dedup_key(dedup_key: str) -> None:
    # Stored event ids must never change: the fast path is the RFC 4122 name-based UUID.
    expected = str(uuid.uuid5(events._EVENT_NAMESPACE, dedup_key))
    assert events.event_id(dedup_key) == expected
