"""The poller, driven directly: one poll of the seed workflow, the one failure path both
jobs share (classification, health, metrics outcome, backoff, Retry-After), discovery, and
the request priority handed to the client as an argument.

The store is the in-memory ``MemoryStore`` (the Store contract suite holds it to the same
rules as SQLite and PostgreSQL); the cloud is a fake fed by the recorded seed workflow
(tests/fixtures).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.core.strategies import TARGET
from watcher.core import health
from watcher.core.errors import ServerError, ThrottledError, WorkflowGoneError
from watcher.core.events import Event
from watcher.core.models import Cluster, Workflow
from watcher.core.outcome import PollOutcome
from watcher.core.policy import Policy, PollPolicy
from watcher.core.ports import Priority, SystemClock
from watcher.runtime.poller import ClusterWatch, TargetHealth, WatchContext, WorkflowWatch
from watcher.runtime.registry import WatchKey
from watcher.store.memory import MemoryStore

SEED = json.loads((Path(__file__).parents[1] / "fixtures" / "seed_workflow.json").read_text())


def seed(uid: str = "wf-seed", phase: str | None = None) -> Workflow:
    raw = copy.deepcopy(SEED)
    raw["metadata"]["uid"] = uid
    if phase is not None:
        raw["status"]["phase"] = phase
    return Workflow.from_api(raw)


class FixtureCloud:
    """A CloudSource answering from recorded workflows; ``error`` makes every call raise
    (a fault the simulator could make too, but here the test needs one exact exception)."""

    def __init__(self, *workflows: Workflow) -> None:
        self.workflows = {w.uid: w for w in workflows}
        self.error: BaseException | None = None
        self.priorities: list[tuple[str, Any]] = []
        self.skipped: set[str] = set()  # what the last listing was told to leave out

    def _call(self, name: str, priority: Any) -> None:
        self.priorities.append((name, priority))
        if self.error is not None:
            raise self.error

    async def show_workflow(
        self, cluster_id: str, workflow_id: str, *, api: Any, priority: Any = None
    ) -> Workflow:
        self._call("show_workflow", priority)
        if workflow_id not in self.workflows:
            raise WorkflowGoneError(404, "CCE.01404001", "not found")
        return self.workflows[workflow_id]

    async def list_workflows(
        self, cluster_id: str, *, api: Any, priority: Any = None, skip: Any = frozenset()
    ) -> tuple[Workflow, ...]:
        self._call("list_workflows", priority)
        self.skipped = set(skip)
        return tuple(w for w in self.workflows.values() if w.uid not in skip)

    async def show_precheck(self, *args: Any, priority: Any = None, **kwargs: Any) -> Any:
        self._call("show_precheck", priority)
        raise ServerError(503, None, "enrichment is optional")

    async def show_upgrade_task(self, *args: Any, priority: Any = None, **kwargs: Any) -> Any:
        self._call("show_upgrade_task", priority)
        raise ServerError(503, None, "enrichment is optional")

    async def show_cluster(self, cluster_id: str, *, api: Any, priority: Any = None) -> Cluster:
        self._call("show_cluster", priority)
        raise ServerError(503, None, "a cluster name is cosmetic")


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[PollOutcome] = []
        self.committed: list[Event] = []


def make_ctx(store: MemoryStore, rec: Recorder) -> WatchContext:
    return WatchContext(
        store=store,
        plan=lambda events, now: [],
        policy=Policy(),
        poll=PollPolicy(active_s=10, idle_s=60, failed_s=60, discovery_s=120, min_s=5),
        clock=SystemClock(),
        on_committed=rec.committed.extend,
        on_polled=lambda target, result, seconds: rec.outcomes.append(result),
        unreachable_after=3,
        max_backoff_s=400.0,
        rand=lambda: 0.999,  # jitter at its top: the backoff is its upper bound
    )


def new_health() -> TargetHealth:
    return TargetHealth(TARGET, health.TargetHealth())


async def test_one_poll_of_the_seed_workflow_commits_state_and_events(store: MemoryStore) -> None:
    """fetch -> evaluate -> commit: the state is stored under the workflow's key."""
    rec = Recorder()
    watch = WorkflowWatch(
        client=FixtureCloud(seed()), target=TARGET, workflow_id="wf-seed", health=new_health()
    )
    delay = await watch.poll(make_ctx(store, rec))
    assert delay is not None and delay > 0
    assert rec.outcomes == [PollOutcome.OK]
    assert rec.committed, "a first sight of a Pending workflow produces events"
    states = await store.load_all_states()
    assert list(states) == [str(WatchKey.workflow(TARGET.name, "wf-seed"))]
    assert watch.state is not None and watch.state.workflow.uid == "wf-seed"
    assert watch.last_error is None


