"""bench_scale times change -> webhook against the active-interval goal only for changes the
daemon polls at active_s: a workflow it last saw with a point Queuing or Running."""

from __future__ import annotations

from tests.bench.bench_scale import WaveOrigins


def change(wid: str, status: str) -> dict[str, str]:
    return {"workflow": wid, "status": status}


def test_only_changes_of_workflows_last_seen_active_count_toward_the_goal() -> None:
    origins = WaveOrigins({"a", "b"})
    # PreCheck Running -> Success: both were seen Running, so both are timed.
    assert origins.stepped(
        [change("a", "Success"), change("b", "Success"), change("x", "Running")]
    ) == {"a": True, "b": True}
    origins.delivered("a")
    origins.delivered("b")
    # Snapshot Running: the daemon last saw them idle (pre-check done), polled at idle_s.
    assert origins.stepped([change("a", "Running"), change("b", "Running")]) == {
        "a": False,
        "b": False,
    }
    origins.delivered("a")  # b's message did not come: the daemon may not have seen it
    assert origins.stepped([change("a", "Success"), change("b", "Success")]) == {
        "a": True,
        "b": False,
    }


def test_a_queued_task_sends_nothing_and_leaves_the_next_change_unconfirmed() -> None:
    origins = WaveOrigins({"a"})
    assert origins.stepped([change("a", "Queuing")]) == {}  # task.queued is not routed
    assert origins.stepped([change("a", "Running")]) == {"a": False}
