"""Issue 7 item 1 at unit level: whatever a poll raises is a failed poll, logged once per
run, counted by kind, recorded in health (in memory when the store fails), backed off."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.core.strategies import TARGET
from watcher.core import health
from watcher.core.errors import ThrottledError, TransportError
from watcher.core.events import Event
from watcher.core.models import Workflow
from watcher.core.policy import Policy, PollPolicy
from watcher.core.ports import SystemClock
from watcher.runtime.poller import (
    ClusterWatch,
    TargetHealth,
    WatchContext,
    WorkflowWatch,
    classify,
    describe_error,
)
from watcher.store.sqlite import SqliteStore


class RaisingCloud:
    """A CloudSource that raises what the test wants (the fault cannot be made otherwise:
    these are the errors the real client must never produce, but a bug might)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def show_workflow(
        self, cluster_id: str, workflow_id: str, *, api: Any, priority: Any = None
    ) -> Workflow:
        assert self.error is not None
        raise self.error

    async def list_workflows(
        self, cluster_id: str, *, api: Any, priority: Any = None, skip: Any = frozenset()
    ) -> tuple[Workflow, ...]:
        if self.error is not None:
            raise self.error
        return ()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "s.sqlite3", clock=SystemClock())
    yield s
    await s.close()


def _ctx(store: SqliteStore, polled: list[str], committed: list[Event]) -> WatchContext:
    return WatchContext(
        store=store,
        plan=lambda events, now: [],
        policy=Policy(),
        poll=PollPolicy(active_s=10, idle_s=60, failed_s=60, discovery_s=120, min_s=5),
        clock=SystemClock(),
        on_committed=committed.extend,
        on_polled=lambda target, result, seconds: polled.append(result),
        unreachable_after=2,
        max_backoff_s=40.0,
        rand=lambda: 0.999,
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RecursionError("maximum recursion depth exceeded"), "internal"),
        (OverflowError("date value out of range"), "internal"),
        (sqlite3.OperationalError("database or disk is full"), "store"),
        (sqlite3.DatabaseError("database disk image is malformed"), "store"),
        (TransportError("cce.show_workflow: timed out"), "transport"),
    ],
)
async def test_any_exception_is_a_failed_poll(
    store: SqliteStore, error: BaseException, kind: str
) -> None:
    polled: list[str] = []
    committed: list[Event] = []
    ctx = _ctx(store, polled, committed)
    cloud = RaisingCloud()
    cloud.error = error
    target_health = TargetHealth(TARGET, health.TargetHealth())
    watch = WorkflowWatch(client=cloud, target=TARGET, workflow_id="wf-1", health=target_health)
    with capture_logs() as logs:
        delays = [await watch.poll(ctx) for _ in range(3)]
    assert classify(error) == kind
    assert polled == [kind] * 3
    assert watch.last_error == describe_error(error)
    assert all(d is not None and 1.0 <= d <= 40.0 for d in delays)
    assert target_health.failures == 3
    assert [e.kind for e in committed] == ["watcher.target_unreachable"]
    warnings = [r for r in logs if r["event"] == "poll.failed" and r["log_level"] == "warning"]
    assert len(warnings) == 1  # once per failure run, not every poll
    assert (warnings[0]["exc_info"] is not None) == (kind == "internal")
    # the same watch shows up in the API with its error even though it never polled well
    view = watch.view(SystemClock().now())
    assert view["last_error"] == watch.last_error and view["points"] == []


async def test_discovery_failure_and_recovery_are_logged_once(store: SqliteStore) -> None:
    polled: list[str] = []
    committed: list[Event] = []
    ctx = _ctx(store, polled, committed)
    cloud = RaisingCloud()
    cloud.error = OverflowError("boom")
    target_health = TargetHealth(TARGET, health.TargetHealth())
    discovery = ClusterWatch(client=cloud, target=TARGET, health=target_health)
    with capture_logs() as logs:
        for _ in range(3):
            delay = await discovery.poll(ctx)
            assert delay is not None and delay <= 40.0
        assert discovery.last_error == "internal error: OverflowError: boom"
        cloud.error = None
        await discovery.poll(ctx)
        await discovery.poll(ctx)
    assert polled == ["internal"] * 3 + ["ok"] * 2
    assert discovery.last_error is None
    events = [r["event"] for r in logs if r["event"].startswith("discovery.")]
    assert events.count("discovery.failed") == 3  # one warning, then debug lines
    assert [r["log_level"] for r in logs if r["event"] == "discovery.failed"] == [
        "warning",
        "debug",
        "debug",
    ]
    assert events.count("discovery.recovered") == 1
    assert [e.kind for e in committed] == [
        "watcher.target_unreachable",
        "watcher.target_recovered",
    ]


async def test_health_stays_in_memory_when_the_store_fails(store: SqliteStore) -> None:
    polled: list[str] = []
    committed: list[Event] = []
    ctx = _ctx(store, polled, committed)
    target_health = TargetHealth(TARGET, health.TargetHealth())
    failing = sqlite3.OperationalError("database or disk is full")
    original_save = store.save_health

    async def full_disk(*args: Any, **kwargs: Any) -> None:
        raise failing

    store.save_health = full_disk  # type: ignore[method-assign]  # a full disk on demand
    with capture_logs() as logs:
        for _ in range(3):
            await target_health.record(ctx, failing)  # must not raise
    assert target_health.failures == 3
    assert target_health.unsaved_error == "state store: OperationalError: database or disk is full"
    assert target_health.view()["unsaved_error"] == target_health.unsaved_error
    assert sum(r["event"] == "health.unsaved" for r in logs) == 1
    assert committed == []  # the unreachable alert waits in memory
    store.save_health = original_save  # type: ignore[method-assign]
    await target_health.record(ctx, None)
    assert target_health.unsaved_error is None
    assert [e.kind for e in committed] == [
        "watcher.target_unreachable",
        "watcher.target_recovered",
    ]
    saved = await store.load_health(TARGET.name)
    assert saved is not None and saved.consecutive_failures == 0


async def test_throttled_retry_after_is_capped(store: SqliteStore) -> None:
    polled: list[str] = []
    ctx = _ctx(store, polled, [])
    cloud = RaisingCloud()
    cloud.error = ThrottledError(429, None, "slow down", None, retry_after=1e300)
    watch = WorkflowWatch(
        client=cloud,
        target=TARGET,
        workflow_id="wf-1",
        health=TargetHealth(TARGET, health.TargetHealth()),
    )
    delay = await watch.poll(ctx)
    assert delay == 40.0
    assert polled == ["throttled"]