def _jobs(cloud: FixtureCloud, target_health: TargetHealth) -> dict[str, Any]:
    return {
        "workflow": WorkflowWatch(
            client=cloud, target=TARGET, workflow_id="wf-seed", health=target_health
        ),
        "discovery": ClusterWatch(client=cloud, target=TARGET, health=target_health),
    }


@pytest.mark.parametrize("job", ["workflow", "discovery"])
async def test_both_jobs_honour_retry_after(store: MemoryStore, job: str) -> None:
    """Before issue 8 only the workflow watch had this; the one failure path gives both."""
    rec = Recorder()
    cloud = FixtureCloud(seed())
    target_health = new_health()
    runner = _jobs(cloud, target_health)[job]
    cloud.error = ThrottledError(429, "APIGW.0308", "slow down", retry_after=250.0)
    delay = await runner.poll(make_ctx(store, rec))
    assert delay == pytest.approx(250.0)  # the backoff alone would be about 10 s
    assert rec.outcomes == [PollOutcome.THROTTLED]
    assert target_health.failures == 1
    assert target_health.state.last_error_kind == "throttled"
    assert runner.last_error is not None and "429" in runner.last_error


@pytest.mark.parametrize("job", ["workflow", "discovery"])
async def test_both_jobs_back_off_to_the_cap_and_recover(store: MemoryStore, job: str) -> None:
    rec = Recorder()
    cloud = FixtureCloud(seed())
    target_health = new_health()
    runner = _jobs(cloud, target_health)[job]
    ctx = make_ctx(store, rec)
    cloud.error = ServerError(503, None, "down")
    delays = [await runner.poll(ctx) for _ in range(8)]
    assert delays == sorted(delays), "the backoff never shrinks during an outage"
    assert delays[-1] == pytest.approx(ctx.max_backoff_s, rel=0.01)
    assert rec.outcomes == [PollOutcome.SERVER] * 8
    assert target_health.failures == 8
    cloud.error = None
    await runner.poll(ctx)
    assert rec.outcomes[-1] is PollOutcome.OK
    assert target_health.failures == 0
    assert runner.last_error is None


async def test_discovery_first_listing_skips_ended_workflows_then_watches_new_ones(
    store: MemoryStore,
) -> None:
    rec = Recorder()
    ctx = make_ctx(store, rec)
    cloud = FixtureCloud(seed("old", phase="Success"), seed("running"))
    cluster = ClusterWatch(client=cloud, target=TARGET, health=new_health())
    assert await cluster.poll(ctx) <= ctx.poll.discovery_s
    assert list(cluster.live) == ["running"]
    cloud.workflows["late"] = seed("late", phase="Success")  # ended between two listings
    await cluster.poll(ctx)
    assert list(cluster.live) == ["running", "late"]  # late: one last look, then it ends
    await cluster.poll(ctx)
    assert list(cluster.live) == ["running"]
    again = ClusterWatch(client=cloud, target=TARGET, health=new_health())
    await again.restore(store, await store.load_all_states())  # survives a restart
    assert again.known == {"old", "running", "late"} and again.listed_before
    assert list(again.live) == ["running"]  # the running one is watched again, no job


async def test_priority_reaches_the_client_as_an_argument(store: MemoryStore) -> None:
    """Active workflows ask the request budget with ACTIVE, idle ones with IDLE; a cluster's
    one listing asks like its most urgent workflow."""
    rec = Recorder()
    ctx = make_ctx(store, rec)
    cloud = FixtureCloud(seed())
    watch = WorkflowWatch(client=cloud, target=TARGET, workflow_id="wf-seed", health=new_health())
    await watch.poll(ctx)  # first sight: no state yet, so not active
    assert cloud.priorities[0] == ("show_workflow", Priority.IDLE)
    cloud.priorities.clear()
    watch.is_active = lambda: True  # type: ignore[method-assign]
    await watch.poll(ctx)
    assert {p for _, p in cloud.priorities} == {Priority.ACTIVE}
    cloud.priorities.clear()
    cluster = ClusterWatch(client=cloud, target=TARGET, health=new_health())
    await cluster.poll(ctx)
    assert cloud.priorities[0] == ("list_workflows", Priority.IDLE)
    cloud.priorities.clear()
    cluster.live["wf-seed"].is_active = lambda: True  # type: ignore[method-assign]
    await cluster.poll(ctx)
    assert cloud.priorities == [("list_workflows", Priority.ACTIVE)]
