"""Issue 7, items 8-11 end to end: hostile cloud text is inert, secrets stay masked,
templates fail safe, and the HTTP surface has limits.

Everything is real: the simulator serves a scenario whose cluster name, versions and
check-item messages carry terminal escapes, CR, bidi overrides and newlines; ``check``,
``events`` and ``demo`` (the console sender) run as subprocesses; e-mail goes to aiosmtpd.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import WebhookReceiver, running
from tests.e2e.ops_support import (
    DaemonFactory,
    daemon_config,
    eventually,
    free_port,
    get_json,
    to_toml,
    wait_healthy,
)
from watcher.config.masking import to_toml as config_toml
from watcher.simulator import start_simulator

CLI = [sys.executable, "-m", "watcher"]

# Each hostile piece: an ANSI clear-screen, an OSC title/hyperlink, a CR, a bidi override
# and a newline followed by a header-like line.
EVIL = (
    "\u001b[2J\u001b]0;pwned\u0007\u001b]8;;http://evil\u001b\\lnk\u001b]8;;\u001b\\"
    "\rCR\u202eRLO\u2066"
)
FORGED = "Subject: wire money now"
HOSTILE_NAME = f"prod{EVIL}\n{FORGED}"
HOSTILE_VERSION = f"v1.27{EVIL}\nX-Forged: 1"
HOSTILE_ITEM = f"node 10.0.0.1{EVIL}\r\n{FORGED}"
HOSTILE_MESSAGE = f"2 items failed{EVIL}\n{FORGED}"

# Anything that can drive a terminal or reorder text: C0 (but \n, \t), DEL, C1, bidi.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def toml_str(value: str) -> str:
    """A TOML basic string; json.dumps escapes are valid TOML escapes for these characters."""
    return json.dumps(value, ensure_ascii=True)


def hostile_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.toml"
    path.write_text(
        f"""
description = "cloud strings with escapes, CR, bidi and newlines"
precheck_validity = 3600
[cluster]
id = "0a1b2c3d-0666-11ef-9a01-0255ac100666"
name = {toml_str(HOSTILE_NAME)}
version = {toml_str(HOSTILE_VERSION)}
api = "cce"
[workflow]
id = "7c3e1d2a-0666-4a5b-9c8d-0e1f2a3b4666"
target_version = {toml_str("v1.28" + EVIL)}
[precheck]
message = {toml_str(HOSTILE_MESSAGE)}
[[precheck.items]]
name = {toml_str("NodeOSCheck" + EVIL)}
level = "Fatal"
kind = "Exception"
group = "NodeCheck"
message = {toml_str(HOSTILE_ITEM)}
[[steps]]
at = 1
point = "PreCheck"
status = "Running"
[[steps]]
at = 2
point = "PreCheck"
status = "Failed"
""",
        encoding="utf-8",
    )
    return path


def assert_inert(text: str, where: str) -> None:
    bad = sorted({f"U+{ord(c):04X}" for c in _UNSAFE.findall(text)})
    assert not bad, f"{where} printed raw control/bidi characters {bad}:\n{text!r}"
    for line in text.splitlines():
        assert not line.lstrip().startswith(("Subject:", "X-Forged:")), (
            f"{where}: a cloud string forged a line: {line!r}"
        )


async def cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ------------------------------------------------------------------- 8: untrusted text


async def test_check_events_and_email_print_hostile_cloud_text_inert(tmp_path: Path) -> None:
    scenario = hostile_scenario(tmp_path)
    async with running(tmp_path, [str(scenario)]) as h:
        for _ in range(3):
            await h.step()
        await h.settle()
        assert h.smtp.messages, "no e-mail arrived"
        assert h.webhook.bodies, "no webhook message arrived"
        target = h.sim.targets()[0]
        config = tmp_path / "config.toml"
        acc = h.sim.account
        config.write_text(
            to_toml(
                {
                    "state_dir": tmp_path / "state",
                    "cloud": {"cce_endpoint": h.sim.url, "iam_endpoint": h.sim.url},
                    "credentials": {
                        "kind": "aksk",
                        "access_key": acc.access_key,
                        "secret_key": acc.secret_key,
                    },
                    "targets": [
                        {
                            "name": "hostile",
                            "region": target["region"],
                            "project_id": target["project_id"],
                            "cluster_id": target["cluster_id"],
                        }
                    ],
                    "notify": {"urls": ["console://"]},
                }
            )
        )
        code, out, err = await cli("check", "--config", str(config))
        assert code == 1, err  # the workflow is Pending
        assert "prod" in out and "wire money now" in out  # shown, but on the same line
        assert_inert(out + err, "check")
        code, out, err = await cli("check", "--config", str(config), "--json")
        assert json.loads(out)["workflows"][0]["cluster_name"] == HOSTILE_NAME  # data intact
        assert_inert(out, "check --json")
    code, out, err = await cli("events", "--config", str(config))
    assert code == 0, err
    assert "pre-check" in out.lower()
    assert_inert(out + err, "events")
    for msg in h.smtp.messages:
        assert_inert(str(msg["Subject"]), "e-mail subject")
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        # MIME text travels with CRLF line ends; every other CR would be the cloud's.
        assert_inert(body.get_content().replace("\r\n", "\n"), "e-mail body")
        assert msg.get_all("X-Forged") is None
    for payload in h.webhook.bodies:
        assert_inert(payload["title"] + "\n" + payload["message"], "webhook message")


@pytest.mark.slow
async def test_console_sender_prints_hostile_cloud_text_inert(tmp_path: Path) -> None:
    """`demo` prints every notification through console://: nothing raw reaches stdout."""
    scenario = hostile_scenario(tmp_path)
    _code, out, err = await cli(
        "demo", "--scenario", str(scenario), "--speed", "4", "--timeout", "8", timeout=60
    )
    assert "wire money now" in out, out + err  # the notifications were printed
    assert_inert(out + err, "demo console output")


