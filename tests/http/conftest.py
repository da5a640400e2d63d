"""Fixtures for the HTTP surface: a real SqliteStore, a feed and a server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from tests.http.fakes import StaticStatus
from watcher.http.feed import EventFeed
from watcher.http.server import HttpServer, build_app, start_http
from watcher.runtime.metrics import Metrics
from watcher.store.sqlite import SqliteStore

ServerFactory = Callable[..., Awaitable[HttpServer]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path / "state.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
def feed() -> EventFeed:
    return EventFeed(max_queue=100)


@pytest.fixture
def status() -> StaticStatus:
    return StaticStatus()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


@pytest.fixture
async def make_server(
    store: SqliteStore,
    feed: EventFeed,
    status: StaticStatus,
    registry: CollectorRegistry,
    metrics: Metrics,
) -> AsyncIterator[ServerFactory]:
    """Start a server on 127.0.0.1:0 with any build_app overrides; stopped at teardown."""
    servers: list[HttpServer] = []

    async def factory(**overrides: Any) -> HttpServer:
        kwargs: dict[str, Any] = {
            "store": store,
            "feed": feed,
            "status": status,
            "metrics_registry": registry,
            "metrics": metrics,
            "heartbeat_s": 5.0,
        }
        kwargs.update(overrides)
        server = await start_http(build_app(**kwargs), "127.0.0.1", 0)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> HttpServer:
    return await make_server()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
