"""CceClient against the simulator over loopback: every call with every credential kind,
and the error handling the simulator's faults provoke."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from watcher.cloud.auth import AkSkAuth, Auth, IamPasswordAuth, MetadataAuth
from watcher.cloud.client import CceClient, RetryPolicy
from watcher.cloud.http import make_session
from watcher.core.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    ServerError,
    ThrottledError,
    TransportError,
    WorkflowGoneError,
)
from watcher.runtime.wiring import register_transient_secret

simulator = pytest.importorskip("watcher.simulator")

KINDS = ["aksk", "iam", "metadata"]


class Sleeps:
    """An injected sleep that records the backoff instead of waiting for it."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    async with simulator.start_simulator(
        scenarios=["seed", "cancel"], speed=1.0, autoplay=False, host="127.0.0.1", port=0
    ) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session() as opened:
        yield opened


def _user(account: Any) -> str:
    return str(getattr(account, "username", None) or account.user)


def make_auth(kind: str, sim: Any, session: aiohttp.ClientSession, **kw: Any) -> Auth:
    a = sim.account
    if kind == "aksk":
        return AkSkAuth(a.access_key, a.secret_key, project_id=a.project_id, **kw)
    if kind == "iam":
        return IamPasswordAuth(
            session,
            sim.url,
            _user(a),
            a.password,
            a.domain,
            project_id=a.project_id,
            on_secret=register_transient_secret,
            **kw,
        )
    return MetadataAuth(
        session, sim.url, project_id=a.project_id, on_secret=register_transient_secret, **kw
    )


def make_client(sim: Any, session: aiohttp.ClientSession, auth: Auth, **kw: Any) -> CceClient:
    kw.setdefault("sleep", Sleeps())
    return CceClient(session, endpoint=sim.url, auth=auth, project_id=sim.account.project_id, **kw)


def _target(sim: Any, api: str) -> dict[str, Any]:
    return next(t for t in sim.targets() if t["api"] == api)


@pytest.mark.parametrize("kind", KINDS)
async def test_every_call_with_each_credential_kind(
    kind: str, sim: Any, session: aiohttp.ClientSession
) -> None:
    client = make_client(sim, session, make_auth(kind, sim, session))
    t = _target(sim, "cce")
    cid, wid = t["cluster_id"], t["workflow_id"]

    workflow = await client.show_workflow(cid, wid, api="cce")
    assert workflow.uid == wid and workflow.cluster_id == cid and workflow.phase

    listed = await client.list_workflows(cid, api="cce")
    assert wid in [w.uid for w in listed]

    precheck_point = workflow.point("PreCheck")
    assert precheck_point is not None and precheck_point.task_id
    precheck = await client.show_precheck(cid, precheck_point.task_id, api="cce")
    assert precheck.uid == precheck_point.task_id and precheck.phase

    cluster_point = workflow.point("Cluster")
    assert cluster_point is not None and cluster_point.task_id
    task = await client.show_upgrade_task(cid, cluster_point.task_id, api="cce")
    assert task.uid == cluster_point.task_id and task.phase

    clusters = await client.list_clusters(api="cce")
    assert cid in [c.uid for c in clusters]
    cluster = await client.show_cluster(cid, api="cce")
    assert cluster.uid == cid and cluster.version
    assert sim.requests()["auth_failures"] == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_autopilot_prefix(kind: str, sim: Any, session: aiohttp.ClientSession) -> None:
    client = make_client(sim, session, make_auth(kind, sim, session))
    t = _target(sim, "autopilot")
    workflow = await client.show_workflow(t["cluster_id"], t["workflow_id"], api="autopilot")
    assert workflow.uid == t["workflow_id"]
    assert t["workflow_id"] in [
        w.uid for w in await client.list_workflows(t["cluster_id"], api="autopilot")
    ]
    assert (await client.show_cluster(t["cluster_id"], api="autopilot")).uid == t["cluster_id"]
    assert t["cluster_id"] in [c.uid for c in await client.list_clusters(api="autopilot")]


