"""End-to-end harness: the simulator, real notification receivers and an in-process App.

Everything is real: the simulator serves HTTP on 127.0.0.1, apprise posts to an aiohttp
webhook (``json://``) and sends mail to an aiosmtpd server (``mailto://``), the daemon keeps
its state in SQLite under ``tmp_path``. Only time is steered: the simulator runs with
autoplay off and the daemon's clock follows the simulated clock (see ``SimFollowingClock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from apprise.plugins.email.base import NotifyEmail

from watcher.config import settings_from_mapping
from watcher.core.ports import StoredEvent
from watcher.runtime.app import App
from watcher.simulator import Simulator, start_simulator

MAIL_FROM = "watcher@example.com"
MAIL_TO = "ops@example.com"
_CHAT_LINE = re.compile(r"^\d\d:\d\d UTC  (?P<message>.+)$")
_TITLE = re.compile(r"^\[[A-Z]+\] .*?: (?P<message>.+)$")
_KIND_LINE = re.compile(r"^\s+Kind:\s+(?P<kind>\S+)\s*$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimFollowingClock:
    """Wall time plus a skew that only grows, so ``now`` never falls behind the simulator.

    The tests jump the simulated clock (steps, advance); ``sync`` pulls the daemon's clock
    forward to it. Between jumps it keeps running with the wall clock, so delivery backoff
    and the store's timestamps still move on their own.
    """

    def __init__(self) -> None:
        self._skew = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._skew

    def sync(self, sim_now: datetime) -> None:
        with self._lock:
            ahead = sim_now - datetime.now(UTC)
            self._skew = max(self._skew, ahead)


@dataclass
class WebhookReceiver:
    """An aiohttp endpoint for apprise's ``json://``; can fail or hang on purpose."""

    fail_first: int = 0  # answer 500 to this many requests first
    hang_s: float = 0.0  # sleep this long before answering (while > 0)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.attempts += 1
        if self.hang_s > 0:
            await asyncio.sleep(self.hang_s)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500, text="receiver says no")
        self.bodies.append(json.loads(raw))
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class SmtpMailbox:
    """An aiosmtpd handler; answers ``451`` to the first ``refuse_first`` messages."""

    port: int
    refuse_first: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    attempts: int = 0

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from={MAIL_FROM}&to={MAIL_TO}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.refuse_first > 0:
            self.refuse_first -= 1
            return "451 Requested action aborted: try again later"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 Message accepted for delivery"


def email_kinds(msg: EmailMessage) -> list[str]:
    part = msg.get_body(preferencelist=("plain", "html"))
    text = part.get_content() if part is not None else str(msg.get_payload())
    return [m.group("kind") for line in text.splitlines() if (m := _KIND_LINE.match(line))]


