"""The watcher watches itself (issue 7, items 6 and 7), end to end on loopback.

Real parts only: the simulator, a real webhook receiver (apprise ``json://``), a real HTTP
receiver for the heartbeat, real SQLite files, a real full disk (a 1 MB tmpfs, when the test
may mount one), and the CLI as a subprocess for exit codes and messages.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.harness import WebhookReceiver, free_port, running
from tests.e2e.ops_support import (
    DaemonFactory,
    daemon_config,
    eventually,
    get_json,
    to_toml,
    wait_healthy,
)
from tests.faults.disk import fill, mount_tmpfs, umount
from watcher.config import settings_from_mapping
from watcher.config.masking import render_masked
from watcher.runtime import watchdog as watchdog_module
from watcher.runtime.app import STORE_FILE
from watcher.simulator import start_simulator
from watcher.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(90)

CLI = Path(sys.executable).with_name("cce-upgrade-watcher")


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def fast_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check the store 5x a second and declare recovery after 1 s (production: 5 s, 30 s)."""
    monkeypatch.setattr(watchdog_module, "SELF_CHECK_S", 0.2)
    monkeypatch.setattr(watchdog_module, "STORE_RECOVER_AFTER", timedelta(seconds=1))


def messages(hook: WebhookReceiver, needle: str) -> list[str]:
    """The webhook messages (title + body) that contain ``needle``."""
    texts = [f"{b.get('title', '')}\n{b.get('message', '')}" for b in hook.bodies]
    return [t for t in texts if needle in t]


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    async def wrapped() -> Any:
        return check()

    return await eventually(wrapped, timeout=timeout, interval=0.05)