async def test_wrong_secret_key_is_auth_error_without_the_secret(
    sim: Any, session: aiohttp.ClientSession
) -> None:
    secret = "wrong-secret-key-THAT-MUST-NOT-LEAK"
    auth = AkSkAuth(sim.account.access_key, secret, project_id=sim.account.project_id)
    client = make_client(sim, session, auth)
    t = _target(sim, "cce")
    with pytest.raises(AuthError) as info:
        await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    err = info.value
    assert err.status == 401 and err.code == "APIGW.0301" and err.request_id
    for text in (str(err), repr(err), repr(auth), repr(client)):
        assert secret not in text and sim.account.secret_key not in text
        assert "SDK-HMAC-SHA256" not in text  # no Authorization header in messages
    assert sim.requests()["auth_failures"] == 1  # static keys: never retried


async def test_iam_token_renewed_before_expiry(sim: Any, session: aiohttp.ClientSession) -> None:
    clock = [datetime.now(UTC)]
    auth = make_auth("iam", sim, session, now=lambda: clock[0])
    assert isinstance(auth, IamPasswordAuth)
    client = make_client(sim, session, auth)
    t = _target(sim, "cce")
    await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    first = await auth.token()
    assert auth.logins == 1 and auth.expires_at is not None
    clock[0] = auth.expires_at - timedelta(hours=1, minutes=1)
    await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert auth.logins == 1
    clock[0] = auth.expires_at - timedelta(minutes=59)  # inside the 1 h margin
    await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert auth.logins == 2 and await auth.token() != first
    assert sim.requests()["auth_failures"] == 0


@pytest.mark.parametrize("kind", ["iam", "metadata"])
async def test_expired_credentials_refreshed_and_retried_once(
    kind: str, sim: Any, session: aiohttp.ClientSession
) -> None:
    auth = make_auth(kind, sim, session)
    statuses: list[int | None] = []
    client = make_client(sim, session, auth, on_response=lambda *a: statuses.append(a[2]))
    t = _target(sim, "cce")
    await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    sim.add_fault(kind="token_expiry")
    workflow = await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert workflow.uid == t["workflow_id"]
    assert sim.requests()["auth_failures"] == 1
    assert statuses == [200, 401, 200]  # the 401, then exactly one retry
    assert getattr(auth, "logins", getattr(auth, "fetches", None)) == 2


async def test_401_after_refresh_is_final(sim: Any, session: aiohttp.ClientSession) -> None:
    auth = make_auth("iam", sim, session)
    sleeps = Sleeps()
    statuses: list[int | None] = []
    client = make_client(
        sim, session, auth, sleep=sleeps, on_response=lambda *a: statuses.append(a[2])
    )
    t = _target(sim, "cce")
    sim.add_fault(kind="status", status=401, path_contains="/upgradeworkflows/")
    with pytest.raises(AuthError):
        await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert statuses == [401, 401]
    assert isinstance(auth, IamPasswordAuth) and auth.logins == 2
    assert sleeps.calls == []  # never a hot loop, never a backoff for 401


async def test_throttle_with_short_retry_after_is_honoured(
    sim: Any, session: aiohttp.ClientSession
) -> None:
    sleeps = Sleeps()
    client = make_client(sim, session, make_auth("aksk", sim, session), sleep=sleeps)
    t = _target(sim, "cce")
    sim.add_fault(kind="throttle", count=1, retry_after=2)
    workflow = await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert workflow.uid == t["workflow_id"] and sleeps.calls == [2.0]


async def test_throttle_with_long_retry_after_goes_to_the_scheduler(
    sim: Any, session: aiohttp.ClientSession
) -> None:
    sleeps = Sleeps()
    client = make_client(sim, session, make_auth("aksk", sim, session), sleep=sleeps)
    t = _target(sim, "cce")
    sim.add_fault(kind="throttle", count=1, retry_after=60)
    with pytest.raises(ThrottledError) as info:
        await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert info.value.retry_after == 60.0 and info.value.code == "APIGW.0308"
    assert sleeps.calls == []


