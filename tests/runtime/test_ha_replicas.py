"""Two daemons (replicas) on one PostgreSQL database and one simulator.

Each target is polled by exactly one replica; both show every workflow; when one replica
dies (its tasks hard-cancelled: no lease is handed back), the other takes its targets over
within the lease time and carries on from the stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from apprise.plugins.email.base import NotifyEmail

from tests.e2e.harness import SimFollowingClock, WebhookReceiver, base_settings
from watcher.config import settings_from_mapping
from watcher.runtime.app import App
from watcher.runtime.leases import LeaseKeeper
from watcher.simulator import Simulator, start_simulator
from watcher.store.postgres import PostgresStore

SCENARIOS = ["clean_upgrade", "cancel", "retry_success", "upgrade_paused"]
LEASE_S = 3.0  # the shortest the config allows: takeover within ~4 s


def _settings(sim: Simulator, state_dir: Path, hook: WebhookReceiver, dsn: str, name: str) -> Any:
    raw = base_settings(
        sim,
        state_dir,
        [hook.url],
        state={"backend": "postgres", "dsn": dsn, "pool_size": 3},
        ha={"lease_s": LEASE_S, "replica_id": name},
    )
    return settings_from_mapping(raw)


def _ok_polls(app: App, target: str) -> float:
    value = app.registry.get_sample_value(
        "cce_watcher_polls_total", {"target": target, "result": "ok"}
    )
    return value or 0.0


def _keeper(app: App) -> LeaseKeeper:
    assert isinstance(app.leases, LeaseKeeper)
    return app.leases


async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _crash(app: App) -> None:
    """What SIGKILL leaves behind: nothing runs any more, nothing is handed back."""
    for name in app.root_tasks.names():
        await app.root_tasks.cancel(name)
    await app.scheduler.shutdown(timeout=0)


@contextlib.asynccontextmanager
async def _replicas(tmp_path: Path, dsn: str) -> AsyncIterator[tuple[Simulator, list[App]]]:
    saved_rate = NotifyEmail.request_rate_per_sec
    hook = WebhookReceiver()
    await hook.start()
    apps: list[App] = []
    try:
        async with start_simulator(scenarios=SCENARIOS, autoplay=False) as sim:
            clock = SimFollowingClock()
            for name in ("ra", "rb"):
                app = App(_settings(sim, tmp_path / name, hook, dsn, name), clock=clock)
                apps.append(app)
                await app.start()
            yield sim, apps
    finally:
        for app in apps:
            await app.stop(grace_s=1.0)
        await hook.stop()
        NotifyEmail.request_rate_per_sec = saved_rate


async def test_each_target_is_polled_by_one_replica_and_a_dead_one_is_taken_over(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with _replicas(tmp_path, pg_dsn) as (sim, (a, b)):
        targets = sorted(t["name"] for t in sim.targets())
        ka, kb = _keeper(a), _keeper(b)

        # The first replica took everything; the second gets its fair share within rounds.
        def split() -> bool:
            return len(ka.held) == 2 and len(kb.held) == 2

        await _until(split, 15, "a fair split of the four targets")
        assert sorted([*ka.held, *kb.held]) == targets

        # Polls run on the holder only; each commit is fenced with the holder's epoch.
        base = {(app, t): _ok_polls(app, t) for app in (a, b) for t in targets}
        tail = await a.store.recent_events(limit=1)
        after_seq = tail[-1].seq if tail else 0
        feeds = contextlib.AsyncExitStack()
        subs = [await feeds.enter_async_context(app.feed.subscribe()) for app in (a, b)]

        def polled(app: App, target: str) -> float:
            return _ok_polls(app, target) - base[app, target]

        for t in sim.targets():  # every workflow moves on: every target commits a new state
            await sim.step(t["workflow_id"])
        for _ in range(2):
            for app in (a, b):
                app.poll_all_now()
            await _until(lambda: all(polled(a, t) + polled(b, t) > 0 for t in targets), 10, "polls")
        for target in targets:
            holder, other = (a, b) if target in ka.held else (b, a)
            assert polled(holder, target) > 0 and polled(other, target) == 0, target

        # Both replicas show every workflow with the state its holder committed last: the
        # other replica's view follows through LISTEN/NOTIFY.
        await _until(lambda: not a.scheduler.inflight and not b.scheduler.inflight, 10, "polls")
        deadline = time.monotonic() + 10
        while True:
            stored = await a.store.load_all_states()
            views = [(k, w.state) for app in (a, b) for k, w in app.watches.items()]
            if len(stored) == 4 and all(state == stored[k] for k, state in views):
                break
            assert time.monotonic() < deadline, "the views did not follow the other replica"
            await asyncio.sleep(0.05)
        assert len(a.workflows()) == len(b.workflows()) == 4

        # Each replica's SSE feed carries every event, whichever replica committed it.
        new = [e.seq for e in await a.store.recent_events(after_seq=after_seq, limit=1000)]
        assert new, "the step produced events"
        for sub in subs:
            seen: list[int] = []
            while len(seen) < len(new):
                event = await sub.next(timeout=5)
                assert event is not None, f"feed stopped at {seen} of {new}"
                seen.append(event.seq)
            assert seen == new
        await feeds.aclose()

        # Replica a dies. b takes its targets over within the lease time (plus one round).
        lost = sorted(ka.held)
        await _crash(a)
        died = time.monotonic()
        await _until(lambda: len(kb.held) == 4, LEASE_S * 3, "the takeover")
        takeover_s = time.monotonic() - died
        print(f"takeover {takeover_s:.2f} s")
        assert takeover_s <= LEASE_S + kb.period_s + 1.0, takeover_s
        rows = await b.store.lease_rows()  # type: ignore[attr-defined]
        assert {k: h for k, (h, _e, _live) in rows.items()} == dict.fromkeys(targets, "rb")
        assert all(rows[k][1] >= 2 for k in lost)  # a new epoch fences a's late commits

        # b reloaded a's workflows from the store and polled them at once (no 30 s wait).
        await _until(lambda: all(_ok_polls(b, t) > 0 for t in lost), 5, "b's takeover polls")
        await _until(lambda: not b.scheduler.inflight, 10, "b's takeover polls to end")
        for key, watch in b.watches.items():
            assert watch.state == await b.store.load_state(key)
        before = {t: _ok_polls(b, t) for t in lost}
        await sim.step()
        b.poll_all_now()
        await _until(lambda: all(_ok_polls(b, t) > before[t] for t in lost), 10, "b's polls")

        # /readyz says so when the lease keeper cannot reach the store, and recovers.
        def lease_reason(app: App) -> bool:
            return any(r.startswith("lease keeper cannot reach the store") for r in app.ready()[1])

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE replicas RENAME TO replicas_away")
        try:
            await _until(lambda: lease_reason(b), LEASE_S * 2, "/readyz to report the keeper")
        finally:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("ALTER TABLE replicas_away RENAME TO replicas")
        await _until(lambda: not lease_reason(b), LEASE_S * 2, "/readyz to recover")


async def test_cluster_targets_split_across_replicas_with_one_job_each(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Issue 12.1 under HA: a cluster target is one job on each replica; the replica that
    does not hold it shows its workflows as holders (no job each), and a takeover carries
    them on from the stored states."""
    saved_rate = NotifyEmail.request_rate_per_sec
    hook = WebhookReceiver()
    await hook.start()
    apps: list[App] = []
    try:
        async with start_simulator(scenarios=SCENARIOS, autoplay=False) as sim:
            clock = SimFollowingClock()
            for name in ("ra", "rb"):
                raw = base_settings(
                    sim,
                    tmp_path / name,
                    [hook.url],
                    state={"backend": "postgres", "dsn": pg_dsn, "pool_size": 3},
                    ha={"lease_s": LEASE_S, "replica_id": name},
                )
                raw["targets"] = [  # one cluster target per workflow's cluster
                    {k: t[k] for k in ("region", "project_id", "cluster_id", "api")}
                    | {"name": f"cluster-{i}", "kind": "cluster"}
                    for i, t in enumerate(raw["targets"])
                ]
                app = App(settings_from_mapping(raw), clock=clock)
                apps.append(app)
                await app.start()
            a, b = apps
            ka, kb = _keeper(a), _keeper(b)
            clusters = sorted(a.discoveries)
            assert len(clusters) == 4
            await _until(lambda: len(ka.held) == 2 and len(kb.held) == 2, 15, "a fair split")
            for t in sim.targets():
                await sim.step(t["workflow_id"])
            for _ in range(2):
                for app in (a, b):
                    app.poll_all_now()
                await _until(
                    lambda: all(_ok_polls(a, c) + _ok_polls(b, c) > 0 for c in clusters),
                    10,
                    "polls",
                )
            # Every replica shows all four workflows, each with the state its holder
            # committed, and has one job per cluster, none per workflow.
            deadline = time.monotonic() + 10
            while True:
                stored = await a.store.load_all_states()
                views = [(k, w.state) for app in (a, b) for k, w in app.watches.items()]
                same = all(state == stored[k] for k, state in views)
                if len(stored) == 4 and len(views) == 8 and same:
                    break
                assert time.monotonic() < deadline, "the views did not follow"
                await asyncio.sleep(0.05)
            for app in (a, b):
                assert sorted(app.scheduler.job_ids) == sorted(
                    app.discoveries[c].key for c in clusters
                )
            lost = sorted(ka.held)
            await _crash(a)
            await _until(lambda: len(kb.held) == 4, LEASE_S * 3, "the takeover")
            await _until(lambda: all(_ok_polls(b, t) > 0 for t in lost), 5, "takeover polls")
            await _until(lambda: not b.scheduler.inflight, 10, "takeover polls to end")
            for key, watch in b.watches.items():
                assert watch.state == await b.store.load_state(key)
            assert sorted(b.scheduler.job_ids) == sorted(b.discoveries[c].key for c in clusters)
    finally:
        for app in apps:
            await app.stop(grace_s=1.0)
        await hook.stop()
        NotifyEmail.request_rate_per_sec = saved_rate