async def probe(port: int, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        return await get_json(session, f"http://127.0.0.1:{port}{path}")


def with_http(port: int, state_dir: Path | None = None) -> Callable[[dict[str, Any]], None]:
    def configure(raw: dict[str, Any]) -> None:
        raw["http"] = {"enabled": True, "listen": f"127.0.0.1:{port}"}
        if state_dir is not None:
            raw["state_dir"] = str(state_dir)

    return configure


# -- item 6: self-alerts, readiness, liveness, heartbeat -----------------------------------------


@pytest.mark.usefixtures("fast_checks")
async def test_a_full_disk_pages_directly_then_is_recorded_once_the_disk_has_room(
    tmp_path: Path, small_disk: Path
) -> None:
    port = free_port()
    async with running(
        tmp_path, ["clean_upgrade"], configure=with_http(port, small_disk / "state")
    ) as h:
        await h.settle()
        assert (await probe(port, "/readyz"))[0] == 200
        filler = fill(small_disk)
        # The outbox lives on the full disk: the alert must bypass it.
        await until(lambda: messages(h.webhook, "cannot write its state store"))
        status, body = await probe(port, "/readyz")
        assert status == 503
        assert any("store cannot commit" in r and "disk is full" in r for r in body["reasons"])
        assert (await probe(port, "/healthz"))[0] == 200  # alive, only not ready
        await h.step()  # a poll while the disk is full: its commit fails, no second page
        await asyncio.sleep(1.0)
        assert len(messages(h.webhook, "cannot write its state store")) == 1

        filler.unlink()
        await until(lambda: messages(h.webhook, "can write its state store again"))
        await until(lambda: h.daemon.store_health.failing is False)
        assert (await probe(port, "/readyz"))[0] == 200
        kinds = [s.event.kind for s in await h.stored()]
        # Both are now in the store (and in `events`), the failure before the recovery.
        assert kinds.count("watcher.store_failed") == 1
        assert kinds.count("watcher.store_recovered") == 1
        assert kinds.index("watcher.store_failed") < kinds.index("watcher.store_recovered")
        assert len(messages(h.webhook, "cannot write its state store")) == 1
        assert len(messages(h.webhook, "can write its state store again")) == 1


@pytest.mark.usefixtures("fast_checks")
@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_a_state_file_deleted_or_replaced_while_running_is_alerted(
    tmp_path: Path, how: str
) -> None:
    port = free_port()
    async with running(tmp_path, ["clean_upgrade"], configure=with_http(port)) as h:
        await h.settle()
        path = h.daemon.store.path
        if how == "deleted":
            path.unlink()
        else:
            copy = path.with_name("copy.sqlite3")
            shutil.copyfile(path, copy)
            os.replace(copy, path)
        await until(lambda: messages(h.webhook, f"was {how} while the watcher ran"))
        status, body = await probe(port, "/readyz")
        assert status == 503
        assert any(f"was {how}" in r for r in body["reasons"]), body
        await asyncio.sleep(1.5)  # no recovery and no second page: the file stays wrong
        assert len(messages(h.webhook, f"was {how} while the watcher ran")) == 1
        assert h.daemon.store_health.failing


async def test_readyz_is_503_while_every_target_fails(tmp_path: Path) -> None:
    port = free_port()
    async with running(tmp_path, ["clean_upgrade"], configure=with_http(port)) as h:
        await h.settle()
        assert (await probe(port, "/readyz"))[0] == 200
        h.sim.add_fault(kind="status", status=503)
        await h.wait_polled()
        status, body = await probe(port, "/readyz")
        assert status == 503
        assert any(r.startswith("every target is failing") for r in body["reasons"]), body
        h.sim.clear_faults()
        await h.wait_polled()
        assert (await probe(port, "/readyz"))[0] == 200


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    try:
        yield sock
    finally:
        sock.close()


def pings(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return count
        count += data.decode().splitlines().count("WATCHDOG=1")


@pytest.mark.usefixtures("fast_checks")
async def test_a_wedged_poll_fails_healthz_and_stops_the_systemd_watchdog(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    port = free_port()
    async with running(tmp_path, ["clean_upgrade"], configure=with_http(port)) as h:
        await h.settle()
        await until(lambda: pings(notify_socket) > 0)
        h.daemon.run_limit_s = 0.5  # production: 10 x cloud.timeout_s, 5 min at least
        h.sim.add_fault(kind="slow", delay=60.0)  # until clear_faults(), however loaded the CI
        h.daemon.poll_all_now()
        await until(lambda: h.daemon.scheduler.inflight > 0)
        await asyncio.sleep(1.0)
        pings(notify_socket)  # forget pings sent before the poll counted as wedged
        status, body = await probe(port, "/healthz")
        assert status == 503 and "wedged" in body["reason"], body
        await asyncio.sleep(0.8)
        assert h.daemon.scheduler.inflight > 0
        assert pings(notify_socket) == 0  # systemd would restart us
        h.sim.clear_faults()
        await until(lambda: h.daemon.scheduler.inflight == 0, timeout=10)
        await until(lambda: pings(notify_socket) > 0)
        assert (await probe(port, "/healthz"))[0] == 200


@pytest.mark.usefixtures("fast_checks")
async def test_healthz_fails_when_the_scheduler_leaves_a_due_poll_waiting(tmp_path: Path) -> None:
    port = free_port()
    async with running(tmp_path, ["clean_upgrade"], configure=with_http(port)) as h:
        await h.settle()
        h.daemon.overdue_limit_s = 0.5
        # Stop APScheduler's wake-ups without telling the wrapper: a wedged scheduler.
        h.daemon.scheduler._scheduler._stop_timer()
        h.daemon.scheduler._scheduler.wakeup = lambda: None  # type: ignore[method-assign]
        h.daemon.poll_all_now()
        await asyncio.sleep(1.2)
        status, body = await probe(port, "/healthz")
        assert status == 503 and "scheduler wedged" in body["reason"], body


class PingReceiver:
    """A healthchecks.io-like endpoint: counts GETs to /ping/<uuid>."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits.append((request.method, request.path))
        return web.Response(text="OK")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def ping_receiver() -> AsyncIterator[PingReceiver]:
    receiver = PingReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.mark.usefixtures("fast_checks")
async def test_the_heartbeat_beats_while_healthy_and_stops_when_the_store_fails(
    tmp_path: Path, ping_receiver: PingReceiver
) -> None:
    url = f"http://127.0.0.1:{ping_receiver.port}/ping/0f1e2d3c-secret-check-uuid"

    def configure(raw: dict[str, Any]) -> None:
        raw["heartbeat"] = {"url": url, "interval_s": 1}

    async with running(tmp_path, ["clean_upgrade"], configure=configure) as h:
        await h.settle()
        await until(lambda: len(ping_receiver.hits) >= 2, timeout=10)
        assert set(ping_receiver.hits) == {("GET", "/ping/0f1e2d3c-secret-check-uuid")}
        # /metrics carries what the CceWatcherHeartbeatMissing alert reads.
        ok = h.daemon.registry.get_sample_value("cce_watcher_heartbeats_total", {"result": "ok"})
        assert ok is not None and ok >= 2
        assert h.daemon.registry.get_sample_value(
            "cce_watcher_heartbeat_last_success_timestamp_seconds"
        )
        h.daemon.store.path.unlink()
        await until(lambda: h.daemon.store_health.failing)
        await asyncio.sleep(1.1)  # a beat already under way may still land
        before = len(ping_receiver.hits)
        await asyncio.sleep(2.5)
        assert len(ping_receiver.hits) == before  # the monitoring service will page


def test_the_heartbeat_url_is_masked_and_validated(tmp_path: Path) -> None:
    raw = {
        "state_dir": str(tmp_path),
        "heartbeat": {"url": "https://hc-ping.com/0f1e2d3c-secret-check-uuid", "method": "post"},
    }
    settings = settings_from_mapping(raw)
    assert settings.heartbeat.method == "POST"
    shown = render_masked(settings)
    assert "secret-check-uuid" not in shown
    assert "https://hc-ping.com/..." in shown
    with pytest.raises(Exception, match="plain http"):
        settings_from_mapping({"heartbeat": {"url": "json://host/path"}})


# -- item 7: store trouble is explicit -----------------------------------------------------------


def write_config(tmp_path: Path, state_dir: Path) -> Path:
    """A valid config whose only trouble can be the store (nothing is contacted before it)."""
    config = {
        "state_dir": str(state_dir),
        "cloud": {"cce_endpoint": "http://127.0.0.1:9", "iam_endpoint": "http://127.0.0.1:9"},
        "credentials": {"kind": "aksk", "access_key": "AKEXAMPLE0001", "secret_key": "sk-x" * 8},
        "targets": [
            {
                "name": "prod",
                "region": "ap-southeast-1",
                "project_id": "p1",
                "cluster_id": "c1",
            }
        ],
        "notify": {"urls": ["console://"]},
        "http": {"enabled": False},
        "logging": {"level": "info", "format": "json"},
    }
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "NOTIFY_"))}
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for needle in needles:
        assert needle in errors[0], errors[0]


async def _filled_store(path: Path) -> None:
    store = await SqliteStore.open(path)
    for i in range(300):
        await store.save_kv(f"k{i}", {"v": "z" * 200})
    await store.close()


def _not_a_database(path: Path) -> None:
    path.write_text("this is a shopping list, not a database\n" * 50)


def _corrupt_header(path: Path) -> None:
    asyncio.run(_filled_store(path))
    with path.open("r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 25)


def _garbage_in_the_middle(path: Path) -> None:
    asyncio.run(_filled_store(path))
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "not a database": _not_a_database,
    "corrupt header": _corrupt_header,
    "4 KB of garbage in the middle": _garbage_in_the_middle,
}


@pytest.mark.parametrize("command", ["run", "events"])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_state_file_exits_2_with_one_clear_line(
    tmp_path: Path, damage: str, command: str
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    path = state_dir / STORE_FILE
    DAMAGES[damage](path)
    result = cli(command, "--config", str(write_config(tmp_path, state_dir)))
    assert_one_clear_line(result, str(path), "damaged", "move it aside")


@pytest.fixture
def read_only_state(tmp_path: Path) -> Iterator[Path]:
    """A state directory holding a good store, then remounted read-only (a real EROFS)."""
    disk = tmp_path / "ro"
    why = mount_tmpfs(disk, "size=4m")
    if why is not None:
        pytest.skip(why)
    try:
        asyncio.run(_filled_store(disk / STORE_FILE))
        done = subprocess.run(
            ["mount", "-o", "remount,ro", str(disk)], capture_output=True, check=False
        )
        if done.returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only")
        yield disk
    finally:
        umount(disk)


@pytest.mark.parametrize("command", ["run", "events"])
def test_a_read_only_state_dir_exits_2_naming_the_path_and_the_fix(
    tmp_path: Path, read_only_state: Path, command: str
) -> None:
    result = cli(command, "--config", str(write_config(tmp_path, read_only_state)))
    assert_one_clear_line(
        result, str(read_only_state / STORE_FILE), "cannot be written", "writable"
    )


def test_an_unwritable_empty_state_dir_exits_2(tmp_path: Path) -> None:
    disk = tmp_path / "ro-empty"
    why = mount_tmpfs(disk, "size=1m,ro")
    if why is not None:
        pytest.skip(why)
    try:
        result = cli("run", "--config", str(write_config(tmp_path, disk / "state")))
    finally:
        umount(disk)
    assert_one_clear_line(result, str(disk / "state" / STORE_FILE), "writable")


@pytest.mark.timeout(150)
async def test_the_real_daemon_survives_a_full_disk_and_pages_about_it(
    tmp_path: Path, small_disk: Path
) -> None:
    """`run` as a subprocess: polls, commits and sends keep failing on the full disk; the
    process stays up, pages once, says why in /readyz, and pages again when it recovers."""
    hook = WebhookReceiver()
    await hook.start()
    factory = DaemonFactory(tmp_path)
    try:
        async with start_simulator(scenarios=["clean_upgrade"], autoplay=False) as sim:
            config = daemon_config(
                sim, state_dir=small_disk / "state", port=free_port(), notify_urls=[hook.url]
            )
            daemon = factory.spawn(config)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                await wait_healthy(http, daemon)
                await until(lambda: any("Found upgrade" in t for t in messages(hook, "")))
                filler = fill(small_disk)
                for _ in range(3):  # state changes while full: their commits fail
                    await sim.step()
                await until(lambda: messages(hook, "cannot write its state store"), timeout=20)
                status, body = await get_json(http, f"{daemon.url}/readyz")
                assert status == 503 and "disk is full" in " ".join(body["reasons"]), body
                await asyncio.sleep(2)
                assert daemon.running(), daemon.log_text()[-3000:]
                filler.unlink()
                await until(lambda: messages(hook, "can write its state store again"), timeout=60)
                assert daemon.running(), daemon.log_text()[-3000:]
                assert len(messages(hook, "cannot write its state store")) == 1
                await until(lambda: any("succeeded" in t for t in messages(hook, "")), 30)
    finally:
        factory.close()
        await hook.stop()
