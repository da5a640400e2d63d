"""Limits that keep slow or idle HTTP clients from starving the daemon.

Why this module exists: aiohttp (3.14) has no header read timeout and no connection cap.
Its only timer on a fresh connection is ``keepalive_timeout`` (default 3630 s), which runs
from the moment a connection is accepted until a complete request has been read; a client
that never finishes its headers (slowloris) or sends nothing at all holds a socket, and a
file descriptor, for an hour. Every socket the daemon cannot open later (a webhook, the
cloud API, the SQLite journal) shares the same descriptor table, so 1,000 idle clients
would silence the notifications. Two limits fix that:

* ``HEADER_TIMEOUT_S`` becomes the keep-alive timeout: a connection that has not sent a
  complete request within it, or stays idle that long between requests, is closed. A
  request being handled (an SSE stream) is never cut by it.
* ``cap_connections``: past ``MAX_CONNECTIONS`` open connections a new one is closed as
  soon as it is accepted, so the descriptors this server can hold stay bounded (a flood
  overshoots by at most a few accept batches of ``ACCEPT_BACKLOG`` for an instant).
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger(__name__)

HEADER_TIMEOUT_S: Final = 10.0
MAX_CONNECTIONS: Final = 256
# asyncio accepts up to `backlog` sockets per wake-up before any of them reaches
# connection_made, so a flood overshoots the cap by about this much for a moment.
ACCEPT_BACKLOG: Final = 32


def cap_connections(server: web.Server, limit: int) -> None:
    """Close any connection accepted while ``limit`` others are open."""
    if limit < 1:
        raise ValueError("the connection limit must be at least 1")
    accept = server.connection_made
    refused = 0

    def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
        nonlocal refused
        accept(handler, transport)
        if len(server.connections) > limit:
            refused += 1
            if refused == 1 or refused % 100 == 0:  # a flood must not flood the log
                log.warning("http.connection_refused", limit=limit, refused_total=refused)
            handler.force_close()

    # aiohttp calls the manager's connection_made for every accepted socket (web_protocol).
    server.connection_made = connection_made  # type: ignore[method-assign]
