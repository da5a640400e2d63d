"""Real local receivers for the notify tests: an aiohttp webhook and an aiosmtpd server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from watcher.core.events import Event, Severity, TargetRef

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def make_target(name: str = "prod-cluster", **labels: str) -> TargetRef:
    return TargetRef(
        name=name,
        region="ap-southeast-1",
        project_id="0123456789abcdef0123456789abcdef",
        cluster_id=f"{name}-id",
        labels=labels or {"env": "prod", "team": "sre"},
    )


def make_event(
    key: str = "e1",
    kind: str = "task.failed",
    severity: Severity = Severity.FAILURE,
    *,
    target: TargetRef | None = None,
    message: str = "Cluster upgrade task Failed",
    **kwargs: Any,
) -> Event:
    defaults: dict[str, Any] = {
        "workflow_id": "wf-1",
        "cluster_name": (target or make_target()).name,
        "from_version": "v1.28",
        "to_version": "v1.29",
        "task_type": "Cluster",
        "started_at": NOW - timedelta(minutes=12),
        "ended_at": NOW - timedelta(minutes=1),
    }
    defaults.update(kwargs)
    return Event(
        dedup_key=key,
        kind=kind,
        severity=severity,
        target=target or make_target(),
        observed_at=NOW,
        message=message,
        **defaults,
    )


@dataclass
class Receiver:
    """A webhook receiver: records requests, answers with ``status`` after ``delay``."""

    status: int = 200
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(
            status=self.status, text="receiver says no" if self.status >= 400 else "ok"
        )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    rec.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    yield rec
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mailbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