def _workflow_series(app: App) -> set[str]:
    """Targets whose workflow gauges (phase, state, tasks) this replica exports."""
    names = {"cce_watcher_workflow_phase", "cce_watcher_workflow_state", "cce_watcher_task_status"}
    return {
        sample.labels["target"]
        for family in app.registry.collect()
        for sample in family.samples
        if sample.name in names
    }


async def test_only_the_holder_exports_a_workflows_gauges(tmp_path: Path, pg_dsn: str) -> None:
    """Prometheus sums the replicas: a workflow's gauges must come from its target's holder
    alone, and a replica that loses the lease drops them (the new holder exports them)."""
    async with _replicas(tmp_path, pg_dsn) as (sim, (a, b)):
        targets = sorted(t["name"] for t in sim.targets())
        ka, kb = _keeper(a), _keeper(b)
        await _until(lambda: len(ka.held) == 2 and len(kb.held) == 2, 15, "a fair split")
        for t in sim.targets():
            await sim.step(t["workflow_id"])

        def exported_by_holders() -> bool:
            return _workflow_series(a) == set(ka.held) and _workflow_series(b) == set(kb.held)

        for _ in range(3):  # both replicas run every job; the views follow by NOTIFY
            for app in (a, b):
                app.poll_all_now()
            await asyncio.sleep(0.5)
        await _until(exported_by_holders, 10, "each target's gauges on its holder only")
        assert sorted(_workflow_series(a) | _workflow_series(b)) == targets

        # A third party takes one of a's leases (a new epoch): a drops its gauges at the
        # next renewal; once the lease is free again a replica takes it and exports them.
        moved = sorted(ka.held)[0]
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE target_leases SET holder = 'elsewhere', epoch = epoch + 1, "
                "lease_until = now() + interval '1 hour' WHERE target = %s",
                (moved,),
            )
        await _until(lambda: moved not in ka.held, LEASE_S * 2, "a to see the lease gone")
        assert moved not in _workflow_series(a) and moved not in _workflow_series(b)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE target_leases SET lease_until = '-infinity' WHERE target = %s", (moved,)
            )
        await _until(lambda: moved in {*ka.held, *kb.held}, LEASE_S * 3, "the lease retaken")
        for app in (a, b):
            app.poll_all_now()
        await _until(exported_by_holders, 10, "the new holder's gauges")
        assert sorted(_workflow_series(a) | _workflow_series(b)) == targets