async def test_5xx_retried_then_success(sim: Any, session: aiohttp.ClientSession) -> None:
    sleeps = Sleeps()
    client = make_client(
        sim, session, make_auth("aksk", sim, session), sleep=sleeps, rand=lambda: 0.5
    )
    t = _target(sim, "cce")
    sim.add_fault(kind="status", status=503, count=2)
    workflow = await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert workflow.uid == t["workflow_id"] and sleeps.calls == [0.25, 0.5]


async def test_persistent_5xx_is_server_error_after_the_attempts(
    sim: Any, session: aiohttp.ClientSession
) -> None:
    statuses: list[int | None] = []
    client = make_client(
        sim,
        session,
        make_auth("aksk", sim, session),
        retry=RetryPolicy(attempts=3),
        on_response=lambda host, route, status, code, s: statuses.append(status),
    )
    t = _target(sim, "cce")
    sim.add_fault(kind="status", status=500)
    with pytest.raises(ServerError) as info:
        await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")
    assert info.value.status == 500 and info.value.request_id
    assert statuses == [500, 500, 500]


async def test_garbage_body_is_bad_response(sim: Any, session: aiohttp.ClientSession) -> None:
    client = make_client(sim, session, make_auth("aksk", sim, session))
    t = _target(sim, "cce")
    sim.add_fault(kind="garbage", count=1)
    with pytest.raises(BadResponseError):
        await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")


@pytest.mark.parametrize(
    "timeout",
    [aiohttp.ClientTimeout(total=0.3), aiohttp.ClientTimeout(total=5, sock_read=0.3)],
    ids=["total", "sock_read"],
)
async def test_slow_answer_is_transport_error(sim: Any, timeout: aiohttp.ClientTimeout) -> None:
    async with make_session(timeout=timeout) as session:
        client = make_client(
            sim, session, make_auth("aksk", sim, session), retry=RetryPolicy(attempts=1)
        )
        t = _target(sim, "cce")
        sim.add_fault(kind="slow", delay=0.8, count=1)
        with pytest.raises(TransportError, match="show_workflow"):
            await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")


async def test_missing_workflow_is_gone(sim: Any, session: aiohttp.ClientSession) -> None:
    client = make_client(sim, session, make_auth("aksk", sim, session))
    t = _target(sim, "cce")
    with pytest.raises(WorkflowGoneError) as info:
        await client.show_workflow(t["cluster_id"], str(uuid.uuid4()), api="cce")
    assert info.value.status == 404
    with pytest.raises(NotFoundError) as other:
        await client.show_cluster(str(uuid.uuid4()), api="cce")
    assert not isinstance(other.value, WorkflowGoneError)


async def test_size_cap_against_real_answers(sim: Any, session: aiohttp.ClientSession) -> None:
    client = make_client(sim, session, make_auth("aksk", sim, session), max_body_bytes=200)
    t = _target(sim, "cce")
    with pytest.raises(BadResponseError, match="cap"):
        await client.show_workflow(t["cluster_id"], t["workflow_id"], api="cce")