# ------------------------------------------------------------------- 11: HTTP surface limits


@pytest.mark.slow
async def test_idle_http_flood_starves_neither_notifications_nor_the_api(tmp_path: Path) -> None:
    """1,000 idle sockets against a daemon allowed 512 descriptors: the webhook still gets the
    upgrade's messages, and the API answers again once the header timeout cuts the idlers."""
    hook = WebhookReceiver()
    await hook.start()
    factory = DaemonFactory(tmp_path)
    idle: list[asyncio.StreamWriter] = []
    try:
        async with (
            start_simulator(scenarios=["precheck_fails"], autoplay=False) as sim,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
        ):
            config = daemon_config(
                sim, state_dir=tmp_path / "state", port=free_port(), notify_urls=[hook.url]
            )
            daemon = factory.spawn(config)
            resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (512, 512))
            await wait_healthy(session, daemon)
            await eventually(lambda: _true(len(hook.bodies) >= 1), timeout=15)
            before = len(hook.bodies)
            for _ in range(1000):
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
                    idle.append(writer)
            started = time.monotonic()
            for _ in range(4):  # PreCheck runs, then fails: the workflow goes Pending
                await sim.step()
            await eventually(lambda: _true(len(hook.bodies) > before), timeout=20)
            status, body = await eventually(
                lambda: _ok(get_json(session, f"{daemon.url}/api/v1/events")), timeout=20
            )
            assert status == 200 and body["events"]
            assert time.monotonic() - started < 20
            assert daemon.running(), daemon.log_text()[-2000:]
            assert "Too many open files" not in daemon.log_text()
    finally:
        for writer in idle:
            writer.close()
        factory.close()
        await hook.stop()


async def _true(value: bool) -> bool:
    return value


async def _ok(answer: Awaitable[tuple[int, Any]]) -> tuple[int, Any] | None:
    status, body = await answer
    return (status, body) if status == 200 else None


# ------------------------------------------------------------------- 10: templates fail safe


def _validate_config(tmp_path: Path, templates: dict[str, Any]) -> Path:
    path = tmp_path / "validate.toml"
    path.write_text(
        config_toml(  # quotes keys such as "task.failed"
            {
                "cloud": {"region": "ap-southeast-1", "project_id": "0" * 32},
                "credentials": {"kind": "aksk", "access_key": "AK" * 8, "secret_key": "SK" * 8},
                "targets": [{"name": "t", "cluster_id": "00000000-0000-0000-0000-000000000001"}],
                "notify": {"urls": ["console://"], "templates": templates},
            }
        )
    )
    return path


async def test_config_validate_renders_every_template_and_names_the_broken_ones(
    tmp_path: Path,
) -> None:
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "email_body.j2").write_text("Cluster {{ cluster }}\n{{ event.task_type.upper() }}\n")
    (tdir / "chat_title.j2").write_text("{{ severity|upper }} {{ cluster }}")  # fine
    broken = _validate_config(
        tmp_path,
        {"template_dir": str(tdir), "task.failed": {"title": "{{ target.title }}"}},
    )
    code, out, err = await cli("config", "validate", "--config", str(broken))
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert any(
        line.startswith(f"config error: template file {tdir / 'email_body.j2'}: UndefinedError")
        and "(line 2)" in line
        for line in lines
    ), err
    assert any(
        line.startswith("config error: notify.templates.task.failed.title: UndefinedError")
        for line in lines
    ), err
    (tdir / "email_body.j2").write_text("Cluster {{ cluster }}\n{{ event.task_type or '-' }}\n")
    fixed = _validate_config(
        tmp_path, {"template_dir": str(tdir), "task.failed": {"title": "{{ cluster }}"}}
    )
    code, out, err = await cli("config", "validate", "--config", str(fixed))
    assert code == 0, err
    assert out.startswith("config OK")


