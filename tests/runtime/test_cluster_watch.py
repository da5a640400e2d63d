"""A cluster target is ONE job with ONE listing per run (issue 12.1), driven directly.

The cloud is the recorded-answer fake of test_poller (it counts every call); the store is
the in-memory one, or a real SQLite file where a commit must fail. Request counts against
the real simulator over HTTP are in tests/e2e/test_cluster_requests.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.core.strategies import TARGET
from tests.runtime.test_poller import FixtureCloud, Recorder, new_health
from watcher.core.errors import ServerError
from watcher.core.models import Workflow
from watcher.core.outcome import PollOutcome
from watcher.core.policy import Policy, PollPolicy
from watcher.core.ports import SystemClock
from watcher.runtime.poller import ClusterWatch, WatchContext, WorkflowWatch
from watcher.runtime.registry import WatchKey
from watcher.store.memory import MemoryStore
from watcher.store.sqlite import SqliteStore

POLL = PollPolicy(active_s=10, idle_s=50, failed_s=40, discovery_s=120, min_s=5)


def workflow(uid: str, phase: str, *statuses: tuple[str, str], created: int = 1) -> Workflow:
    """A workflow with the given points (task type, status) and no time stamps, so no time
    rule brings a deadline: its cadence is its phase's alone."""
    return Workflow.from_api(
        {
            "metadata": {"uid": uid, "creationTimestamp": f"2026-01-{created:02d}T00:00:00Z"},
            "spec": {"clusterID": TARGET.cluster_id, "targetVersion": "v1.31"},
            "status": {
                "phase": phase,
                "pointStatuses": [{"taskType": t, "status": s} for t, s in statuses],
            },
        }
    )


def finished(uid: str, created: int = 1) -> Workflow:
    return workflow(
        uid, "Success", ("PreCheck", "Success"), ("Cluster", "Success"), created=created
    )


def idle(uid: str) -> Workflow:
    return workflow(uid, "Init", ("PreCheck", "Success"), ("Cluster", "Init"))


def failing(uid: str) -> Workflow:
    return workflow(uid, "Pending", ("PreCheck", "Success"), ("Cluster", "Failed"))


def running(uid: str) -> Workflow:
    return workflow(uid, "Running", ("PreCheck", "Success"), ("Cluster", "Running"))


class ListingCloud(FixtureCloud):
    """The fake, with workflows the listing leaves out although a show still finds them."""

    def __init__(self, *workflows: Workflow) -> None:
        super().__init__(*workflows)
        self.unlisted: set[str] = set()

    async def list_workflows(
        self, cluster_id: str, *, api: Any, priority: Any = None, skip: Any = frozenset()
    ) -> tuple[Workflow, ...]:
        self._call("list_workflows", priority)
        self.skipped = set(skip)
        left_out = self.unlisted | self.skipped
        return tuple(w for w in self.workflows.values() if w.uid not in left_out)

    def calls(self) -> list[str]:
        names = [name for name, _ in self.priorities]
        self.priorities.clear()
        return names


def make_ctx(store: Any, rec: Recorder) -> WatchContext:
    return WatchContext(
        store=store,
        plan=lambda events, now: [],
        policy=Policy(),
        poll=POLL,
        clock=SystemClock(),
        on_committed=rec.committed.extend,
        on_polled=lambda target, result, seconds: rec.outcomes.append(result),
        unreachable_after=2,
        max_backoff_s=400.0,
        rand=lambda: 0.999,
    )


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


def cluster_of(cloud: FixtureCloud, applied: list[tuple[str, float | None]]) -> ClusterWatch:
    return ClusterWatch(
        client=cloud,
        target=TARGET,
        health=new_health(),
        on_applied=lambda watch, delay: applied.append((watch.workflow_id, delay)),
    )


