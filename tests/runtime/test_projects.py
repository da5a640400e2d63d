"""ProjectDiscovery against the simulator over loopback (issue 11.3): a project of 50
clusters, filters that select a subset, clusters that come and go, listings that fail.

The job's callbacks are recorded here; the app's side (derived cluster targets really
polled, removed, delivered) is tests/e2e/test_project_targets.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from watcher.cloud.auth import AkSkAuth
from watcher.cloud.client import CceClient, RetryPolicy
from watcher.cloud.http import make_session
from watcher.core import health
from watcher.core.events import TargetRef
from watcher.core.outcome import PollOutcome
from watcher.core.policy import Policy, PollPolicy
from watcher.core.ports import SystemClock
from watcher.core.projects import ClusterSelection
from watcher.runtime.poller import TargetHealth, WatchContext
from watcher.runtime.projects import ProjectDiscovery
from watcher.simulator import Simulator, start_simulator
from watcher.store.sqlite import SqliteStore

TIERS = ("production", "staging")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as running:
        for i in range(50):  # 50 clusters beside the scenario's own: web-00 .. web-49
            running.world.add_cluster(f"web-{i:02d}", labels={"tier": TIERS[i % 2], "team": "web"})
        running.world.add_cluster("pilot-00", api="autopilot", labels={"tier": "production"})
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as opened:
        yield opened


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "state.sqlite3", clock=SystemClock())
    yield opened
    await opened.close()


class Recorder:
    def __init__(self) -> None:
        self.watched: dict[str, TargetRef] = {}
        self.displays: dict[str, str | None] = {}
        self.cluster_names: dict[str, str] = {}
        self.added: list[str] = []
        self.removed: list[str] = []

    async def add(self, ref: TargetRef, display: str | None, cluster_name: str) -> None:
        assert ref.name not in self.watched
        self.watched[ref.name] = ref
        self.displays[ref.name] = display
        self.cluster_names[ref.name] = cluster_name
        self.added.append(ref.name)

    def remove(self, name: str) -> None:
        del self.watched[name]
        self.removed.append(name)


def _project(
    sim: Simulator,
    session: aiohttp.ClientSession,
    selection: ClusterSelection,
    recorder: Recorder,
    *,
    api: str = "cce",
    display: str | None = None,
) -> ProjectDiscovery:
    acc = sim.account
    ref = TargetRef("fleet", acc.region, acc.project_id, "", {"team": "platform"}, api)
    client = CceClient(
        session,
        endpoint=sim.url,
        auth=AkSkAuth(acc.access_key, acc.secret_key, project_id=acc.project_id),
        project_id=acc.project_id,
        retry=RetryPolicy(attempts=1),
    )
    return ProjectDiscovery(
        client=client,
        target=ref,
        health=TargetHealth(ref, health.TargetHealth()),
        selection=selection,
        add=recorder.add,
        remove=recorder.remove,
        display_name=display,
    )


def _ctx(store: SqliteStore, outcomes: list[PollOutcome]) -> WatchContext:
    return WatchContext(
        store=store,
        plan=lambda events, now: [],
        policy=Policy(),
        poll=PollPolicy(active_s=10, idle_s=60, failed_s=60, discovery_s=120, min_s=5),
        clock=SystemClock(),
        on_committed=lambda events: None,
        on_polled=lambda target, outcome, seconds: outcomes.append(outcome),
        unreachable_after=2,
        max_backoff_s=40.0,
        rand=lambda: 0.999,
    )


async def test_filters_select_a_subset_of_fifty_clusters(
    sim: Simulator, session: aiohttp.ClientSession, store: SqliteStore
) -> None:
    recorder = Recorder()
    selection = ClusterSelection.of(
        include=["web-1*", "web-2*"], exclude=["web-2[5-9]"], labels={"tier": "production"}
    )
    project = _project(sim, session, selection, recorder, display="Fleet")
    outcomes: list[PollOutcome] = []
    assert await project.poll(_ctx(store, outcomes)) == 120  # discovery_s
    # web-10..19 and web-20..24, even numbers only (tier production)
    expected = [f"fleet/web-{i}" for i in (10, 12, 14, 16, 18, 20, 22, 24)]
    assert recorder.added == expected
    assert project.listed == 51  # the scenario's cluster and 50 more; Autopilot is not listed
    by_name = {c.name: c for c in sim.world.clusters.values()}
    for name in expected:
        ref = recorder.watched[name]
        cluster = by_name[name.removeprefix("fleet/")]
        assert ref == TargetRef(
            name=name,
            region=sim.account.region,
            project_id=sim.account.project_id,
            cluster_id=cluster.id,
            labels={"team": "platform"},  # the target's labels, not the cluster's
            api="cce",
        )
        assert recorder.displays[name] == f"Fleet: {cluster.name}"
        assert recorder.cluster_names[name] == cluster.name  # no show call needed for it
    assert outcomes == [PollOutcome.OK]
    await project.poll(_ctx(store, outcomes))  # nothing changed: nothing added twice
    assert len(recorder.added) == len(expected) and recorder.removed == []
    assert project.view()["clusters"] == expected


async def test_the_autopilot_api_lists_its_own_clusters(
    sim: Simulator, session: aiohttp.ClientSession, store: SqliteStore
) -> None:
    recorder = Recorder()
    project = _project(sim, session, ClusterSelection.of(), recorder, api="autopilot")
    await project.poll(_ctx(store, []))
    assert recorder.added == ["fleet/pilot-00"]
    assert recorder.watched["fleet/pilot-00"].api == "autopilot"
    assert recorder.displays["fleet/pilot-00"] is None
    assert recorder.cluster_names["fleet/pilot-00"] == "pilot-00"


async def test_clusters_come_and_go_with_the_listing_and_their_labels(
    sim: Simulator, session: aiohttp.ClientSession, store: SqliteStore
) -> None:
    recorder = Recorder()
    selection = ClusterSelection.of(include=["web-0*", "new-*"], labels={"team": "web"})
    project = _project(sim, session, selection, recorder)
    ctx = _ctx(store, [])
    await project.poll(ctx)
    assert len(recorder.watched) == 10
    new = sim.world.add_cluster("new-1", labels={"team": "web"})
    other = sim.world.add_cluster("new-2", labels={"team": "db"})  # filtered out by label
    by_name = {c.name: c for c in sim.world.clusters.values()}
    sim.world.delete_cluster(by_name["web-03"].id)
    by_name["web-04"].labels["team"] = "mobile"  # relabelled: no longer selected
    by_name["web-04"].body = None
    await project.poll(ctx)
    assert recorder.removed == ["fleet/web-03", "fleet/web-04"]
    assert recorder.added[-1] == "fleet/new-1"
    assert recorder.watched["fleet/new-1"].cluster_id == new.id
    assert "fleet/new-2" not in recorder.watched and other.id
    # Deleted and created again under the same name: a new cluster, a new derived target.
    sim.world.delete_cluster(new.id)
    again = sim.world.add_cluster("new-1", labels={"team": "web"})
    await project.poll(ctx)
    assert recorder.removed[-1] == "fleet/new-1"
    assert recorder.watched["fleet/new-1"].cluster_id == again.id


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"kind": "garbage"}, PollOutcome.BAD_RESPONSE),
        ({"kind": "body", "body": '{"kind":"List"}'}, PollOutcome.BAD_RESPONSE),
        ({"kind": "status", "status": 500}, PollOutcome.SERVER),
    ],
)
async def test_a_failed_listing_drops_nothing_and_takes_the_one_failure_path(
    sim: Simulator,
    session: aiohttp.ClientSession,
    store: SqliteStore,
    fault: dict[str, object],
    kind: PollOutcome,
) -> None:
    recorder = Recorder()
    project = _project(sim, session, ClusterSelection.of(include=["web-*"]), recorder)
    outcomes: list[PollOutcome] = []
    ctx = _ctx(store, outcomes)
    await project.poll(ctx)
    assert len(recorder.watched) == 50
    sim.add_fault(path_contains="/clusters", **fault)  # type: ignore[arg-type]
    first = await project.poll(ctx)
    second = await project.poll(ctx)
    assert recorder.removed == [] and len(recorder.watched) == 50
    assert outcomes == [PollOutcome.OK, kind, kind]
    assert project.health.failures == 2 and project.last_error
    assert first < second <= 40.0  # the capped backoff, not the discovery interval
    saved = await store.load_health("fleet")  # health is the project target's own
    assert saved is not None and saved.consecutive_failures == 2
    sim.clear_faults()
    assert await project.poll(ctx) == 120
    assert outcomes[-1] is PollOutcome.OK and project.last_error is None
    assert project.health.failures == 0 and len(recorder.watched) == 50


async def test_an_add_that_fails_is_tried_again_on_the_next_listing(
    sim: Simulator, session: aiohttp.ClientSession, store: SqliteStore
) -> None:
    recorder = Recorder()
    calls: list[str] = []

    async def flaky(ref: TargetRef, display: str | None, cluster_name: str) -> None:
        calls.append(ref.name)
        if len(calls) == 2:
            raise RuntimeError("store hiccup")
        await recorder.add(ref, display, cluster_name)

    project = _project(sim, session, ClusterSelection.of(include=["web-0[0-2]"]), recorder)
    project.add = flaky
    outcomes: list[PollOutcome] = []
    await project.poll(_ctx(store, outcomes))
    assert outcomes == [PollOutcome.INTERNAL]
    assert recorder.added == ["fleet/web-00"]
    await project.poll(_ctx(store, outcomes))
    assert recorder.added == ["fleet/web-00", "fleet/web-01", "fleet/web-02"]
    assert outcomes[-1] is PollOutcome.OK


async def test_a_replica_without_the_projects_lease_still_knows_its_clusters(
    sim: Simulator, session: aiohttp.ClientSession, store: SqliteStore
) -> None:
    """HA: every derived cluster is a lease key of its own, so every replica must list the
    project to take its share of them; only the project lease's holder records health."""
    recorder = Recorder()
    project = _project(sim, session, ClusterSelection.of(include=["web-0*"]), recorder)
    outcomes: list[PollOutcome] = []
    ctx = dataclasses.replace(_ctx(store, outcomes), holds=lambda target: False)
    assert await project.poll(ctx) == 120
    assert len(recorder.added) == 10
    sim.add_fault(kind="garbage", path_contains="/clusters")
    assert await project.poll(ctx) == 120  # a failed listing: nothing dropped, not recorded
    assert len(recorder.watched) == 10 and recorder.removed == []
    assert outcomes == [] and project.health.failures == 0 and project.last_error is None
    assert await store.load_health("fleet") is None
    sim.clear_faults()
    sim.world.delete_cluster(next(c.id for c in sim.world.clusters.values() if c.name == "web-05"))
    await project.poll(ctx)
    assert recorder.removed == ["fleet/web-05"]
