"""The client against small loopback servers: size caps, TLS, odd answers, hooks.

These are faults the simulator does not produce; the CCE behaviour itself is exercised
against the simulator in test_client_simulator.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.cloud.loopback import make_ca_and_cert, serve
from watcher.cloud import signer
from watcher.cloud.auth import AkSkAuth
from watcher.cloud.client import CceClient, RetryPolicy
from watcher.cloud.http import make_session
from watcher.core.errors import (
    AuthError,
    BadResponseError,
    ConfigError,
    ServerError,
    ThrottledError,
    TransportError,
)

PID = "0123456789abcdef0123456789abcdef"
CID = "11111111-2222-3333-4444-555555555555"
WF = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
AK, SK = "LOOPBACKAK0000000001", "loopback-secret-key-0123456789"
WF_PATH = f"/api/v3/projects/{PID}/clusters/{CID}/operation/upgradeworkflows/{WF}"
WORKFLOW = {"kind": "WorkFlowTask", "metadata": {"uid": WF}, "status": {"phase": "Init"}}


async def _no_sleep(_: float) -> None:
    return None


def _client(session: aiohttp.ClientSession, url: str, **kw: Any) -> CceClient:
    kw.setdefault("sleep", _no_sleep)
    return CceClient(
        session, endpoint=url, auth=AkSkAuth(AK, SK, project_id=PID), project_id=PID, **kw
    )


def _app(handler: Any, path: str = WF_PATH) -> web.Application:
    app = web.Application()
    app.router.add_get(path, handler)
    return app


async def test_signed_request_verifies_with_host_port() -> None:
    """What the client sends verifies with the signer, Host carrying the non-default port."""
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        headers = dict(request.headers)
        parsed = signer.parse_authorization(headers["Authorization"])
        assert parsed is not None
        _, names, _ = parsed
        expected = signer.authorization(
            request.method,
            request.raw_path.split("?")[0],
            list(request.query.items()),
            {k: v for k, v in headers.items() if k.lower() in names},
            await request.read(),
            AK,
            SK,
            signed=names,
        )
        seen.update(
            host=request.headers["Host"],
            names=";".join(names),
            ok=str(expected == headers["Authorization"]),
        )
        return web.json_response(WORKFLOW)

    async with serve(_app(handler)) as url, make_session() as session:
        workflow = await _client(session, url).show_workflow(CID, WF, api="cce")
    assert workflow.uid == WF
    assert seen["ok"] == "True"
    assert seen["host"] == url.removeprefix("http://")
    assert seen["names"] == "accept;content-type;host;x-project-id;x-sdk-date"


@pytest.mark.parametrize("mode", ["content-length", "chunked", "gzip-bomb"])
async def test_body_over_cap_is_bad_response(mode: str) -> None:
    cap = 64 * 1024

    async def handler(request: web.Request) -> web.StreamResponse:
        if mode == "content-length":
            return web.Response(body=b"x" * (cap + 1), content_type="application/json")
        if mode == "gzip-bomb":
            bomb = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")
            assert len(bomb) < cap
            return web.Response(
                body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b" " * (cap // 2))
        await resp.write_eof()
        return resp

    statuses: list[int | None] = []
    async with serve(_app(handler)) as url, make_session() as session:
        client = _client(
            session, url, max_body_bytes=cap, on_response=lambda h, r, s, c, t: statuses.append(s)
        )
        with pytest.raises(BadResponseError, match="cap"):
            await client.show_workflow(CID, WF, api="cce")
    assert statuses == [200]  # no retry for a bad body


@pytest.mark.parametrize(
    ("body", "match"),
    [(b"<html>hello</html>", "not JSON"), (b"[1]", "not an object"), (b'{"metadata": {}}', "uid")],
)
async def test_unexpected_body_is_bad_response(body: bytes, match: str) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with serve(_app(handler)) as url, make_session() as session:
        with pytest.raises(BadResponseError, match=match):
            await _client(session, url).show_workflow(CID, WF, api="cce")


async def test_redirect_is_not_followed() -> None:
    async def handler(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/elsewhere")

    async with serve(_app(handler)) as url, make_session() as session:
        with pytest.raises(BadResponseError, match="302"):
            await _client(session, url).show_workflow(CID, WF, api="cce")


async def test_gateway_401_is_auth_error_without_retry_for_static_keys() -> None:
    calls = 0

    async def handler(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response(
            {
                "error_code": "APIGW.0301",
                "error_msg": "verify aksk signature fail",
                "request_id": "body-rid",
            },
            status=401,
        )

    async with serve(_app(handler)) as url, make_session() as session:
        with pytest.raises(AuthError) as info:
            await _client(session, url).show_workflow(CID, WF, api="cce")
    assert calls == 1
    err = info.value
    assert (err.status, err.code, err.request_id) == (401, "APIGW.0301", "body-rid")
    assert SK not in str(err) and SK not in repr(err)


async def test_retry_after_http_date_and_hooks_per_attempt() -> None:
    calls = 0

    async def handler(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response(
                {"errorCode": "CCE.02429001"},
                status=429,
                headers={"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT", "X-Request-Id": "r1"},
            )
        if calls == 2:
            return web.json_response({"errorCode": "CCE.01500001"}, status=500)
        return web.json_response(WORKFLOW)

    class Limiter:
        hosts: list[str] = []  # noqa: RUF012 - test-local recorder

        async def acquire(self, host: str, *, priority: int = 1) -> None:
            self.hosts.append(host)

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    hooks: list[tuple[str, int | None, str | None]] = []
    limiter = Limiter()
    async with serve(_app(handler)) as url, make_session() as session:
        client = _client(
            session,
            url,
            limiter=limiter,
            sleep=sleep,
            rand=lambda: 0.5,
            on_response=lambda h, r, s, c, t: hooks.append((r, s, c)),
        )
        assert (await client.show_workflow(CID, WF, api="cce")).uid == WF
    host = url.removeprefix("http://")
    assert limiter.hosts == [host] * 3
    assert hooks == [
        ("cce.show_workflow", 429, "CCE.02429001"),
        ("cce.show_workflow", 500, "CCE.01500001"),
        ("cce.show_workflow", 200, None),
    ]
    assert sleeps == [0.0, 0.5]  # a past HTTP date means "now"; then backoff 1.0 * 0.5


async def test_long_retry_after_goes_back_to_scheduler_at_once() -> None:
    calls = 0

    async def handler(_: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({}, status=429, headers={"Retry-After": "120"})

    async with serve(_app(handler)) as url, make_session() as session:
        with pytest.raises(ThrottledError) as info:
            await _client(session, url).show_workflow(CID, WF, api="cce")
    assert calls == 1 and info.value.retry_after == 120.0


async def test_connection_refused_is_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hooks: list[int | None] = []
    async with make_session() as session:
        client = _client(
            session,
            f"http://127.0.0.1:{port}",
            retry=RetryPolicy(attempts=2),
            on_response=lambda *a: hooks.append(a[2]),
        )
        with pytest.raises(TransportError):
            await client.list_clusters(api="cce")
    assert hooks == [None, None]


async def test_broken_metrics_hook_does_not_fail_the_call() -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"items": []})

    def hook(*_: object) -> None:
        raise RuntimeError("metrics down")

    async with (
        serve(_app(handler, f"/autopilot/v3/projects/{PID}/clusters")) as url,
        make_session() as session,
    ):
        assert await _client(session, url, on_response=hook).list_clusters(api="autopilot") == ()


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x?y=1", "é"])
async def test_unsafe_ids_are_rejected_before_any_request(bad: str) -> None:
    async with make_session() as session:
        client = _client(session, "http://127.0.0.1:9")
        with pytest.raises(ValueError, match="not a valid id"):
            await client.show_workflow(bad, WF, api="cce")
        with pytest.raises(ValueError, match="api must be"):
            await client.list_clusters(api="gke")  # type: ignore[arg-type]


def test_make_session_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        make_session()


async def test_missing_ca_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA file"):
        make_session(ca_file=tmp_path / "missing.pem")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("neither the cryptography package nor the openssl CLI is available")
    return make_ca_and_cert(tmp_path_factory.mktemp("tls"))


async def test_private_ca_tls(tls_files: tuple[Path, Path, Path]) -> None:
    import ssl

    ca, cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(WORKFLOW)

    async with serve(_app(handler), server_ctx) as url:
        async with make_session() as session:  # system trust store only: rejected
            with pytest.raises(TransportError, match=r"(?i)certificate"):
                await _client(session, url, retry=RetryPolicy(attempts=1)).show_workflow(
                    CID, WF, api="cce"
                )
        async with make_session(ca_file=ca) as session:
            assert (await _client(session, url).show_workflow(CID, WF, api="cce")).uid == WF


async def test_total_timeout_is_transport_error() -> None:
    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response(WORKFLOW)

    timeout = aiohttp.ClientTimeout(total=0.2)
    async with serve(_app(handler)) as url, make_session(timeout=timeout) as session:
        with pytest.raises(TransportError, match="timed out"):
            await _client(session, url, retry=RetryPolicy(attempts=1)).show_workflow(
                CID, WF, api="cce"
            )


async def test_persistent_5xx_through_gzip_error_body() -> None:
    async def handler(_: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"error_code": "APIGW.0202", "error_msg": "down"}).encode())
        return web.Response(status=502, body=body, headers={"Content-Encoding": "gzip"})

    async with serve(_app(handler)) as url, make_session() as session:
        with pytest.raises(ServerError) as info:
            await _client(session, url).show_workflow(CID, WF, api="cce")
    assert info.value.code == "APIGW.0202" and "down" in str(info.value)


async def test_waiting_for_a_pooled_connection_is_not_a_connect_timeout() -> None:
    """A poll queued behind a busy pool (limit_per_host) waits its turn: aiohttp's
    ``connect`` timeout would count that wait and fail a healthy request as a transport
    error; the session times only the socket connect (``sock_connect``, 5 s)."""
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if not release.is_set():
            await asyncio.sleep(5.5)  # the first request holds the only connection
            release.set()
        return web.json_response(WORKFLOW)

    async with serve(_app(handler)) as url, make_session(limit_per_host=1) as session:
        client = _client(session, url, retry=RetryPolicy(attempts=1))
        first = asyncio.create_task(client.show_workflow(CID, WF, api="cce"))
        await asyncio.sleep(0.1)
        second = await client.show_workflow(CID, WF, api="cce")  # waits 5.4 s for the pool
        assert second.uid == WF and (await first).uid == WF