async def test_thirty_workflows_two_live_cost_one_listing_and_no_show(store: MemoryStore) -> None:
    history = [finished(f"old-{i:02d}", created=i + 1) for i in range(28)]
    cloud = ListingCloud(*history, running("run"), failing("fail"))
    applied: list[tuple[str, float | None]] = []
    watched: list[WorkflowWatch] = []
    cluster = cluster_of(cloud, applied)
    cluster.on_watch = watched.append
    ctx = make_ctx(store, Recorder())
    await cluster.poll(ctx)
    assert sorted(cluster.live) == ["fail", "run"]
    assert sorted(w.workflow_id for w in watched) == ["fail", "run"]  # history: no holder
    assert len(cluster.known) == 30
    first = cloud.calls()
    assert first.count("list_workflows") == 1 and "show_workflow" not in first
    assert first.count("show_cluster") == 1  # the cluster's name, once for both
    for _ in range(3):  # nothing changes: one listing, nothing else
        await cluster.poll(ctx)
        assert cloud.calls() == ["list_workflows"]
        assert cloud.skipped == {w.uid for w in history}  # finished: not even parsed
    assert [uid for uid, _ in applied].count("run") == 4  # the gauges follow every diff
    states = await store.load_all_states()
    assert sorted(states) == [str(WatchKey.workflow(TARGET.name, u)) for u in ("fail", "run")]


async def test_the_next_listing_follows_the_most_urgent_live_workflow(store: MemoryStore) -> None:
    cloud = ListingCloud(finished("old"))
    cluster = cluster_of(cloud, [])
    ctx = make_ctx(store, Recorder())
    assert await cluster.poll(ctx) == POLL.discovery_s  # only history: discovery pace
    cloud.workflows["idle"] = idle("idle")
    assert await cluster.poll(ctx) == POLL.idle_s
    cloud.workflows["fail"] = failing("fail")
    assert await cluster.poll(ctx) == POLL.failed_s
    cloud.workflows["run"] = running("run")
    assert await cluster.poll(ctx) == POLL.active_s
    assert cluster.next_poll_at is not None
    assert {w.next_poll_at for w in cluster.live.values()} == {cluster.next_poll_at}
    cloud.workflows["run"] = finished("run")  # the active one ended: one last look ...
    assert await cluster.poll(ctx) == POLL.failed_s
    assert "run" in cluster.live
    assert await cluster.poll(ctx) == POLL.failed_s  # ... then it is a set entry
    assert "run" not in cluster.live and "run" in cluster.known


async def test_a_finished_workflow_gets_one_last_diff_then_costs_a_set_entry(
    store: MemoryStore,
) -> None:
    cloud = ListingCloud(running("run"))
    applied: list[tuple[str, float | None]] = []
    cluster = cluster_of(cloud, applied)
    ctx = make_ctx(store, Recorder())
    await cluster.poll(ctx)
    cloud.workflows["run"] = finished("run")
    await cluster.poll(ctx)
    assert applied[-1] == ("run", POLL.idle_s)  # the final look comes on the next listing
    watch = cluster.live["run"]
    await cluster.poll(ctx)
    assert applied[-1] == ("run", None)
    assert cluster.live == {} and cluster.known == {"run"}
    assert watch.next_poll_at is None
    cloud.calls()
    assert await cluster.poll(ctx) == POLL.discovery_s
    assert cloud.calls() == ["list_workflows"]
    assert applied[-1] == ("run", None)  # not diffed again


async def test_a_vanished_workflow_is_confirmed_by_one_show(store: MemoryStore) -> None:
    cloud = ListingCloud(running("run"), running("hidden"))
    rec = Recorder()
    cluster = cluster_of(cloud, [])
    ctx = make_ctx(store, rec)
    await cluster.poll(ctx)
    cloud.calls()
    cloud.unlisted.add("hidden")  # left out of the listing, but a show still finds it
    await cluster.poll(ctx)
    assert cloud.calls() == ["list_workflows", "show_workflow"]
    assert "hidden" in cluster.live
    assert not [e for e in rec.committed if e.kind == "workflow.vanished"]
    del cloud.workflows["run"]  # gone for good: the show answers 404
    await cluster.poll(ctx)
    assert sorted(cloud.calls()) == ["list_workflows", "show_workflow", "show_workflow"]
    assert [e.kind for e in rec.committed if e.kind == "workflow.vanished"] == ["workflow.vanished"]
    assert "run" not in cluster.live and "run" in cluster.known
    assert rec.outcomes == [PollOutcome.OK] * 3


