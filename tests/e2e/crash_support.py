"""Helpers for the SIGKILL crash test: a webhook receiver, the config, the daemon process.

The daemon runs as a real subprocess (`cce-upgrade-watcher run --config ...`) so SIGKILL
is a real crash: no finally blocks, no shutdown drain. Notifications go to a json://
webhook on a local aiohttp receiver. A template directory replaces the default chat body
with one ``EVENT <kind> <dedup_key>`` line per event, so every receipt can be attributed
to the exact events it carried.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

VENV_BIN = Path(sys.executable).parent
WATCHER_BIN = VENV_BIN / "cce-upgrade-watcher"

EVENT_LINE = re.compile(r"^EVENT (\S+) (\S+)$", re.MULTILINE)
# Pre-check expiry milestones carry the expiry instant in their key; that instant is
# anchored to the simulator's start time, so it differs between two simulator runs.
_STAMP = re.compile(r"\d{4}-?\d{2}-?\d{2}T[0-9:.]+Z?|\d{10,}")

BODY_TEMPLATE = "{% for e in events %}\nEVENT {{ e.kind }} {{ e.dedup_key }}\n{% endfor %}\n"


def normalize_key(key: str) -> str:
    """A dedup key with wall-clock-anchored stamps masked (comparable across runs)."""
    return _STAMP.sub("<T>", key)


@dataclass
class Receipt:
    at: float  # time.monotonic() when the POST arrived
    title: str
    events: list[tuple[str, str]]  # (kind, dedup_key)


@dataclass
class Receiver:
    """A json:// webhook endpoint recording every POST with its receive time."""

    receipts: list[Receipt] = field(default_factory=list)
    # Called with the receipt before the 200 is returned (the crash test kills here).
    on_receive: Callable[[Receipt], Any] | None = None
    url: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"json://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        data = json.loads(await request.read())
        message = str(data.get("message", ""))
        receipt = Receipt(
            at=at, title=str(data.get("title", "")), events=EVENT_LINE.findall(message)
        )
        self.receipts.append(receipt)
        self.changed.set()
        if self.on_receive is not None:
            result = self.on_receive(receipt)
            if asyncio.iscoroutine(result):
                await result
        return web.json_response({"ok": True})

    def event_keys(self) -> list[str]:
        return [key for r in self.receipts for _, key in r.events]

    async def wait_quiet(self, quiet_s: float, timeout: float, min_count: int = 0) -> None:
        """Wait until at least ``min_count`` receipts exist and none came for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.receipts[-1].at if self.receipts else 0.0
            if len(self.receipts) >= min_count and time.monotonic() - last >= quiet_s:
                return
            await asyncio.sleep(0.05)


def stored_keys(file: Path) -> set[str]:
    """Normalized dedup keys the store holds right now (read-only; the daemon may run)."""
    if not file.exists():
        return set()
    conn = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=5)
    try:
        return {normalize_key(k) for (k,) in conn.execute("SELECT dedup_key FROM events")}
    except sqlite3.OperationalError:  # schema not created yet
        return set()
    finally:
        conn.close()


def write_config(
    tmp: Path, *, sim: Any, receiver_url: str, name: str, log_level: str = "info"
) -> Path:
    """A TOML config for the daemon against ``sim``; returns its path."""
    templates = tmp / "templates"
    templates.mkdir(exist_ok=True)
    for flavor in ("chat", "email"):
        (templates / f"{flavor}_body.j2").write_text(BODY_TEMPLATE)
    state = tmp / f"state-{name}"
    state.mkdir(exist_ok=True)
    acc = sim.account
    lines = [
        f'state_dir = "{state}"',
        "[cloud]",
        f'cce_endpoint = "{sim.url}"',
        f'iam_endpoint = "{sim.url}"',
        "timeout_s = 3",
        "[credentials]",
        'kind = "aksk"',
        f'access_key = "{acc.access_key}"',
        f'secret_key = "{acc.secret_key}"',
    ]
    for t in sim.targets():
        lines += [
            "[[targets]]",
            f'name = "{t["name"]}"',
            'kind = "workflow"',
            f'region = "{t["region"]}"',
            f'project_id = "{t["project_id"]}"',
            f'cluster_id = "{t["cluster_id"]}"',
            f'workflow_id = "{t["workflow_id"]}"',
            f'api = "{t["api"]}"',
        ]
    lines += [
        "[polling]",
        "active_s = 0.3",
        "idle_s = 0.4",
        "failed_s = 0.4",
        "discovery_s = 5",
        "requests_per_second = 100",
        "burst = 100",
        "max_backoff_s = 1",
        "[policy]",
        # Long enough that no wall-clock-driven event (reminder) can fire in a run.
        'repeat_interval = "24h"',
        "[notify]",
        f'urls = ["{receiver_url}"]',
        "retry_base_s = 0.2",
        "retry_cap_s = 0.5",
        'max_age = "1h"',
        "[notify.templates]",
        f'template_dir = "{templates}"',
        "[http]",
        "enabled = false",
        "[logging]",
        f'level = "{log_level}"',
        'format = "json"',
    ]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProcess:
    """The daemon as a subprocess; every start, SIGKILL and exit is recorded."""

    def __init__(self, config: Path, log_file: Path) -> None:
        self.config = config
        self.log_file = log_file
        self.proc: asyncio.subprocess.Process | None = None
        self.kills: list[float] = []  # time.monotonic() of each SIGKILL
        self.starts = 0
        self.exit_codes: list[int | None] = []

    async def start(self) -> None:
        assert self.proc is None or self.proc.returncode is not None
        with self.log_file.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                str(WATCHER_BIN),
                "run",
                "--config",
                str(self.config),
                stdout=log,
                stderr=log,
                env={**os.environ, "NOTIFY_SOCKET": "", "WATCHDOG_USEC": ""},
            )
        self.starts += 1

    def kill_now(self) -> bool:
        """SIGKILL synchronously (usable from inside the receiver's handler)."""
        if self.proc is None or self.proc.returncode is not None:
            return False
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            # Already exited and reaped by the child watcher, whose returncode update is
            # still queued on the loop: not a kill of ours (reap() records its exit code).
            return False
        self.kills.append(time.monotonic())
        return True

    async def kill(self) -> None:
        self.kill_now()
        await self.reap()

    async def reap(self) -> None:
        if self.proc is not None:
            self.exit_codes.append(await self.proc.wait())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def terminate(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None
        self.exit_codes.append(code)
        return code

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
