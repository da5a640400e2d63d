"""Fixtures for the simulator tests: a running simulator and a small signing client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from watcher.cloud import signer
from watcher.simulator import DEFAULT_ACCOUNT, Simulator, start_simulator

A = DEFAULT_ACCOUNT
ALL_SCENARIOS = (
    "clean_upgrade",
    "precheck_fails",
    "cluster_fails_rollback",
    "precheck_expires",
    "cancel",
    "retry_success",
    "seed",
)


@dataclass
class Reply:
    status: int
    headers: Any
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class Client:
    """Sends requests to the simulator, signed (AK/SK), with a token, or bare."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.host = URL(sim.url).raw_authority

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        query: Sequence[tuple[str, str]] = (),
        auth: str = "aksk",
        access_key: str = A.access_key,
        secret_key: str = A.secret_key,
        security_token: str | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> Reply:
        base = {"Content-Type": "application/json", "X-Project-Id": A.project_id}
        base.update(headers or {})
        if auth == "aksk":
            base = signer.sign(
                method,
                self.host,
                path,
                query,
                base,
                body,
                access_key=access_key,
                secret_key=secret_key,
                security_token=security_token,
                now=now,
            )
        elif auth == "token":
            base["X-Auth-Token"] = token or ""
        qs = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query))
        url = URL(self.sim.url + path + (f"?{qs}" if qs else ""), encoded=True)
        async with self.session.request(method, url, data=body or None, headers=base) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def control(self, method: str, path: str, body: Any = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(method, self.sim.url + path, data=data) as resp:
            return Reply(resp.status, resp.headers, await resp.read())


def wf_path(target: dict[str, Any], suffix: str = "") -> str:
    prefix = "/api/v3" if target["api"] == "cce" else "/autopilot/v3"
    return (
        f"{prefix}/projects/{target['project_id']}/clusters/{target['cluster_id']}"
        f"/operation/upgradeworkflows{suffix}"
    )


def op_path(target: dict[str, Any], suffix: str) -> str:
    prefix = "/api/v3" if target["api"] == "cce" else "/autopilot/v3"
    return f"{prefix}/projects/{target['project_id']}/clusters/{target['cluster_id']}{suffix}"


def target_of(sim: Simulator, scenario: str) -> dict[str, Any]:
    return next(t for t in sim.targets() if t["name"] == scenario)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with start_simulator(scenarios=ALL_SCENARIOS, autoplay=False) as running:
        yield running


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(sim, session)