async def test_a_template_failing_at_send_time_falls_back_and_is_delivered(
    tmp_path: Path,
) -> None:
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "chat_body.j2").write_text("{{ event.details.no_such_key }}")
    (tdir / "email_title.j2").write_text("{{ 1 / 0 }}")

    def configure(raw: dict[str, Any]) -> None:
        raw["notify"]["templates"] = {
            "template_dir": str(tdir),
            "task.failed": {"title": "{{ target.title }}"},
            "task.started": {"body": "{{ event.no_such_field }}"},
        }

    async with running(tmp_path, ["precheck_fails"], configure=configure) as h:
        for _ in range(4):
            await h.step()
        await h.settle()
        stored = await h.daemon.store.events_with_deliveries(100)
    states = [d.state for row in stored for d in row.deliveries]
    assert states and set(states) == {"sent"}, states
    assert h.webhook.bodies and h.smtp.messages
    for body in h.webhook.bodies:
        assert body["message"].strip(), body  # the built-in chat body
    for msg in h.smtp.messages:
        assert str(msg["Subject"]).startswith("["), msg["Subject"]  # the built-in title


# ------------------------------------------------------------------- 9: secrets stay masked

# Distinctive planted tokens, one per place a notification service keeps its secret.
PLANTED = {
    "slack": "slack://TPLNTSLK1/BPLNTSLK2/XPLNTSLKTOKEN0000000003",
    "slack-native": "https://hooks.slack.com/services/TPLNTHK1/BPLNTHK2/XPLNTHKTOKEN00000000003",
    "discord": "discord://987654321098765432/PLNTDISCORDTOKEN0123456789abcdef",
    "telegram": "tgram://987654321:PLNTTGRAMTOKENabcdefghijklmnopqrstu/12345",
    "wecom": "wecombot://PLNTWECOMKEY0123456789",
    "wecom-native": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=PLNTWECOMNATIVE0123456789",
    "feishu": "feishu://PLNTFEISHUTOKEN0123456789",
    "dingtalk": "dingtalk://PLNTDINGSECRET0123456789@PLNTDINGTOKEN0123456789",
}
SECRET_MARKERS = (
    "PLNTSLK",
    "PLNTHK",
    "987654321098765432",
    "PLNTDISCORD",
    "PLNTTGRAM",
    "PLNTWECOM",
    "PLNTFEISHU",
    "PLNTDING",
    "PLNTJSONPW",
    "PLNTJSONPATH",
    "PLNTJSONBEARER",
    "PLNTJSONKEY",
)


async def _refusing_proxy() -> tuple[asyncio.Server, int]:
    """An HTTP proxy that refuses every CONNECT: cloud hosts are reached without a network,
    and the failure path (an exception quoting the request URL) is exercised."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(65536)
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_notify_test_with_debug_logs_never_prints_a_planted_token(tmp_path: Path) -> None:
    hook = WebhookReceiver(fail_first=1)  # one failure: the error path is logged too
    await hook.start()
    proxy, proxy_port = await _refusing_proxy()
    json_url = (
        f"json://ops:PLNTJSONPW0123@127.0.0.1:{hook.port}/hook/PLNTJSONPATH0123456789"
        "?+Authorization=Bearer%20PLNTJSONBEARER0123&:apikey=PLNTJSONKEY0123"
    )
    config = tmp_path / "notify.toml"
    config.write_text(
        config_toml(
            {
                "notify": {
                    "urls": [{"name": name, "url": url} for name, url in PLANTED.items()]
                    + [{"name": "json", "url": json_url}]
                },
                "logging": {"level": "debug", "format": "json"},
            }
        )
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HTTPS_PROXY": f"http://127.0.0.1:{proxy_port}",
        "HTTP_PROXY": f"http://127.0.0.1:{proxy_port}",
        "NO_PROXY": "127.0.0.1",
    }
    extra = f"json://127.0.0.1:{hook.port}/extra/PLNTJSONPATH0123456789"
    runs: list[tuple[int | None, str, str]] = []
    try:
        # Once through the configured routes (every URL), once with --notify, which sends to
        # the given URL only, bypassing routes: both must mask what they print.
        for args in ((), ("--notify", extra)):
            proc = await asyncio.create_subprocess_exec(
                *CLI,
                "notify-test",
                "--config",
                str(config),
                *args,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out_b, err_b = await asyncio.wait_for(proc.communicate(), 90)
            runs.append((proc.returncode, out_b.decode(), err_b.decode()))
    finally:
        proxy.close()
        await hook.stop()
    (code, out, err), (extra_code, extra_out, extra_err) = runs
    assert code == 1, out + err  # the cloud services are unreachable here
    assert out.count("FAILED") + out.count("ok ") == len(PLANTED) + 1, out
    assert extra_code == 0 and extra_out.count("ok ") == 1, extra_out + extra_err
    assert '"level": "debug"' in err and "urllib3" in err  # debug lines were printed
    assert "Max retries exceeded" in err  # the failure path that quotes request URLs
    assert hook.attempts >= 2  # the json:// URLs, token paths and all, were really used
    out, err = out + extra_out, err + extra_err
    leaked = [m for m in SECRET_MARKERS if m in out + err]
    assert not leaked, f"planted secrets {leaked} printed:\n{out}\n{err[-4000:]}"
    assert "sending" in err or "send" in out + err  # ordinary words are not masked
