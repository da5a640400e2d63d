"""``/api/v1/silences`` and ``/api/v1/acks`` input checks over real HTTP (loopback server,
real SQLite store, the daemon's real cache). The happy paths against a running daemon are
in tests/e2e/test_silences_acks.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.http.conftest import ServerFactory
from watcher.core.ports import SystemClock
from watcher.runtime.ops import OpsState
from watcher.store.sqlite import SqliteStore

TOKEN = "silences-api-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = {"target": "prod-*", "creator": "eve", "comment": "why"}


@pytest.fixture
async def base(make_server: ServerFactory, store: SqliteStore) -> str:
    ops = OpsState(store, SystemClock())
    await ops.refresh()
    server = await make_server(token=TOKEN, ops=ops)
    return f"{server.url}/api/v1"


async def post(client: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else None
    kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
    async with client.post(url, headers=AUTH, **kwargs) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "request body must be a JSON object"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b"x" * 20000, "request body larger than 16384 bytes"),
        ({"target": "*", "comment": "c"}, "creator is required"),
        ({"creator": "e", "comment": "c"}, "give at least one matcher"),
        ({**GOOD, "for": "soon"}, "for: expected a duration"),
        ({**GOOD, "for": "-5m"}, "for: expected a duration"),
        ({**GOOD, "until": "2030-01-01T10:00"}, "until needs a UTC offset"),
        ({**GOOD, "until": "yesterday"}, "until must be an ISO 8601 time"),
        ({**GOOD, "until": "2000-01-01T00:00:00Z"}, "until must be after the start"),
        ({**GOOD, "until": "2999-01-01T00:00:00Z", "for": "1h"}, "either until or for"),
        ({**GOOD, "labels": ["env"]}, "labels are given as key=value"),
        ({**GOOD, "labels": {"env": 1}}, "labels must map strings to strings"),
        ({**GOOD, "kinds": "task.*,workflow.failed", "comment": "x" * 501}, "comment is longer"),
    ],
)
async def test_bad_silences_are_refused_with_the_field_named(
    base: str, client: aiohttp.ClientSession, body: Any, error: str
) -> None:
    status, answer = await post(client, f"{base}/silences", body)
    assert status == 400
    assert error in answer["error"]


async def test_a_planned_silence_is_listed_inactive(
    base: str, client: aiohttp.ClientSession
) -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    body = {**GOOD, "starts_at": start.isoformat(), "for": "30m", "labels": {"env": "prod"}}
    status, answer = await post(client, f"{base}/silences", body)
    assert status == 201
    created = answer["silence"]
    assert created["active"] is False and created["labels"] == {"env": "prod"}
    assert datetime.fromisoformat(created["until"]) == start.replace(
        microsecond=start.microsecond
    ) + timedelta(minutes=30)
    async with client.get(f"{base}/silences") as resp:
        assert resp.status == 401  # reading needs the token too, like all of /api/
    async with client.delete(f"{base}/silences/abc", headers=AUTH) as resp:
        assert resp.status == 400


async def test_ack_of_an_unknown_workflow_and_without_a_name(
    base: str, client: aiohttp.ClientSession
) -> None:
    status, answer = await post(client, f"{base}/acks", {"by": "x"})
    assert status == 400 and "workflow is required" in answer["error"]
    status, answer = await post(client, f"{base}/acks", {"workflow": "wf-9"})
    assert status == 400 and "no watched workflow wf-9" in answer["error"]
