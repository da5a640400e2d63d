"""ListClusters (project targets, issue 11.3): the client's parsing of odd and malformed
answers on a loopback server, and both APIs' prefixes against the simulator, whose
clusters carry names and labels and can be created and deleted at run time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.cloud.loopback import serve
from watcher.cloud.auth import AkSkAuth
from watcher.cloud.client import CceClient
from watcher.cloud.http import make_session
from watcher.core.errors import BadResponseError
from watcher.core.ports import Priority
from watcher.simulator import Simulator, start_simulator

PID = "0123456789abcdef0123456789abcdef"
AK, SK = "LOOPBACKAK0000000001", "loopback-secret-key-0123456789"
UID = "11111111-2222-3333-4444-555555555555"


async def _no_sleep(_: float) -> None:
    return None


def _cluster(uid: str = UID, name: str = "prod-a", **metadata: Any) -> dict[str, Any]:
    return {
        "kind": "Cluster",
        "metadata": {"uid": uid, "name": name, **metadata},
        "spec": {"version": "v1.28.3-r0", "category": "CCE"},
        "status": {"phase": "Available"},
    }


async def _list(body: bytes, api: str = "cce") -> Any:
    prefix = {"cce": "/api/v3", "autopilot": "/autopilot/v3"}[api]
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(f"{prefix}/projects/{PID}/clusters", handler)
    async with serve(app) as url, make_session() as session:
        client = CceClient(
            session,
            endpoint=url,
            auth=AkSkAuth(AK, SK, project_id=PID),
            project_id=PID,
            sleep=_no_sleep,
        )
        result = await client.list_clusters(api=api, priority=Priority.IDLE)  # type: ignore[arg-type]
    assert seen == [f"{prefix}/projects/{PID}/clusters"]
    return result


@pytest.mark.parametrize("api", ["cce", "autopilot"])
async def test_clusters_are_parsed_with_names_aliases_and_labels(api: str) -> None:
    body = {
        "kind": "List",
        "apiVersion": "v3",
        "items": [
            _cluster(labels={"tier": "production", "team": "web"}, alias="Prod A"),
            _cluster("22222222-2222-3333-4444-555555555555", "prod-b"),
        ],
    }
    first, second = await _list(json.dumps(body).encode(), api)
    assert (first.uid, first.name, first.alias, first.display_name) == (
        UID,
        "prod-a",
        "Prod A",
        "Prod A",
    )
    assert first.labels == {"tier": "production", "team": "web"}
    assert (second.name, second.labels, second.phase) == ("prod-b", {}, "Available")


async def test_odd_items_and_labels_are_skipped_not_fatal() -> None:
    body = {
        "items": [
            "not an object",
            {"metadata": {"name": "no-uid"}},
            _cluster("../etc", "path-trick"),
            _cluster(labels={"ok": "yes", "count": 3, "nested": {"a": "b"}}),
            _cluster("33333333-2222-3333-4444-555555555555", "odd-labels", labels=["x"]),
        ]
    }
    clusters = await _list(json.dumps(body).encode())
    assert [c.name for c in clusters] == ["prod-a", "odd-labels"]
    assert clusters[0].labels == {"ok": "yes"}  # a non-string value is dropped, not guessed
    assert clusters[1].labels == {}


async def test_an_empty_project_lists_no_cluster() -> None:
    assert await _list(b'{"kind":"List","apiVersion":"v3","items":[]}') == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>gateway</html>", "body is not JSON"),
        (b'["a list"]', "body is JSON but not an object"),
        (b'{"kind":"List"}', "unexpected body (cluster list body has no items list)"),
        (b'{"items":{"uid":"x"}}', "unexpected body (cluster list body has no items list)"),
        (b'{"items":null}', "unexpected body (cluster list body has no items list)"),
    ],
)
async def test_a_malformed_listing_is_a_bad_response(body: bytes, message: str) -> None:
    with pytest.raises(BadResponseError, match="list_clusters") as info:
        await _list(body)
    assert message in str(info.value)


# -- against the simulator ---------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as running:
        yield running


def _sim_client(sim: Simulator, session: aiohttp.ClientSession) -> CceClient:
    acc = sim.account
    return CceClient(
        session,
        endpoint=sim.url,
        auth=AkSkAuth(acc.access_key, acc.secret_key, project_id=acc.project_id),
        project_id=acc.project_id,
    )


async def test_the_simulator_lists_clusters_created_and_deleted_through_its_control_api(
    sim: Simulator,
) -> None:
    async with make_session() as session:
        client = _sim_client(sim, session)
        before = {c.name for c in await client.list_clusters(api="cce")}
        made = await session.post(
            f"{sim.url}/_sim/clusters",
            json={
                "name": "web-prod",
                "labels": {"tier": "production"},
                "workflows": [{"scenario": "clean_upgrade", "finished": True}],
            },
        )
        assert made.status == 201
        created = await made.json()
        pilot = await session.post(
            f"{sim.url}/_sim/clusters", json={"name": "pilot-1", "api": "autopilot"}
        )
        assert pilot.status == 201
        listed = {c.name: c for c in await client.list_clusters(api="cce")}
        assert set(listed) == before | {"web-prod"}
        web_prod = listed["web-prod"]
        assert (web_prod.uid, web_prod.labels) == (
            created["cluster"]["id"],
            {"tier": "production"},
        )
        (history,) = created["targets"]
        workflows = await client.list_workflows(web_prod.uid, api="cce")
        assert [(w.uid, w.phase) for w in workflows] == [(history["workflow_id"], "Success")]
        assert [c.name for c in await client.list_clusters(api="autopilot")] == ["pilot-1"]

        gone = await session.delete(f"{sim.url}/_sim/clusters/{web_prod.uid}")
        assert gone.status == 200
        assert {c.name for c in await client.list_clusters(api="cce")} == before
        again = await session.delete(f"{sim.url}/_sim/clusters/{web_prod.uid}")
        assert again.status == 404


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 400, "name"),
        ({"name": "x", "api": "gke"}, 400, "api must be cce or autopilot"),
        ({"name": "x", "labels": {"a": 1}}, 400, "labels must be an object of strings"),
        ({"name": "x", "workflows": [{"scenario": "no_such"}]}, 404, "no_such"),
        ({"name": "x", "workflows": "clean_upgrade"}, 400, "workflows must be a list"),
    ],
)
async def test_the_control_api_refuses_a_bad_cluster(
    sim: Simulator, body: dict[str, Any], status: int, error: str
) -> None:
    async with make_session() as session:
        reply = await session.post(f"{sim.url}/_sim/clusters", json=body)
        assert reply.status == status
        assert error in (await reply.json())["error"]
        assert "x" not in {c.name for c in sim.world.clusters.values()}
