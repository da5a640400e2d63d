"""``/api/v1/silences`` and ``/api/v1/acks``: silences and acknowledgements over HTTP.

Why this module exists: operators mute and acknowledge without editing the config or
reloading; the daemon's cache (``watcher.runtime.ops.OpsState``) applies a write at once.
The HTTP layer must not import the runtime, so it sees that cache as ``OpsSource``.

Routes (JSON in, JSON out; times ISO 8601 with offset):

- ``GET /api/v1/silences``  ``{"silences": [Silence + "active", "source"]}`` config ones
  first (``id`` ``config:N``, ``source`` ``config``), then stored ones (expired ones too)
- ``POST /api/v1/silences``  fields of ``watcher.opsinput.silence_from``; 201 ``{"silence"}``
- ``DELETE /api/v1/silences/{id}``  expire it now; 404 if unknown, 409 for a config one
- ``GET /api/v1/acks``  ``{"acks": [...]}`` in force
- ``POST /api/v1/acks``  ``{"workflow", "by", "note", "for" | "until"}``; 201 ``{"ack"}``
- ``DELETE /api/v1/acks/{workflow}``  withdraw it; 404 if none in force

Writes need the bearer token when one is configured (the server's middleware checks every
``/api/`` request); without a token only loopback clients may write, so an open port
never lets the network mute alerts.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Protocol

from aiohttp import web

from watcher.core.acks import Acknowledgement
from watcher.core.ports import Clock
from watcher.core.silences import Silence
from watcher.opsinput import InputError, ack_from, resolve_workflow, silence_from

MAX_BODY = 16 * 1024


class OpsSource(Protocol):
    """What the routes need of the daemon's silence and acknowledgement cache."""

    async def list_silences(self) -> list[Silence]: ...

    async def add_silence(self, silence: Silence) -> Silence: ...

    async def expire_silence(self, silence_id: int) -> Silence | None: ...

    def workflow_acks(self) -> dict[str, Acknowledgement]: ...

    async def acknowledge(self, ack: Acknowledgement) -> None: ...

    async def unacknowledge(self, workflow_key: str) -> bool: ...

    async def workflow_keys(self) -> list[str]: ...


OPS = web.AppKey("watcher_ops", OpsSource)
OPS_CLOCK = web.AppKey("watcher_ops_clock", Clock)
OPS_OPEN = web.AppKey("watcher_ops_open", bool)  # True when no token is configured


def add_routes(app: web.Application, ops: OpsSource, clock: Clock, *, token_set: bool) -> None:
    app[OPS] = ops
    app[OPS_CLOCK] = clock
    app[OPS_OPEN] = not token_set
    app.router.add_get("/api/v1/silences", _list_silences)
    app.router.add_post("/api/v1/silences", _add_silence)
    app.router.add_delete("/api/v1/silences/{id}", _expire_silence)
    app.router.add_get("/api/v1/acks", _list_acks)
    app.router.add_post("/api/v1/acks", _add_ack)
    app.router.add_delete("/api/v1/acks/{workflow:.+}", _remove_ack)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _writer_refused(request: web.Request) -> web.Response | None:
    """Without a token, only loopback clients may write (the token case is the middleware's)."""
    if not request.app[OPS_OPEN]:
        return None
    try:
        loopback = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return _error(
        403,
        "writes need a bearer token: set http.token (WATCHER_HTTP__TOKEN) on the daemon, "
        "or write from the watcher's host",
    )


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise InputError(f"request body larger than {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise InputError(f"request body larger than {MAX_BODY} bytes")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise InputError("request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise InputError("request body must be a JSON object")
    return data


def silence_view(silence: Silence, now_active: bool) -> dict[str, Any]:
    source = "config" if (silence.id or "").startswith("config:") else "store"
    return {**silence.to_json(), "active": now_active, "source": source}


async def _list_silences(request: web.Request) -> web.Response:
    now = request.app[OPS_CLOCK].now()
    silences = await request.app[OPS].list_silences()
    return _json({"silences": [silence_view(s, s.active(now)) for s in silences]})


async def _add_silence(request: web.Request) -> web.Response:
    if (refused := _writer_refused(request)) is not None:
        return refused
    now = request.app[OPS_CLOCK].now()
    try:
        silence = silence_from(await _body(request), now)
    except InputError as exc:
        return _error(400, str(exc))
    stored = await request.app[OPS].add_silence(silence)
    return _json({"silence": silence_view(stored, stored.active(now))}, 201)


async def _expire_silence(request: web.Request) -> web.Response:
    if (refused := _writer_refused(request)) is not None:
        return refused
    given = request.match_info["id"]
    if given.startswith("config:"):
        return _error(409, f"silence {given} comes from the config file; remove it there")
    if not given.isdigit():
        return _error(400, "silence id must be a number (see GET /api/v1/silences)")
    expired = await request.app[OPS].expire_silence(int(given))
    if expired is None:
        return _error(404, f"no silence {given}")
    return _json({"silence": silence_view(expired, False)})


async def _list_acks(request: web.Request) -> web.Response:
    acks = request.app[OPS].workflow_acks()
    return _json({"acks": [a.to_json() for a in acks.values()]})


async def _add_ack(request: web.Request) -> web.Response:
    if (refused := _writer_refused(request)) is not None:
        return refused
    ops = request.app[OPS]
    now = request.app[OPS_CLOCK].now()
    try:
        data = await _body(request)
        workflow = data.get("workflow")
        if not isinstance(workflow, str) or not workflow:
            raise InputError("workflow is required (a workflow id or TARGET/WORKFLOW_ID)")
        ack = ack_from(data, resolve_workflow(await ops.workflow_keys(), workflow), now)
    except InputError as exc:
        return _error(400, str(exc))
    await ops.acknowledge(ack)
    return _json({"ack": ack.to_json()}, 201)


async def _remove_ack(request: web.Request) -> web.Response:
    if (refused := _writer_refused(request)) is not None:
        return refused
    ops = request.app[OPS]
    try:
        key = resolve_workflow(await ops.workflow_keys(), request.match_info["workflow"])
    except InputError as exc:
        return _error(404, str(exc))
    if not await ops.unacknowledge(key):
        return _error(404, f"workflow {key} has no acknowledgement in force")
    return _json({"ended": key})
