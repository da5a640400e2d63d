"""An identical response body skips parse and diff, yet time rules still fire on time.

Real HTTP to the simulator on loopback, a real SQLite store: the ``precheck_expires``
scenario's pre-check passes at 8 s and expires at 28 s; with a 10 s lead the warning is due
at 18 s, while the workflow's body no longer changes. Polls between the change and the
deadline reuse the last parsed workflow and call no diff; the poll after the deadline
evaluates the unchanged workflow from the stored state and commits the warning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from watcher.cloud.auth import AkSkAuth
from watcher.cloud.client import CceClient
from watcher.cloud.http import make_session
from watcher.core import engine, health
from watcher.core.events import Event, TargetRef
from watcher.core.policy import Policy, PollPolicy
from watcher.runtime.poller import TargetHealth, WatchContext, WorkflowWatch
from watcher.store.sqlite import SqliteStore

simulator = pytest.importorskip("watcher.simulator")


class SimTime:
    """The watcher's clock follows the simulator's (autoplay off: it moves only on demand)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def now(self) -> datetime:
        now: datetime = self.sim.clock.now()
        return now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "state.sqlite3")
    yield opened
    await opened.close()


async def test_identical_body_skips_the_diff_but_the_expiry_warning_still_fires(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluated: list[datetime] = []
    real_evaluate = engine.evaluate

    def counting_evaluate(*args: Any, **kwargs: Any) -> engine.Evaluation:
        evaluated.append(args[2])  # evaluate(previous, workflow, now, policy, ...)
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", counting_evaluate)
    committed: list[Event] = []
    async with (
        simulator.start_simulator(scenarios=["precheck_expires"], autoplay=False) as sim,
        make_session() as session,
    ):
        a = sim.account
        client = CceClient(
            session,
            endpoint=sim.url,
            auth=AkSkAuth(a.access_key, a.secret_key),
            project_id=a.project_id,
        )
        t = sim.targets()[0]
        target = TargetRef(
            name="dev",
            region=t["region"],
            project_id=t["project_id"],
            cluster_id=t["cluster_id"],
            api=t["api"],
        )
        watch = WorkflowWatch(
            client=client,
            target=target,
            workflow_id=t["workflow_id"],
            health=TargetHealth(target, health.TargetHealth()),
            cluster_name="demo-dev",
        )
        ctx = WatchContext(
            store=store,
            plan=lambda events, now: [],
            policy=Policy(precheck_leads=(timedelta(seconds=10),)),
            poll=PollPolicy(),
            clock=SimTime(sim),
            on_committed=committed.extend,
        )

        await sim.advance(10)  # the pre-check passed at 8 s: valid until 28 s
        await watch.poll(ctx)  # first sight
        assert len(evaluated) == 1 and watch.last_error is None
        first = await client.show_workflow(target.cluster_id, watch.workflow_id, api="cce")

        await sim.advance(5)  # 15 s: nothing changed, nothing due
        await watch.poll(ctx)
        again = await client.show_workflow(target.cluster_id, watch.workflow_id, api="cce")
        assert again is first  # the same bytes gave back the same parsed object
        assert len(evaluated) == 1  # ... and no diff ran
        assert not [e for e in committed if e.kind.startswith("precheck.")]

        await sim.advance(4)  # 19 s: the body is still identical, the 10 s warning is due
        await watch.poll(ctx)
        assert len(evaluated) == 2
        warnings = [e for e in committed if e.kind.startswith("precheck.")]
        assert [e.kind for e in warnings] == ["precheck.expiring"]
        stored = await store.load_state(watch.key)
        assert stored is not None and warnings[0].dedup_key in stored.fired

        await sim.advance(2)  # 21 s: fired once, so the next identical poll skips again
        await watch.poll(ctx)
        assert len(evaluated) == 2