async def test_a_listing_parses_into_the_show_calls_workflows_and_keeps_unchanged_objects(
    sim: Any, session: aiohttp.ClientSession
) -> None:
    """ListUpgradeWorkFlows answers with the same Workflow as ShowUpgradeWorkFlow; the same
    body gives back the very same objects for unfinished workflows, and after one item
    changed every other one keeps its object (the poller skips the diff of a workflow by
    identity). Finished ones are not kept: the watcher skips them after one look."""
    from watcher.simulator.bulk import populate

    tenant = populate(sim, clusters=1, per_cluster=5, active_fraction=1.0, active_per_cluster=2)
    [cid] = tenant.clusters
    client = make_client(sim, session, make_auth("aksk", sim, session))
    first = await client.list_workflows(cid, api="cce")
    assert len(first) == 5
    for listed in first:
        assert listed == await client.show_workflow(cid, listed.uid, api="cce")
    again = await client.list_workflows(cid, api="cce")
    assert again == first
    live = set(tenant.active)
    assert all(a is b for a, b in zip(first, again, strict=True) if a.uid in live)
    result = await sim.step(tenant.active[0])  # the upgrading ones move on, history not
    moved = {c["workflow"] for c in result["changes"]}
    assert moved and moved <= set(tenant.active)
    third = await client.list_workflows(cid, api="cce")
    before = {w.uid: w for w in first}
    assert {w.uid for w in third if w.uid in live and w is not before[w.uid]} == moved
    assert all(w != before[w.uid] for w in third if w.uid in moved)


async def test_shown_workflows_keep_their_object_round_after_round(
    sim: Any, session: aiohttp.ClientSession
) -> None:
    """Polls go round-robin over every watched workflow: each unchanged answer gives back
    the very object of the previous round (the poller then skips diff and commit), the
    changed ones a new object, and the memo keeps a digest per workflow, not its body,
    and nothing of a finished workflow.
    Its bound must exceed the number of workflows polled: below it, round-robin evicts
    every entry before its next poll (30,000 workflow targets against a bound of 20,000
    had no hit at all)."""
    from watcher.cloud.client import MEMO_ENTRIES
    from watcher.simulator.bulk import populate

    tenant = populate(sim, clusters=8, per_cluster=5, active_fraction=1.0, active_per_cluster=1)
    client = make_client(sim, session, make_auth("aksk", sim, session))
    wanted = [
        (c, w.uid) for c in tenant.clusters for w in await client.list_workflows(c, api="cce")
    ]
    assert len(wanted) == 40

    async def round_robin() -> dict[str, Any]:
        return {w: await client.show_workflow(c, w, api="cce") for c, w in wanted}

    first = await round_robin()
    live = set(tenant.active)
    assert len(live) == 8
    second = await round_robin()
    assert {w for w in first if second[w] is first[w]} == live  # finished ones: not kept
    assert {key[2] for key in client._shows} == live
    result = await sim.step(tenant.active[0])
    moved = {c["workflow"] for c in result["changes"]}
    assert moved and moved <= set(tenant.active)
    third = await round_robin()
    assert {w for w in live if third[w] is not first[w]} == moved
    kept = [v for memo in client._shows.values() for v in vars_of(memo)]
    assert not [v for v in kept if isinstance(v, bytes) and len(v) > 16]
    assert MEMO_ENTRIES > 100_000  # the largest scale benchmarked (README, issue 12)


def vars_of(obj: Any) -> list[Any]:
    return [getattr(obj, name) for name in obj.__slots__]


async def test_a_listing_leaves_out_the_workflows_the_caller_is_done_with(
    sim: Any, session: aiohttp.ClientSession
) -> None:
    """Finished workflows in ``skip`` are neither parsed nor returned (nor kept)."""
    from watcher.simulator.bulk import populate

    tenant = populate(sim, clusters=1, per_cluster=30, active_fraction=1.0, active_per_cluster=2)
    [cid] = tenant.clusters
    client = make_client(sim, session, make_auth("aksk", sim, session))
    everything = await client.list_workflows(cid, api="cce")
    done = {w.uid for w in everything} - set(tenant.active)
    assert len(done) == 28
    live = await client.list_workflows(cid, api="cce", skip=done)
    assert sorted(w.uid for w in live) == sorted(tenant.active)
    before = {w.uid: w for w in everything}
    assert all(w is before[w.uid] for w in live)  # the same items keep their objects
    assert await client.list_workflows(cid, api="cce", skip=done) is live
    # Skipping less than last time cannot reuse that answer: the items come back.
    assert len(await client.list_workflows(cid, api="cce", skip=set())) == 30
