"""No secret ever reaches a log line or an HTTP response, even with faults and debug logs.

Secrets are planted in the config (IAM password, AK/SK from a systemd-style credentials
directory, the HTTP bearer token) and in notification URLs (a password, a custom auth
header, a payload key, a URL that is down). The daemon runs a scenario at debug level
while the simulator injects 5xx, 429, non-JSON bodies and token expiry, and one webhook
fails for a while. Then every log line, every endpoint, the SSE stream, the status page,
`events --json` and `config show` are searched for each secret and its URL-encoded form.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.e2e.harness import WebhookReceiver
from tests.e2e.ops_support import (
    DaemonFactory,
    daemon_config,
    eventually,
    free_port,
    wait_healthy,
)
from watcher.simulator import DEFAULT_ACCOUNT, start_simulator

SK = "PLANTED-SK-5e3c9a7b1d2f4e6a8c0b"
PASSWORD = "PLANTED-PASSWORD-77aa11bb"
HTTP_TOKEN = "PLANTED-HTTP-TOKEN-0123456789abcdef"
URL_PASSWORD = "PLANTED-URLPASS-4c4c4c"
HEADER_TOKEN = "PLANTED-HEADER-TOKEN-8d8d8d"
PAYLOAD_KEY = "PLANTED-PAYLOAD-KEY-2e2e2e"
DOWN_PASSWORD = "PLANTED-DOWNPASS-6f6f6f"
PLANTED = [SK, PASSWORD, HTTP_TOKEN, URL_PASSWORD, HEADER_TOKEN, PAYLOAD_KEY, DOWN_PASSWORD]
ACCOUNT = replace(DEFAULT_ACCOUNT, secret_key=SK, password=PASSWORD)


def leaks(text: str, secrets: list[str]) -> list[str]:
    found = []
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form in text:
                found.append(secret)
    return found


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    factory = DaemonFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
async def flaky_hook() -> AsyncIterator[WebhookReceiver]:
    """A webhook that answers 500 to its first three requests, then 200."""
    hook = WebhookReceiver(fail_first=3)
    await hook.start()
    yield hook
    await hook.stop()


@pytest.mark.parametrize("kind", ["aksk", "password"])
async def test_no_secret_in_logs_or_http(
    tmp_path: Path, daemons: DaemonFactory, flaky_hook: WebhookReceiver, kind: str
) -> None:
    hook_addr = f"127.0.0.1:{flaky_hook.port}"
    urls = [
        f"json://hookuser:{URL_PASSWORD}@{hook_addr}/hook"
        f"?+Authorization=Bearer%20{HEADER_TOKEN}&:apikey={PAYLOAD_KEY}",
        f"json://down:{DOWN_PASSWORD}@127.0.0.1:{free_port()}/gone",
    ]
    async with start_simulator(scenarios=["clean_upgrade"], autoplay=False, account=ACCOUNT) as sim:
        config = daemon_config(
            sim, state_dir=tmp_path / "state", port=free_port(), token=HTTP_TOKEN, notify_urls=urls
        )
        config["logging"] = {"level": "debug", "format": "json"}
        env = {}
        if kind == "aksk":
            creds = tmp_path / "credentials"
            creds.mkdir()
            (creds / "credentials__secret_key").write_text(SK + "\n")
            config["credentials"] = {"kind": "aksk", "access_key": ACCOUNT.access_key}
            env["CREDENTIALS_DIRECTORY"] = str(creds)
        else:
            config["credentials"] = {
                "kind": "password",
                "username": ACCOUNT.user,
                "password": PASSWORD,
                "domain": ACCOUNT.domain,
            }
        daemon = daemons.spawn(config, env=env)
        responses: list[str] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await wait_healthy(http, daemon)
            faults = [
                ("status", {"status": 503, "count": 3}),
                ("garbage", {"count": 2}),
                ("throttle", {"count": 1, "retry_after": 1}),
                ("token_expiry", {}),
            ]
            for step in range(6):
                await sim.step()
                kind_name, args = faults[step % len(faults)]
                sim.add_fault(kind_name, **args)  # type: ignore[arg-type]
                await asyncio.sleep(1.2)
            sim.clear_faults()

            async def delivered() -> bool:
                return flaky_hook.attempts >= 4 and bool(flaky_hook.bodies)  # three 500s, then sent

            await eventually(delivered, timeout=20)
            paths = [
                "/healthz",
                "/readyz",
                "/metrics",
                "/api/v1/workflows",
                "/api/v1/events?limit=1000",
                "/",
            ]
            for path in paths:
                async with http.get(daemon.url + path, headers=daemon.headers()) as resp:
                    responses.append(
                        f"{path} {resp.status} {dict(resp.headers)}\n" + await resp.text()
                    )
            async with http.get(
                daemon.url + "/api/v1/events",
                headers={"Authorization": "Bearer wrong-token-for-the-401-body"},
            ) as resp:
                assert resp.status == 401
                responses.append(await resp.text())
            stream = daemon.url + f"/api/v1/events/stream?last_event_id=0&token={HTTP_TOKEN}"
            async with http.get(stream) as resp:
                chunk = await asyncio.wait_for(resp.content.read(64 * 1024), 5)
                responses.append(chunk.decode(errors="replace"))
        cli_env = {"PATH": "/usr/bin:/bin", **env}
        for args in (["events", "--json"], ["config", "show"], ["config", "show", "--json"]):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "watcher",
                *args,
                "--config",
                str(daemon.config_path),
                env=cli_env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await proc.communicate()
            assert proc.returncode == 0, out.decode()
            responses.append(out.decode())
        issued = list(sim.auth._tokens)  # the IAM tokens the daemon was given
    logs = daemon.log_text()
    assert "poll.failed" in logs  # the faults really happened
    assert "notify.failed" in logs or "delivery" in logs
    secrets = PLANTED + [t for t in issued if len(t) > 16]
    if kind == "password":
        assert issued, "the daemon should have logged in with the IAM password"
    assert leaks(logs, secrets) == []
    assert leaks("\n".join(responses), secrets) == []
