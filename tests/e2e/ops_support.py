"""Helpers for end-to-end tests of the real daemon: config files, subprocesses, SSE, webhooks.

The daemon runs as ``cce-upgrade-watcher run --config <toml>`` in its own process group,
against a simulator and a webhook receiver living in the test process. Every spawned
daemon is killed in ``DaemonFactory.close()`` (call it from a fixture's teardown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from watcher.runtime.demo import demo_settings
from watcher.simulator import Simulator

CLI = Path(sys.executable).with_name("cce-upgrade-watcher")
TOKEN = "e2e-bearer-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- configuration ----------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def to_toml(data: Mapping[str, Any]) -> str:
    """A minimal TOML writer for the config shape: scalars, [tables], [[arrays of tables]]."""
    head: list[str] = []
    tail: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tail.append(f"\n[{key}]")
            tail += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for item in value:
                tail.append(f"\n[[{key}]]")
                tail += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            head.append(f"{key} = {_toml_value(value)}")
    return "\n".join(head + tail) + "\n"


def daemon_config(
    sim: Simulator,
    *,
    state_dir: Path,
    port: int,
    targets: Sequence[dict[str, Any]] | None = None,
    token: str | None = None,
    notify_urls: Sequence[str] = (),
    interval_s: float = 0.5,
) -> dict[str, Any]:
    """The daemon's configuration (TOML shape) for the simulator, fast polling, JSON logs."""
    acc = sim.account
    config = demo_settings(
        sim.url,
        list(sim.targets() if targets is None else targets),
        acc.access_key,
        acc.secret_key,
        str(state_dir),
        [],
    )
    config["polling"] = {
        "active_s": interval_s,
        "idle_s": interval_s,
        "failed_s": interval_s,
        "discovery_s": 5,
        "requests_per_second": 50,
        "burst": 50,
        "max_backoff_s": 2,
    }
    config["notify"] = {
        "urls": list(notify_urls) or ["console://"],
        "retry_base_s": 0.5,
        "retry_cap_s": 2,
    }
    http: dict[str, Any] = {"enabled": True, "listen": f"127.0.0.1:{port}"}
    if token is not None:
        http["token"] = token
    config["http"] = http
    config["logging"] = {"level": "info", "format": "json"}
    return config


# -- the daemon subprocess -------------------------------------------------------------------


@dataclass
class DaemonProcess:
    """One `cce-upgrade-watcher run` child and the files it writes."""

    config_path: Path
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def running(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def logs(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines (anything else is kept as {"raw": line})."""
        out: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                parsed = json.loads(line)
            except ValueError:
                parsed = None
            out.append(parsed if isinstance(parsed, dict) else {"raw": line})
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        raise AssertionError(f"daemon still running after {timeout} s:\n{self.log_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


class DaemonFactory:
    """Spawns daemons in ``tmp_path``; ``close()`` kills every one that still runs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.spawned: list[DaemonProcess] = []
        self._logs: list[Any] = []

    def spawn(
        self, config: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> DaemonProcess:
        n = len(self.spawned)
        config_path = self.tmp_path / f"config-{n}.toml"
        config_path.write_text(to_toml(config))
        log_path = self.tmp_path / f"daemon-{n}.log"
        log_file = log_path.open("wb")
        self._logs.append(log_file)
        child_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("WATCHER_", "NOTIFY_SOCKET", "WATCHDOG_", "HUAWEICLOUD_"))
            and k not in {"CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"}
        }
        child_env.update(env or {})
        proc = subprocess.Popen(
            [str(CLI), "run", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=self.tmp_path,
            start_new_session=True,  # its own process group: killpg never hits pytest
        )
        http = config.get("http", {})
        daemon = DaemonProcess(
            config_path=config_path,
            port=int(str(http.get("listen", ":0")).rsplit(":", 1)[1]),
            log_path=log_path,
            proc=proc,
            token=http.get("token"),
        )
        self.spawned.append(daemon)
        return daemon

    def close(self) -> None:
        for daemon in self.spawned:
            daemon.kill()
        for log_file in self._logs:
            log_file.close()


# -- waiting and HTTP ------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.1
) -> Any:
    """Retry ``check`` until it returns a truthy value (returned) or the timeout passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
        except (aiohttp.ClientError, OSError, AssertionError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last: {last!r}")
        await asyncio.sleep(interval)


async def get_json(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    async with session.get(url, headers=headers or {}) as resp:
        return resp.status, await resp.json(content_type=None)


async def wait_healthy(session: aiohttp.ClientSession, daemon: DaemonProcess) -> None:
    async def check() -> bool:
        if not daemon.running():
            raise RuntimeError(f"daemon exited early:\n{daemon.log_text()[-3000:]}")
        status, _ = await get_json(session, f"{daemon.url}/healthz")
        return status == 200

    await eventually(check, timeout=15)


async def workflows(session: aiohttp.ClientSession, daemon: DaemonProcess) -> list[dict[str, Any]]:
    status, body = await get_json(session, f"{daemon.url}/api/v1/workflows", daemon.headers())
    assert status == 200, body
    return list(body["workflows"])


async def all_events(session: aiohttp.ClientSession, daemon: DaemonProcess) -> list[dict[str, Any]]:
    status, body = await get_json(
        session, f"{daemon.url}/api/v1/events?limit=1000", daemon.headers()
    )
    assert status == 200, body
    return list(body["events"])


# -- Server-Sent Events ----------------------------------------------------------------------


@dataclass
class SseClient:
    """Reads one SSE response into ``messages`` ({"id", "event", "data"}) in the background."""

    response: aiohttp.ClientResponse
    messages: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        current: dict[str, Any] = {}
        while True:
            raw = await self.response.content.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            if not line:
                if "event" in current or "data" in current:
                    self.messages.append(current)
                current = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            current[name] = value[1:] if value.startswith(" ") else value

    def events(self) -> list[dict[str, Any]]:
        """The CloudEvents received (not hello/bye), parsed, in arrival order."""
        return [
            json.loads(m["data"])
            for m in self.messages
            if m.get("event") not in {"hello", "bye", "reconnect"} and "id" in m
        ]

    def seqs(self) -> list[int]:
        return [int(e["seq"]) for e in self.events()]

    def last_id(self) -> str | None:
        ids = [m["id"] for m in self.messages if m.get("id")]
        return ids[-1] if ids else None


@contextlib.asynccontextmanager
async def open_sse(
    session: aiohttp.ClientSession,
    daemon: DaemonProcess,
    *,
    last_event_id: str | None = None,
) -> AsyncIterator[SseClient]:
    headers = dict(daemon.headers())
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with session.get(
        f"{daemon.url}/api/v1/events/stream", headers=headers, timeout=timeout
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        client = SseClient(resp)
        client.task = asyncio.create_task(client._read())
        try:
            yield client
        finally:
            client.task.cancel()
            await asyncio.gather(client.task, return_exceptions=True)