async def test_a_target_first_due_while_its_state_loads_is_polled_once_it_has_loaded(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target's lease is taken, then its state loads (``App._acquired``); a run that
    comes meanwhile is parked for the lease time, and the end of the loading must bring
    it back. It did not when that run came after the target's own state had loaded but
    while another target's was still loading: the first listing then came ``lease_s``
    late, after the upgrade it should have reported had ended (remembered as history,
    never notified: the event loss that tests/ha saw now and then).

    One replica, four clusters whose first runs are spread over two seconds, and the
    fourth one's health takes two seconds to load during the takeover: every cluster must
    be listed within seconds, not after the 30 s lease."""
    slow_target, loads = "cluster-3", {"n": 0}
    load_health = PostgresStore.load_health

    async def slow_load_health(self: PostgresStore, target: str) -> Any:
        if target == slow_target:
            loads["n"] += 1
            if loads["n"] == 2:  # the first load adds the target, the second prepares it
                await asyncio.sleep(2.0)
        return await load_health(self, target)

    monkeypatch.setattr(PostgresStore, "load_health", slow_load_health)
    hook = WebhookReceiver()
    await hook.start()
    app: App | None = None
    try:
        async with start_simulator(scenarios=SCENARIOS, autoplay=False) as sim:
            raw = base_settings(
                sim,
                tmp_path / "solo",
                [hook.url],
                state={"backend": "postgres", "dsn": pg_dsn, "pool_size": 3},
                ha={"lease_s": 30, "replica_id": "solo"},
            )
            raw["polling"] |= {"active_s": 2, "requests_per_second": 2, "burst": 20}
            raw["targets"] = [
                {k: t[k] for k in ("region", "project_id", "cluster_id", "api")}
                | {"name": f"cluster-{i}", "kind": "cluster"}
                for i, t in enumerate(raw["targets"])
            ]
            app = App(settings_from_mapping(raw), clock=SimFollowingClock())
            await app.start()
            clusters = sorted(app.discoveries)
            assert slow_target in clusters
            await _until(lambda: loads["n"] >= 2, 10, "the takeover's slow load")
            await _until(
                lambda: all(_ok_polls(app, c) > 0 for c in clusters), 10, "every cluster listed"
            )
    finally:
        if app is not None:
            await app.stop(grace_s=1.0)
        await hook.stop()