def base_settings(
    sim: Simulator, state_dir: Path, urls: list[str], **overrides: Any
) -> dict[str, Any]:
    acc = sim.account
    raw: dict[str, Any] = {
        "state_dir": str(state_dir),
        "cloud": {"cce_endpoint": sim.url, "iam_endpoint": sim.url, "timeout_s": 5},
        "credentials": {"kind": "aksk", "access_key": acc.access_key, "secret_key": acc.secret_key},
        "targets": [
            {
                "name": t["name"],
                "kind": "workflow",
                "region": t["region"],
                "project_id": t["project_id"],
                "cluster_id": t["cluster_id"],
                "workflow_id": t["workflow_id"],
                "api": t["api"],
                "labels": {"env": "e2e"},
            }
            for t in sim.targets()
        ],
        "polling": {
            "active_s": 30,
            "idle_s": 30,
            "failed_s": 30,
            "discovery_s": 30,
            "requests_per_second": 100,
            "burst": 100,
            "max_backoff_s": 30,
        },
        "policy": {"precheck_leads": ["15s", "5s"], "repeat_interval": "1h", "late_after": "1h"},
        "notify": {"urls": urls, "retry_base_s": 0.2, "retry_cap_s": 0.5},
        "http": {"enabled": False},
        "logging": {"level": "warning", "format": "console"},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    return raw


@dataclass
class Harness:
    sim: Simulator
    daemon: App
    webhook: WebhookReceiver
    smtp: SmtpMailbox
    clock: SimFollowingClock

    # -- driving time ------------------------------------------------------------------

    def _sync(self) -> None:
        self.clock.sync(datetime.fromisoformat(_go_to_iso(self.sim.state()["clock"]["now"])))

    async def step(self, workflow_id: str | None = None) -> dict[str, Any]:
        result = await self.sim.step(workflow_id)
        self._sync()
        return result

    async def advance(self, seconds: float) -> dict[str, Any]:
        result = await self.sim.advance(seconds)
        self._sync()
        return result

    # -- waiting -----------------------------------------------------------------------

    async def wait_polled(self, timeout: float = 10.0) -> None:
        """Poll every job now and wait until each has run once after this call."""
        sched = self.daemon.scheduler
        deadline = time.monotonic() + timeout
        while sched.inflight:  # a poll that began before the last step: let it finish
            assert time.monotonic() < deadline, "a poll did not finish"
            await asyncio.sleep(0.01)
        jobs = len(sched.job_ids)
        before = sched.runs
        self.daemon.poll_all_now()
        while sched.runs < before + jobs or sched.inflight:
            assert time.monotonic() < deadline, "the daemon did not poll"
            await asyncio.sleep(0.01)

    async def wait_delivered(self, timeout: float = 10.0) -> None:
        """Wait until the outbox has nothing pending (every delivery sent)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.daemon.store.outbox_stats(self.clock.now())
            if stats.pending == 0 and self.daemon.dispatcher.in_flight == 0:
                return
            assert time.monotonic() < deadline, f"outbox not drained: {stats}"
            await asyncio.sleep(0.02)

    async def settle(self, timeout: float = 10.0) -> None:
        await self.wait_polled(timeout)
        await self.wait_delivered(timeout)

    # -- what arrived ------------------------------------------------------------------

    async def stored(self) -> list[StoredEvent]:
        return await self.daemon.store.recent_events(limit=1000)

    def webhook_messages(self) -> list[dict[str, Any]]:
        """apprise's JSON bodies: title, message (the chat timeline), type."""
        return list(self.webhook.bodies)

    async def webhook_events(self) -> list[list[str]]:
        """The event kinds of each webhook message, in arrival order.

        The chat body lists one line per event (``HH:MM:SS  message``); each line is matched
        to the stored event with that message (consumed in store order).
        """
        pool = [s.event for s in await self.stored()]
        out: list[list[str]] = []
        for body in self.webhook.bodies:
            kinds: list[str] = []
            # The title names the headline; when the headline is the first event of the
            # timeline, the body does not repeat it (its first line is the time/identity).
            lines = str(body["message"]).splitlines()
            title = _TITLE.match(str(body["title"]))
            texts = [m.group("message").strip() for x in lines if (m := _CHAT_LINE.match(x))]
            if title is not None and title.group("message").strip() not in texts:
                text = title.group("message").strip()
                head = next((e for e in pool if " ".join(e.message.split()) == text), None)
                assert head is not None, f"webhook title matches no stored event: {text!r}"
                pool.remove(head)
                kinds.append(head.kind)
            for line in lines:
                m = _CHAT_LINE.match(line)
                if m is None:
                    continue
                text = m.group("message").strip()
                match = next((e for e in pool if " ".join(e.message.split()) == text), None)
                assert match is not None, f"webhook line matches no stored event: {line!r}"
                pool.remove(match)
                kinds.append(match.kind)
            out.append(kinds)
        return out

    def email_events(self) -> list[list[str]]:
        return [email_kinds(m) for m in self.smtp.messages]


def _go_to_iso(text: str) -> str:
    """``2024-01-02 03:04:05.123456 +0000 UTC`` -> ISO 8601."""
    parts = text.split()
    return f"{parts[0]}T{parts[1]}{parts[2][:3]}:{parts[2][3:]}"


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    scenarios: list[str],
    *,
    webhook: WebhookReceiver | None = None,
    smtp_refuse_first: int = 0,
    json_query: str = "",
    configure: Callable[[dict[str, Any]], None] | None = None,
    stop_grace_s: float = 2.0,
) -> AsyncIterator[Harness]:
    """Simulator (autoplay off) + webhook + SMTP + a started App; all torn down after."""
    # apprise throttles its e-mail plugin to one message per 5.5 s per URL; a real SMTP
    # server is still used, only the client-side pacing is lifted for the test's duration.
    saved_rate = NotifyEmail.request_rate_per_sec
    NotifyEmail.request_rate_per_sec = 0
    hook = webhook or WebhookReceiver()
    await hook.start()
    box = SmtpMailbox(port=free_port(), refuse_first=smtp_refuse_first)
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        async with start_simulator(scenarios=scenarios, autoplay=False) as sim:
            clock = SimFollowingClock()
            raw = base_settings(sim, tmp_path / "state", [hook.url + json_query, box.url])
            if configure is not None:
                configure(raw)
            daemon = App(settings_from_mapping(raw), clock=clock)
            h = Harness(sim=sim, daemon=daemon, webhook=hook, smtp=box, clock=clock)
            h._sync()
            await daemon.start()
            try:
                yield h
            finally:
                await daemon.stop(grace_s=stop_grace_s)
    finally:
        controller.stop()
        await hook.stop()
        NotifyEmail.request_rate_per_sec = saved_rate
