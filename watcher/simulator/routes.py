"""The cloud-facing routes: CCE (standard and Autopilot), IAM, and the ECS metadata service.

Handlers only look things up in SimState and render; authentication, faults, request ids
and error rendering happen in the server's middleware. The hot route (GET one workflow)
serves the workflow's cached JSON bytes. Each route class gets the parts of the simulator
it needs (state, account, authenticator, base URL) as arguments, so this module does not
import the server that imports it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from watcher.core.timeparse import format_iam
from watcher.simulator.account import Account
from watcher.simulator.auth import Authenticator
from watcher.simulator.responses import (
    CceError,
    iam_error,
    json_bytes,
    json_response,
    not_found,
)
from watcher.simulator.state import ClusterState, PointState, SimState, WorkflowState, dumps

API_OF = {"api": "cce", "autopilot": "autopilot"}
_BASE = "/{api:api|autopilot}/v3/projects/{pid}/clusters"
_OP = _BASE + "/{cid}/operation"
METADATA_MAX_TTL = 21600


class CceRoutes:
    """GET/PATCH of workflows, pre-check and upgrade tasks, and clusters."""

    def __init__(self, world: SimState, account: Account) -> None:
        self.world = world
        self.account = account

    def table(self) -> list[web.RouteDef]:
        return [
            web.get(_OP + "/upgradeworkflows", self.list_workflows, name="cce.workflows.list"),
            web.get(_OP + "/upgradeworkflows/{wid}", self.show_workflow, name="cce.workflows.show"),
            web.patch(
                _OP + "/upgradeworkflows/{wid}", self.patch_workflow, name="cce.workflows.patch"
            ),
            web.get(_OP + "/precheck/tasks", self.list_prechecks, name="cce.precheck.list"),
            web.get(_OP + "/precheck/tasks/{tid}", self.show_precheck, name="cce.precheck.show"),
            web.get(_OP + "/upgrade/tasks", self.list_upgrades, name="cce.upgrade.list"),
            web.get(_OP + "/upgrade/tasks/{tid}", self.show_upgrade, name="cce.upgrade.show"),
            web.get(_BASE, self.list_clusters, name="cce.clusters.list"),
            web.get(_BASE + "/{cid}", self.show_cluster, name="cce.clusters.show"),
        ]

    def _project(self, request: web.Request) -> None:
        pid = request.match_info["pid"]
        if pid != self.account.project_id:
            raise not_found("project", pid)
        self.world.catch_up()

    def _cluster(self, request: web.Request) -> ClusterState:
        self._project(request)
        cid = request.match_info["cid"]
        cluster = self.world.clusters.get(cid)
        if cluster is None or cluster.api != API_OF[request.match_info["api"]]:
            raise not_found("cluster", cid)
        return cluster

    def _workflow(self, request: web.Request) -> WorkflowState:
        cluster = self._cluster(request)
        wid = request.match_info["wid"]
        wf = cluster.workflows.get(wid)
        if wf is None:
            raise not_found("upgradeworkflow", wid)
        return wf

    async def show_workflow(self, request: web.Request) -> web.Response:
        return json_bytes(self._workflow(request).render())

    async def list_workflows(self, request: web.Request) -> web.Response:
        cluster = self._cluster(request)
        items = b",".join(wf.render() for wf in cluster.workflows.values())
        return json_bytes(b'{"kind":"List","apiVersion":"v3","items":[' + items + b"]}")

    async def patch_workflow(self, request: web.Request) -> web.Response:
        wf = self._workflow(request)
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            raise CceError(400, "Invalid request: the body is not JSON.") from None
        phase = body.get("status", {}).get("phase") if isinstance(body, dict) else None
        if phase != "Cancel":
            raise CceError(400, "Invalid request: status.phase only supports Cancel.")
        refused = self.world.cancel(wf)
        if refused:
            raise CceError(400, f"Invalid request: the workflow cannot be cancelled: {refused}.")
        return json_bytes(wf.render())

    def _tasks(
        self, request: web.Request, task_type: str
    ) -> list[tuple[WorkflowState, str, PointState]]:
        cluster = self._cluster(request)
        return [
            (wf, tid, point)
            for wf in cluster.workflows.values()
            for tid, point in wf.tasks(task_type).items()
        ]

    def _task(self, request: web.Request, task_type: str) -> tuple[WorkflowState, str, PointState]:
        tid = request.match_info["tid"]
        for found in self._tasks(request, task_type):
            if found[1] == tid:
                return found
        raise not_found("task", tid)

    async def show_precheck(self, request: web.Request) -> web.Response:
        return json_response(self.world.precheck_json(*self._task(request, "PreCheck")))

    async def list_prechecks(self, request: web.Request) -> web.Response:
        items = [self.world.precheck_json(*t) for t in self._tasks(request, "PreCheck")]
        return json_response({"apiVersion": "v3", "kind": "List", "metadata": {}, "items": items})

    async def show_upgrade(self, request: web.Request) -> web.Response:
        return json_response(self.world.upgrade_task_json(*self._task(request, "Cluster")))

    async def list_upgrades(self, request: web.Request) -> web.Response:
        items = [self.world.upgrade_task_json(*t) for t in self._tasks(request, "Cluster")]
        return json_response({"apiVersion": "v3", "kind": "List", "metadata": {}, "items": items})

    async def show_cluster(self, request: web.Request) -> web.Response:
        return json_bytes(self._cluster(request).render())

    async def list_clusters(self, request: web.Request) -> web.Response:
        self._project(request)
        api = API_OF[request.match_info["api"]]
        items = b",".join(c.render() for c in self.world.clusters.values() if c.api == api)
        return json_bytes(b'{"kind":"List","apiVersion":"v3","items":[' + items + b"]}")


class IamRoutes:
    """POST /v3/auth/tokens (password) and GET /v3/projects (project discovery)."""

    def __init__(self, account: Account, auth: Authenticator, base_url: Callable[[], str]) -> None:
        self.account = account
        self.auth = auth
        self._base_url = base_url  # known once the server listens

    def table(self) -> list[web.RouteDef]:
        return [
            web.post("/v3/auth/tokens", self.create_token, name="iam.tokens.create"),
            web.get("/v3/projects", self.list_projects, name="iam.projects.list"),
        ]

    def _project_json(self) -> dict[str, Any]:
        return {
            "id": self.account.project_id,
            "name": self.account.project_name,
            "domain_id": self.account.domain_id,
            "parent_id": self.account.domain_id,
            "is_domain": False,
            "enabled": True,
            "description": "",
        }

    async def create_token(self, request: web.Request) -> web.Response:
        acc = self.account
        try:
            body = json.loads(await request.read())
            identity = body["auth"]["identity"]
            user = identity["password"]["user"]
            if "password" not in identity["methods"]:
                raise KeyError("methods")
            name, password, domain = user["name"], user["password"], user.get("domain", {})
            scope = body["auth"].get("scope", {}).get("project", {})
        except (ValueError, KeyError, TypeError, AttributeError):
            return iam_error(400, "Bad Request", "The request body is invalid.")
        domain_ok = domain.get("name") == acc.domain or domain.get("id") == acc.domain_id
        if not (name == acc.user and password == acc.password and domain_ok):
            return iam_error(401, "Unauthorized", "The username or password is wrong.")
        if scope and scope.get("name") != acc.project_name and scope.get("id") != acc.project_id:
            return iam_error(401, "Unauthorized", "The project in the scope does not exist.")
        token, issued, expires = self.auth.issue_token(acc.project_id)
        domain_json = {"id": acc.domain_id, "name": acc.domain}
        out: dict[str, Any] = {
            "token": {
                "methods": ["password"],
                "expires_at": format_iam(expires),
                "issued_at": format_iam(issued),
                "user": {
                    "id": acc.user_id,
                    "name": acc.user,
                    "domain": domain_json,
                    "password_expires_at": "",
                },
                "project": {"id": acc.project_id, "name": acc.project_name, "domain": domain_json},
                "roles": [{"id": "0", "name": "te_admin"}, {"id": "1", "name": "op_gated_cce"}],
            }
        }
        if request.query.get("nocatalog") != "true":
            out["token"]["catalog"] = [
                {
                    "type": "cce",
                    "id": "cce0000000000000000000000000001",
                    "name": "cce",
                    "endpoints": [
                        {
                            "id": "ep00000000000000000000000000001",
                            "interface": "public",
                            "region": acc.region,
                            "region_id": acc.region,
                            "url": self._base_url(),
                        }
                    ],
                }
            ]
        response = json_response(out, 201)
        response.headers["X-Subject-Token"] = token
        return response

    async def list_projects(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        projects = [self._project_json()] if name in (None, self.account.project_name) else []
        url = f"{self._base_url()}/v3/projects"
        return json_response(
            {"projects": projects, "links": {"self": url, "previous": None, "next": None}}
        )


class MetadataRoutes:
    """ECS metadata: session token (PUT) and the agency's temporary security key (GET)."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self._sessions: dict[str, float] = {}

    def table(self) -> list[web.RouteDef]:
        return [
            web.put("/meta-data/latest/api/token", self.session_token, name="meta.token"),
            web.get("/openstack/latest/securitykey", self.security_key, name="meta.securitykey"),
        ]

    async def session_token(self, request: web.Request) -> web.Response:
        try:
            ttl = int(request.headers["X-Metadata-Token-Ttl-Seconds"])
        except (KeyError, ValueError):
            return web.Response(status=400, text="X-Metadata-Token-Ttl-Seconds is required")
        if not 1 <= ttl <= METADATA_MAX_TTL:
            return web.Response(status=400, text="X-Metadata-Token-Ttl-Seconds out of range")
        token = secrets.token_urlsafe(32)
        self._sessions[token] = time.monotonic() + ttl
        return web.Response(text=token)

    async def security_key(self, request: web.Request) -> web.Response:
        token = request.headers.get("X-Metadata-Token", "")
        if self._sessions.get(token, 0.0) <= time.monotonic():
            return web.Response(status=401, text="Unauthorized: invalid or expired metadata token")
        return json_bytes(dumps({"credential": self.auth.issue_temporary()}))
