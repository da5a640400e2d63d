"""`healthcheck` against a real loopback aiohttp server: 200 is healthy, anything else is not."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result

from watcher import healthcheck


@pytest.fixture
async def server(aiohttp_server: Any) -> TestServer:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def unavailable(_: web.Request) -> web.Response:
        return web.Response(status=503, text="not ready")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/healthz", ok)
    app.router.add_get("/readyz", unavailable)
    app.router.add_get("/slow", slow)
    started: TestServer = await aiohttp_server(app)
    return started


async def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the command in a thread: it blocks, and the server lives on this event loop."""
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, healthcheck.healthcheck, list(args), env=env, catch_exceptions=False
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_200_exits_0(server: TestServer) -> None:
    result = await _invoke("--url", str(server.make_url("/healthz")))
    assert result.exit_code == 0
    assert result.output.startswith("ok: ") and "answered 200" in result.output
    assert result.output.count("\n") == 1


async def test_503_exits_1(server: TestServer) -> None:
    result = await _invoke("--url", str(server.make_url("/readyz")))
    assert result.exit_code == 1
    assert result.output.strip().endswith("answered 503")


async def test_closed_port_exits_1() -> None:
    result = await _invoke("--url", f"http://127.0.0.1:{_closed_port()}/healthz", "--timeout", "2")
    assert result.exit_code == 1
    assert result.output.startswith("unhealthy: ") and result.output.count("\n") == 1


async def test_timeout_exits_1(server: TestServer) -> None:
    result = await _invoke("--url", str(server.make_url("/slow")), "--timeout", "0.2")
    assert result.exit_code == 1
    assert "timed out" in result.output


async def test_proxy_variables_are_ignored(server: TestServer) -> None:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    env = {"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""}
    result = await _invoke("--url", str(server.make_url("/healthz")), env=env)
    assert result.exit_code == 0, result.output


async def test_default_url_follows_the_listen_variable(server: TestServer) -> None:
    env = {"WATCHER_HTTP__LISTEN": f"0.0.0.0:{server.port}"}
    result = await _invoke(env=env)
    assert result.exit_code == 0, result.output
    assert f"http://127.0.0.1:{server.port}/healthz" in result.output


def test_non_http_urls_are_refused() -> None:
    result = CliRunner().invoke(healthcheck.healthcheck, ["--url", "file:///etc/passwd"])
    assert result.exit_code == 1
    assert "not an http(s) URL" in result.output


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        (None, "http://127.0.0.1:9851/healthz"),
        ("", "http://127.0.0.1:9851/healthz"),
        ("0.0.0.0:9851", "http://127.0.0.1:9851/healthz"),
        ("[::]:9000", "http://127.0.0.1:9000/healthz"),
        ("10.0.0.5:8080", "http://10.0.0.5:8080/healthz"),
        ("[fd00::1]:9851", "http://[fd00::1]:9851/healthz"),
        ("nonsense", "http://127.0.0.1:9851/healthz"),
    ],
)
def test_default_url(monkeypatch: pytest.MonkeyPatch, listen: str | None, url: str) -> None:
    monkeypatch.delenv("WATCHER_HTTP__LISTEN", raising=False)
    assert healthcheck.default_url(listen) == url


async def test_config_gives_the_address(server: TestServer, tmp_path: Any) -> None:
    """`healthcheck --config` probes the listen address of that config's daemon."""
    config = tmp_path / "config.toml"
    config.write_text(f'[http]\nlisten = "0.0.0.0:{server.port}"\n')
    result = await _invoke("--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"http://127.0.0.1:{server.port}/healthz answered 200" in result.output
    config.write_text(f'[http]\nlisten = "127.0.0.1:{_closed_port()}"\n')
    result = await _invoke("--config", str(config))
    assert result.exit_code == 1
    config.write_text("[http]\nbogus = 1\n")
    result = await _invoke("--config", str(config))
    assert result.exit_code == 2
    assert "http.bogus: unknown key" in result.output
