"""The daemon's HTTP server: probes, metrics, workflows and events API, SSE, status page.

Why this module exists: it is the only place that speaks HTTP to people and tools. It owns
no state; it reads the store, the live EventFeed and a StatusSource, all passed in by the
runtime (the composition root), so tests drive it with real parts on loopback.

Routes (SPEC.md section 8):

- ``GET /healthz``  200 ``{"status": "ok"}`` / 503 ``{"status": "unhealthy", "reason"}``
- ``GET /readyz``   200 ``{"status": "ready"}`` / 503 ``{"status": "not ready", "reasons"}``
- ``GET /metrics``  Prometheus text of the given registry (outbox gauges refreshed first),
  rendered off the event loop
- ``GET /api/v1/workflows``  ``{"workflows": [WorkflowView...], "targets": [...]}``
  (see ``status.py``)
- ``GET /api/v1/events?after=<seq>&limit=<n>``  ``{"events": [CloudEvent...], "next": seq}``
  in seq order; without ``after`` (or ``after=0``) the latest ``limit`` events, the
  store's convention (seqs start at 1). Follow with ``after=next``.
- ``GET /api/v1/events/stream``  Server-Sent Events, one CloudEvents 1.0 JSON per event,
  ``id:`` = seq, resumable with ``Last-Event-ID`` (or ``?last_event_id=``)
- ``GET /``  the status page (self-contained HTML)
- ``/api/v1/silences`` and ``/api/v1/acks`` (when the runtime passes ``ops``): see
  ``silences.py``

An optional bearer token protects ``/api/`` only; the probes, metrics and the page stay open
so that orchestrators and Prometheus need no secret (the page asks for the token and keeps
it in the tab's sessionStorage).

Shutdown (LIBRARIES.md 5.2): an ``on_shutdown`` hook, registered before the runner is set
up, sets an ``asyncio.Event`` and closes every stream's subscription, so open SSE
responses end at once with ``event: bye`` instead of holding cleanup for
``shutdown_timeout`` twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Protocol
from urllib.parse import quote

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from watcher.core.ports import Clock, Store, StoredEvent, SystemClock
from watcher.http import limits, silences
from watcher.http.feed import EventFeed, SubscriberDroppedError, Subscription
from watcher.http.silences import OpsSource
from watcher.http.status import StatusSource

log = structlog.get_logger(__name__)

DEFAULT_HEARTBEAT_S: Final = 15.0
DEFAULT_EVENTS_LIMIT: Final = 100
MAX_EVENTS_LIMIT: Final = 1000
_REPLAY_PAGE: Final = 500
_REPLAY_FROM_EMPTY: Final = 10_000
_STORE_TIMEOUT_S: Final = 2.0
_SSE_RETRY_MS: Final = 2000
MAX_CURSOR: Final = 2**63 - 1  # SQLite's largest INTEGER: every seq fits
_COUNT: Final = re.compile(r"-?[0-9]{1,25}")  # ASCII only; longer is rejected before int()
CLOUDEVENT_TYPE_PREFIX: Final = "com.huaweicloud.cce.upgrade."
CLOUDEVENT_SOURCE_PREFIX: Final = "cce-upgrade-watcher/"


class OutboxGauges(Protocol):
    """What a scrape refreshes before answering; ``watcher.runtime.metrics.Metrics`` is one.

    Declared here because http never imports the runtime (the runtime imports http).
    """

    def set_outbox(self, pending: float, oldest_age_s: float, dead: float) -> None: ...


@dataclass(frozen=True, slots=True)
class _Context:
    """Everything the handlers read, under one typed app key."""

    store: Store
    feed: EventFeed
    status: StatusSource
    registry: CollectorRegistry
    metrics: OutboxGauges | None
    clock: Clock
    token: bytes | None
    heartbeat_s: float
    page: bytes
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    streams: set[Subscription] = field(default_factory=set)


CONTEXT = web.AppKey("watcher_http", _Context)

_PAGE_HEADERS: Final = {
    # The page is self-contained: inline script and style, same-origin fetches only.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def build_app(
    *,
    store: Store,
    feed: EventFeed,
    status: StatusSource,
    metrics_registry: CollectorRegistry,
    token: str | None = None,
    metrics: OutboxGauges | None = None,
    clock: Clock | None = None,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ops: OpsSource | None = None,
) -> web.Application:
    """Build the application; nothing listens until ``start_http``.

    ``metrics``, when given, gets its outbox gauges refreshed from the store on each scrape.
    ``heartbeat_s`` is the SSE keep-alive comment interval (short in tests).
    """
    if token is not None and not token:
        raise ValueError("the HTTP bearer token must not be empty (omit it to disable auth)")
    if heartbeat_s <= 0:
        raise ValueError("heartbeat_s must be positive")
    app = web.Application(middlewares=[_auth_middleware])
    app[CONTEXT] = _Context(
        store=store,
        feed=feed,
        status=status,
        registry=metrics_registry,
        metrics=metrics,
        clock=clock or SystemClock(),
        token=token.encode() if token is not None else None,
        heartbeat_s=heartbeat_s,
        page=resources.files("watcher.http").joinpath("static/status.html").read_bytes(),
    )
    # Must be registered before the runner's setup() freezes the app (LIBRARIES.md 5.2).
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/", _page)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/v1/workflows", _workflows)
    app.router.add_get("/api/v1/events", _events)
    app.router.add_get("/api/v1/events/stream", _stream)
    if ops is not None:
        silences.add_routes(app, ops, clock or SystemClock(), token_set=token is not None)
    return app


@dataclass
class HttpServer:
    """A started server: where it listens, and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening and end open streams (prompt: streams watch the shutdown event)."""
        await self.runner.cleanup()


async def start_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    header_timeout_s: float = limits.HEADER_TIMEOUT_S,
    max_connections: int = limits.MAX_CONNECTIONS,
) -> HttpServer:
    """Listen on host:port (0 picks a free port) in the running loop.

    A connection must send a complete request within ``header_timeout_s`` (and may idle
    that long between requests); at most ``max_connections`` are open at once (limits.py).
    """
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=2,
        handle_signals=False,
        keepalive_timeout=header_timeout_s,
    )
    await runner.setup()
    if runner.server is None:  # setup() always makes one; narrows the type
        raise RuntimeError("aiohttp runner has no server after setup()")
    limits.cap_connections(runner.server, max_connections)
    try:
        site = web.TCPSite(runner, host, port, backlog=limits.ACCEPT_BACKLOG)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound_port = int(address[1])
            break
    log.info("http.started", host=host, port=bound_port)
    return HttpServer(runner=runner, host=host, port=bound_port)


async def _on_shutdown(app: web.Application) -> None:
    ctx = app[CONTEXT]
    ctx.shutdown.set()
    for sub in list(ctx.streams):
        sub.close()


# -- auth -------------------------------------------------------------------------------


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[CONTEXT].token
    if expected is None or not request.path.startswith("/api/"):
        return await handler(request)
    presented: str | None = None
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        presented = value.strip()
    elif request.path == "/api/v1/events/stream" and "token" in request.query:
        # EventSource cannot send headers, so the stream alone accepts ?token=.
        presented = request.query["token"]
    if presented is None:
        return _unauthorized('Bearer realm="cce-upgrade-watcher"', "missing bearer token")
    if not hmac.compare_digest(presented.encode(), expected):
        return _unauthorized(
            'Bearer realm="cce-upgrade-watcher", error="invalid_token"', "invalid bearer token"
        )
    return await handler(request)


def _unauthorized(challenge: str, message: str) -> web.Response:
    return _json({"error": message}, status=401, headers={"WWW-Authenticate": challenge})


# -- probes and metrics -----------------------------------------------------------------


async def _page(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[CONTEXT].page,
        content_type="text/html",
        charset="utf-8",
        headers=_PAGE_HEADERS,
    )


async def _healthz(request: web.Request) -> web.Response:
    try:
        ok, reason = request.app[CONTEXT].status.healthy()
    except Exception as exc:  # a broken status source is itself unhealthy
        ok, reason = False, f"status check failed: {type(exc).__name__}"
    if ok:
        return _json({"status": "ok"})
    return _json({"status": "unhealthy", "reason": reason}, status=503)


async def _readyz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    reasons: list[str] = []
    if ctx.shutdown.is_set():
        reasons.append("shutting down")
    try:
        ok, status_reasons = ctx.status.ready()
    except Exception as exc:
        ok, status_reasons = False, [f"status check failed: {type(exc).__name__}"]
    if not ok:
        reasons.extend(status_reasons or ["not ready"])
    if not await _store_reachable(ctx.store):
        reasons.append("store unreachable")
    if reasons:
        return _json({"status": "not ready", "reasons": reasons}, status=503)
    return _json({"status": "ready"})


async def _store_reachable(store: Store) -> bool:
    try:
        async with asyncio.timeout(_STORE_TIMEOUT_S):
            return bool(await store.ping())
    except Exception:  # any failure to answer means "not reachable"; the reason is logged
        log.warning("http.store_ping_failed", exc_info=True)
        return False


async def _metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    metrics = ctx.metrics
    if metrics is not None:
        await _refresh_outbox(ctx, metrics)
    # Rendered in a worker thread: at thousands of series it is CPU for a while, and the
    # loop must keep polling meanwhile (prometheus-client's metrics are thread-safe).
    body = await asyncio.to_thread(generate_latest, ctx.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _refresh_outbox(ctx: _Context, metrics: OutboxGauges) -> None:
    try:
        async with asyncio.timeout(_STORE_TIMEOUT_S):
            stats = await ctx.store.outbox_stats(ctx.clock.now())
    except Exception:  # a scrape still answers with the last known values
        log.warning("http.outbox_stats_failed", exc_info=True)
        return
    metrics.set_outbox(
        pending=stats.pending, oldest_age_s=stats.oldest_pending_age_s, dead=stats.dead
    )


# -- workflows and events ---------------------------------------------------------------


async def _workflows(request: web.Request) -> web.Response:
    status = request.app[CONTEXT].status
    return _json({"workflows": status.workflows(), "targets": status.targets()})


async def _events(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    limit = _int_param(request, "limit", DEFAULT_EVENTS_LIMIT, minimum=1)
    limit = min(limit, MAX_EVENTS_LIMIT)
    # The store's convention: after_seq=0 is "no cursor", the latest ``limit`` events.
    after = _int_param(request, "after", 0, minimum=0)
    stored = await store.recent_events(after_seq=after, limit=limit)
    next_seq = stored[-1].seq if stored else after
    return _json({"events": [cloud_event(s) for s in stored], "next": next_seq})


def _int_param(request: web.Request, name: str, default: int, *, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = parse_count(raw, name)
    if value < minimum:
        raise _bad_request(f"{name} must be at least {minimum}")
    return value


def parse_count(raw: str, name: str) -> int:
    """A cursor or count from a client: plain ASCII digits that fit SQLite's INTEGER.

    ``int()`` alone would take ``" 1_0"``, ``"+5"`` and non-ASCII digits, and a value past
    2**63-1 fails in SQLite with OverflowError: a 500, or a broken SSE stream.
    """
    text = raw.strip()
    if _COUNT.fullmatch(text) is None:
        raise _bad_request(f"{name} must be an integer between 0 and {MAX_CURSOR}")
    value = int(text)
    if value > MAX_CURSOR:
        raise _bad_request(f"{name} must be an integer between 0 and {MAX_CURSOR}")
    return value


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def head_seq(store: Store) -> int:
    """The highest stored seq, 0 when the store is empty."""
    tail = await store.recent_events(after_seq=0, limit=1)
    return tail[-1].seq if tail else 0


def cloud_event(stored: StoredEvent) -> dict[str, Any]:
    """One stored event as a CloudEvents 1.0 JSON object (structured mode)."""
    event = stored.event
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": CLOUDEVENT_SOURCE_PREFIX + quote(event.target.name, safe=""),
        "type": CLOUDEVENT_TYPE_PREFIX + event.kind,
        "time": event.observed_at.isoformat(),
        "datacontenttype": "application/json",
        "seq": stored.seq,  # extension attribute: the feed cursor
        "data": event.to_dict(),
    }
    if event.workflow_id:
        out["subject"] = event.workflow_id
    return out


# -- Server-Sent Events -----------------------------------------------------------------


async def _stream(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    resume_after: int | None = None
    if last_id:
        resume_after = parse_count(last_id, "Last-Event-ID")
        if resume_after < 0:
            raise _bad_request("Last-Event-ID must not be negative")

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    shutdown = ctx.shutdown
    streams = ctx.streams
    # Subscribe BEFORE reading the backlog: events committed meanwhile are then in the
    # backlog, the subscription, or both; ``sent`` removes the duplicates.
    async with ctx.feed.subscribe() as sub:
        streams.add(sub)
        if shutdown.is_set():
            sub.close()
        try:
            await response.prepare(request)
            await response.write(f"retry: {_SSE_RETRY_MS}\n\n".encode())
            if resume_after is None:
                sent = await head_seq(ctx.store)
                # The hello's id makes a browser resume from here after any reconnect.
                await response.write(_sse(sent, "hello", json.dumps({"seq": sent})))
            else:
                sent = await _replay(response, ctx.store, resume_after, shutdown)
            log.debug("http.stream_opened", resume_after=resume_after, head=sent)
            await _live(response, sub, sent, shutdown, ctx.heartbeat_s)
        except ConnectionError:  # includes ConnectionResetError: the client went away
            log.debug("http.stream_client_gone")
        finally:
            streams.discard(sub)
    return response


async def _replay(
    response: web.StreamResponse, store: Store, after: int, shutdown: asyncio.Event
) -> int:
    sent = after
    while not shutdown.is_set():
        # after_seq=0 is the store's "tail" query, not a cursor: a client that last saw an
        # empty store gets (up to a generous bound) everything stored since.
        limit = _REPLAY_FROM_EMPTY if sent == 0 else _REPLAY_PAGE
        page = await store.recent_events(after_seq=sent, limit=limit)
        for stored in page:
            if stored.seq <= sent:
                continue
            await response.write(_sse_event(stored))
            sent = stored.seq
        if len(page) < limit:
            break
    return sent


async def _live(
    response: web.StreamResponse,
    sub: Subscription,
    sent: int,
    shutdown: asyncio.Event,
    heartbeat_s: float,
) -> None:
    while not shutdown.is_set():
        try:
            stored = await sub.next(timeout=heartbeat_s)
        except StopAsyncIteration:
            break  # server shutdown or the feed closed
        except SubscriberDroppedError:
            # Too slow to keep up: tell the client to come back with its Last-Event-ID;
            # the replay from the store then fills the gap.
            await response.write(_sse(None, "reconnect", json.dumps({"after": sent})))
            return
        if stored is None:
            await response.write(b": ping\n\n")
        elif stored.seq > sent:
            await response.write(_sse_event(stored))
            sent = stored.seq
    with contextlib.suppress(ConnectionError):
        await response.write(_sse(None, "bye", "{}"))
        await response.write_eof()


def _sse_event(stored: StoredEvent) -> bytes:
    return _sse(stored.seq, stored.event.kind, json.dumps(cloud_event(stored), default=str))


def _sse(seq: int | None, kind: str, data: str) -> bytes:
    # json.dumps never emits a raw newline, so one data: line is always enough; the
    # event name is sanitised because kinds are open strings.
    name = "".join(ch for ch in kind if ch not in "\r\n")
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {name}\ndata: {data}\n\n".encode()


def _json(
    payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(payload, default=str),
        status=status,
        content_type="application/json",
        headers=headers,
    )