async def test_a_failed_diff_fails_the_cluster_poll_once_and_the_others_are_diffed(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "s.sqlite3", clock=SystemClock())
    try:
        cloud = ListingCloud(running("a"), running("b"), running("c"))
        rec = Recorder()
        cluster = cluster_of(cloud, [])
        ctx = make_ctx(store, rec)
        real_commit = store.commit_poll
        bad_key = str(WatchKey.workflow(TARGET.name, "b"))

        async def commit(key: str, *args: Any, **kwargs: Any) -> Any:
            if key == bad_key:
                raise sqlite3.OperationalError("database or disk is full")
            return await real_commit(key, *args, **kwargs)

        store.commit_poll = commit  # type: ignore[method-assign]  # one full disk, one key
        await cluster.poll(ctx)
        assert rec.outcomes == [PollOutcome.STORE]  # once, not once per workflow
        assert cluster.health.failures == 1
        assert cluster.last_error is not None and "disk is full" in cluster.last_error
        assert cluster.live["b"].last_error == cluster.last_error
        assert cluster.known == {"a", "c"}  # b is retried as new, also after a restart
        states = await store.load_all_states()
        assert len(states) == 2 and bad_key not in states
        await cluster.poll(ctx)  # a good listing does not reset the target's failures
        assert rec.outcomes == [PollOutcome.STORE] * 2 and cluster.health.failures == 2
        assert [e.kind for e in rec.committed if e.kind.startswith("watcher.")] == [
            "watcher.target_unreachable"  # unreachable_after=2 (make_ctx)
        ]
        store.commit_poll = real_commit  # type: ignore[method-assign]
        await cluster.poll(ctx)
        assert rec.outcomes[-1] is PollOutcome.OK and cluster.last_error is None
        assert cluster.known == {"a", "b", "c"} and cluster.live["b"].last_error is None
    finally:
        await store.close()


async def test_a_failed_listing_fails_the_cluster_poll_once_not_per_workflow(
    store: MemoryStore,
) -> None:
    cloud = ListingCloud(running("a"), running("b"), failing("c"))
    rec = Recorder()
    cluster = cluster_of(cloud, [])
    ctx = make_ctx(store, rec)
    await cluster.poll(ctx)
    cloud.calls()
    cloud.error = ServerError(503, None, "down")
    delay = await cluster.poll(ctx)
    assert cloud.calls() == ["list_workflows"]  # no show call per workflow to make up for it
    assert rec.outcomes == [PollOutcome.OK, PollOutcome.SERVER]
    assert cluster.health.failures == 1
    assert cluster.last_error is not None and "503" in cluster.last_error
    assert all(w.last_error is None for w in cluster.live.values())  # the target's, not theirs
    assert 1.0 <= delay <= ctx.max_backoff_s
    cloud.error = None
    assert await cluster.poll(ctx) == POLL.active_s
    assert rec.outcomes[-1] is PollOutcome.OK and cluster.health.failures == 0


async def test_an_upgrade_that_ran_while_the_first_listings_failed_is_news_not_history(
    store: MemoryStore,
) -> None:
    """The first good listing stays quiet about upgrades that ended before the watching
    began, not about one that began and ended while the listings failed (the cloud down
    at start, the store unable to write, a lease still loading): that one is reported."""
    cloud = ListingCloud(finished("last-year", created=1))
    cluster = cluster_of(cloud, [])
    cluster.watching_since = datetime(2026, 1, 5, tzinfo=UTC)
    rec = Recorder()
    ctx = make_ctx(store, rec)
    cloud.error = ServerError(503, None, "down")
    await cluster.poll(ctx)  # the first listing fails ...
    assert not cluster.listed_before and not rec.committed
    cloud.workflows["ran-meanwhile"] = finished("ran-meanwhile", created=6)  # ... meanwhile
    cloud.error = None
    await cluster.poll(ctx)
    assert list(cluster.live) == ["ran-meanwhile"]  # its one last look comes next listing
    assert cluster.known == {"last-year", "ran-meanwhile"}
    reported = {(e.workflow_id, e.kind) for e in rec.committed}
    assert ("ran-meanwhile", "workflow.detected") in reported
    assert not any(wid == "last-year" for wid, _ in reported)
