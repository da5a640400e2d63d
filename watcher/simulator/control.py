"""The /_sim/ control API: drive the timeline, inject faults, clone workflows, read counters.

No authentication: the simulator is a test server bound to loopback by default. Bodies and
answers are small JSON objects; errors are ``{"error": "..."}`` with status 400 or 404.
The routes drive any ``SimulatorControl`` (the server's Simulator is one), so this module
does not import the server that imports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from watcher.simulator.responses import json_response
from watcher.simulator.scenario import ScenarioError


class SimulatorControl(Protocol):
    """What the control API drives (``watcher.simulator.server.Simulator``)."""

    def state(self) -> dict[str, Any]: ...

    async def step(self, workflow_id: str | None = None) -> dict[str, Any]: ...

    async def advance(self, seconds: float) -> dict[str, Any]: ...

    def add_fault(
        self,
        kind: str,
        *,
        status: int | None = None,
        count: int | None = None,
        retry_after: float | None = None,
        delay: float | None = None,
        path_contains: str | None = None,
        body: str | None = None,
        retry_after_header: str | None = None,
    ) -> dict[str, Any]: ...

    def clear_faults(self) -> int: ...

    async def reset(self) -> None: ...

    def targets(self) -> list[dict[str, Any]]: ...

    async def add_workflows(
        self, scenario: str | os.PathLike[str], count: int
    ) -> list[dict[str, Any]]: ...

    def requests(self) -> dict[str, Any]: ...

    async def add_cluster(
        self,
        name: str,
        *,
        api: str = "cce",
        labels: dict[str, str] | None = None,
        alias: str | None = None,
        workflows: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]: ...

    def delete_cluster(self, cluster_id: str) -> dict[str, Any]: ...


MAX_CLONES = 100_000


def _bad(message: str, status: int = 400) -> web.Response:
    return json_response({"error": message}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object")
    return value


class ControlRoutes:
    def __init__(self, sim: SimulatorControl) -> None:
        self.sim = sim

    def table(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/state", self.state, name="sim.state"),
            web.post("/_sim/step", self.step, name="sim.step"),
            web.post("/_sim/advance", self.advance, name="sim.advance"),
            web.post("/_sim/faults", self.add_fault, name="sim.faults.add"),
            web.delete("/_sim/faults", self.clear_faults, name="sim.faults.clear"),
            web.post("/_sim/reset", self.reset, name="sim.reset"),
            web.post("/_sim/workflows", self.add_workflows, name="sim.workflows.add"),
            web.get("/_sim/requests", self.requests, name="sim.requests"),
            web.post("/_sim/clusters", self.add_cluster, name="sim.clusters.add"),
            web.delete("/_sim/clusters/{cid}", self.delete_cluster, name="sim.clusters.delete"),
        ]

    async def state(self, request: web.Request) -> web.Response:
        return json_response(self.sim.state())

    async def step(self, request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            return json_response(await self.sim.step(body.get("workflow")))
        except KeyError as exc:
            return _bad(f"unknown workflow {exc}", 404)
        except ValueError as exc:
            return _bad(str(exc))

    async def advance(self, request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            return json_response(await self.sim.advance(float(body["seconds"])))
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(f"expected {{'seconds': N >= 0}}: {exc}")

    async def add_fault(self, request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            return json_response({"fault": self.sim.add_fault(**body)})
        except (TypeError, ValueError) as exc:
            return _bad(str(exc))

    async def clear_faults(self, request: web.Request) -> web.Response:
        return json_response({"cleared": self.sim.clear_faults()})

    async def reset(self, request: web.Request) -> web.Response:
        await self.sim.reset()
        return json_response({"ok": True, "targets": self.sim.targets()})

    async def add_workflows(self, request: web.Request) -> web.Response:
        try:
            body = await _body(request)
            count = int(body.get("count", 1))
            if not 1 <= count <= MAX_CLONES:
                raise ValueError(f"count must be 1..{MAX_CLONES}")
            targets = await self.sim.add_workflows(str(body["scenario"]), count)
        except ScenarioError as exc:
            return _bad(str(exc), 404)
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(f"expected {{'scenario': name, 'count': N}}: {exc}")
        return json_response({"targets": targets})

    async def requests(self, request: web.Request) -> web.Response:
        return json_response(self.sim.requests())

    async def add_cluster(self, request: web.Request) -> web.Response:
        """``{"name", "api"?, "labels"?, "alias"?, "workflows"?: [{"scenario", "finished"?}]}``"""
        try:
            body = await _body(request)
            workflows = body.get("workflows", [])
            if not isinstance(workflows, list) or not all(isinstance(w, dict) for w in workflows):
                raise ValueError("workflows must be a list of objects")
            added = await self.sim.add_cluster(
                str(body["name"]),
                api=str(body.get("api", "cce")),
                labels=body.get("labels"),
                alias=body.get("alias"),
                workflows=workflows,
            )
        except ScenarioError as exc:
            return _bad(str(exc), 404)
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(f"expected {{'name': cluster name, ...}}: {exc}")
        return json_response(added, 201)

    async def delete_cluster(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        try:
            return json_response({"deleted": self.sim.delete_cluster(cid)})
        except KeyError:
            return _bad(f"unknown cluster {cid!r}", 404)
