"""HTTP surface limits: cursors that do not fit 64 bits, header timeout, connection cap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.http.conftest import ServerFactory
from watcher.http.server import CONTEXT, MAX_CURSOR, HttpServer, build_app, start_http

STREAM = "/api/v1/events/stream"
BAD_CURSORS = [
    str(2**63),
    str(2**64 + 1),
    "9" * 30,
    "9" * 5000,  # past int()'s 4300-digit limit
    "-1",
    "--5",
    "+5",
    "1_0",
    "0x10",
    "1e3",
    "\u0661\u0662",  # Arabic-Indic digits: int() takes them
    "nan",
]


@pytest.mark.parametrize("raw", BAD_CURSORS)
async def test_events_cursor_out_of_range_or_garbage_is_400(
    server: HttpServer, client: aiohttp.ClientSession, raw: str
) -> None:
    async with client.get(server.url + "/api/v1/events", params={"after": raw}) as resp:
        assert resp.status == 400
        assert "after" in (await resp.json())["error"]


@pytest.mark.parametrize("raw", BAD_CURSORS)
async def test_stream_last_event_id_out_of_range_or_garbage_is_400(
    server: HttpServer, client: aiohttp.ClientSession, raw: str
) -> None:
    headers = {"Last-Event-ID": raw.encode("utf-8").decode("latin-1")}
    async with client.get(server.url + STREAM, headers=headers) as resp:
        assert resp.status == 400
    async with client.get(server.url + STREAM, params={"last_event_id": raw}) as resp:
        assert resp.status == 400


async def test_largest_cursor_is_accepted(
    server: HttpServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(server.url + "/api/v1/events", params={"after": MAX_CURSOR}) as resp:
        assert resp.status == 200
        assert (await resp.json()) == {"events": [], "next": MAX_CURSOR}
    headers = {"Last-Event-ID": str(MAX_CURSOR)}
    async with client.get(server.url + STREAM, headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.content.readline()).startswith(b"retry:")


@contextlib.asynccontextmanager
async def limited(make_server: ServerFactory, **limits: Any) -> AsyncIterator[HttpServer]:
    """A server with the fixture's collaborators and the given start_http limits."""
    probe = await make_server()
    app = probe.runner.app
    assert app is not None
    ctx = app[CONTEXT]
    rebuilt = build_app(
        store=ctx.store,
        feed=ctx.feed,
        status=ctx.status,
        metrics_registry=ctx.registry,
        heartbeat_s=ctx.heartbeat_s,
    )
    server = await start_http(rebuilt, "127.0.0.1", 0, **limits)
    try:
        yield server
    finally:
        await server.stop()


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> float:
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), within_s)
    assert data == b""
    return time.monotonic() - started


async def test_silent_and_slowloris_clients_are_cut_after_the_header_timeout(
    make_server: ServerFactory,
) -> None:
    async with limited(make_server, header_timeout_s=0.5) as server:
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", server.port)
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", server.port)
        slow_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # keeps trickling header bytes, never finishes
            await asyncio.sleep(0.2)
            with contextlib.suppress(ConnectionError):
                slow_w.write(b"X-a: b\r\n")
        assert await _closed_by_server(silent_r, 3) < 3
        assert await _closed_by_server(slow_r, 3) < 3
        for w in (silent_w, slow_w):
            w.close()


async def test_an_sse_stream_outlives_the_header_timeout(
    make_server: ServerFactory,
) -> None:
    async with (
        limited(make_server, header_timeout_s=0.3) as server,
        aiohttp.ClientSession() as client,
        client.get(server.url + STREAM) as resp,
    ):
        await asyncio.sleep(1.0)
        assert not resp.content.at_eof()
        assert (await resp.content.readline()).startswith(b"retry:")


async def test_connections_past_the_cap_are_closed_and_the_api_answers_again(
    make_server: ServerFactory,
) -> None:
    async with limited(make_server, header_timeout_s=1.0, max_connections=5) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
        await asyncio.sleep(0.2)
        assert len(server.runner.server.connections) <= 5  # type: ignore[union-attr]
        # The idle ones time out; the API is reachable again within the header timeout.
        deadline = time.monotonic() + 5
        async with aiohttp.ClientSession() as client:
            while True:
                try:
                    async with client.get(server.url + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the API stayed unreachable"
                await asyncio.sleep(0.1)
        for _, w in idle:
            w.close()
