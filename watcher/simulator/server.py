"""The simulator process: one aiohttp app serving CCE, IAM, metadata and /_sim/ together.

The middleware is the API gateway: it stamps X-Request-Id, applies injected faults,
authenticates CCE and IAM-project routes, counts requests, and renders errors in the
cloud's formats. ``Simulator`` is the handle tests and the ``demo`` command hold;
``start_simulator`` (re-exported by the package) runs one on a loopback port.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from watcher.simulator.account import DEFAULT_ACCOUNT, Account
from watcher.simulator.auth import Authenticator, AuthFailure
from watcher.simulator.clock import SimClock
from watcher.simulator.control import ControlRoutes
from watcher.simulator.faults import Fault, Faults, make_fault
from watcher.simulator.responses import (
    CCE_CODES,
    CceError,
    cce_error,
    gateway_error,
)
from watcher.simulator.routes import CceRoutes, IamRoutes, MetadataRoutes
from watcher.simulator.scenario import Scenario, load_scenario
from watcher.simulator.state import SimState

ScenarioRef = str | os.PathLike[str] | Scenario
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SIM: web.AppKey[Simulator] = web.AppKey("simulator")
GARBAGE = b'{"kind":"WorkFlowTask","apiVersion":"v3","status":{"phase":'


def _needs_auth(route_name: str | None) -> bool:
    return route_name is not None and (
        route_name.startswith("cce.") or route_name == "iam.projects.list"
    )


class Simulator:
    """A simulated Huawei Cloud tenant: its state, clock, credentials and faults."""

    def __init__(
        self,
        *,
        scenarios: Sequence[ScenarioRef] = ("clean_upgrade",),
        speed: float = 1.0,
        autoplay: bool = True,
        account: Account = DEFAULT_ACCOUNT,
    ) -> None:
        self.account = account
        self.clock = SimClock(speed=speed, autoplay=autoplay)
        self.world = SimState(clock=self.clock, account=account)
        self.auth = Authenticator(account)
        self.faults = Faults()
        self.url = ""
        self._scenarios: dict[str, Scenario] = {}
        self.world.load_base([self._scenario(ref) for ref in scenarios])
        self._counts: Counter[str] = Counter()
        self._auth_failures: Counter[str] = Counter()
        self._rid_prefix = secrets.token_hex(8)
        self._rid = 0
        self._runner: web.AppRunner | None = None

    def _scenario(self, ref: ScenarioRef) -> Scenario:
        if isinstance(ref, Scenario):
            self._scenarios.setdefault(ref.name, ref)
            return ref
        key = os.fspath(ref)
        if key not in self._scenarios:
            scenario = load_scenario(key)
            self._scenarios[key] = scenario
            self._scenarios.setdefault(scenario.name, scenario)
        return self._scenarios[key]

    # -- the HTTP side ---------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gateway], client_max_size=12 * 1024 * 1024)
        app[SIM] = self
        for routes in (
            CceRoutes(self.world, self.account),
            IamRoutes(self.account, self.auth, lambda: self.url),
            MetadataRoutes(self.auth),
            ControlRoutes(self),
        ):
            app.router.add_routes(routes.table())
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _request_id(self) -> str:
        self._rid += 1
        return f"{self._rid_prefix}{self._rid:016x}"

    @web.middleware
    async def _gateway(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = self._request_id()
        route_name = request.match_info.route.name
        path = request.path
        try:
            if path.startswith("/_sim/"):
                response = await handler(request)
            else:
                self._counts[route_name or "unmatched"] += 1
                response = await self._serve(request, handler, route_name, rid)
        except AuthFailure as failure:
            self._auth_failures[failure.reason] += 1
            message = "Incorrect IAM authentication information: " + failure.detail
            response = gateway_error(401, "APIGW.0301", message, rid)
        except CceError as error:
            response = cce_error(error.status, error.code, error.message)
        except web.HTTPNotFound:
            message = "The API does not exist or has not been published in the environment"
            response = gateway_error(404, "APIGW.0101", message, rid)
        except web.HTTPMethodNotAllowed:
            message = "The API does not exist or has not been published in the environment"
            response = gateway_error(405, "APIGW.0101", message, rid)
        response.headers["X-Request-Id"] = rid
        return response

    async def _serve(
        self, request: web.Request, handler: Handler, route_name: str | None, rid: str
    ) -> web.StreamResponse:
        if self.faults.active:
            fault = self.faults.take(request.path)
            if fault is not None:
                injected = await self._inject(fault, rid)
                if injected is not None:
                    return injected
        if _needs_auth(route_name):
            body = await request.read()
            raw_path, _, raw_query = request.raw_path.partition("?")
            query = parse_qsl(raw_query, keep_blank_values=True)
            self.auth.check(request.method, raw_path, query, request.headers, body)
        return await handler(request)

    async def _inject(self, fault: Fault, rid: str) -> web.StreamResponse | None:
        if fault.kind == "slow":
            await self.faults.stall(fault)
            return None
        if fault.kind == "garbage":
            return web.Response(body=GARBAGE, status=fault.status, content_type="application/json")
        if fault.kind == "body":
            body = (fault.body or "").encode()
            return web.Response(body=body, status=fault.status, content_type="application/json")
        if fault.kind == "throttle":
            response = gateway_error(
                fault.status,
                "APIGW.0308",
                "The throttling threshold has been reached: policy user over ratelimit",
                rid,
            )
        else:
            code, message = CCE_CODES.get(fault.status, CCE_CODES[500])
            response = cce_error(fault.status, code, message)
        if fault.retry_after_header is not None:
            response.headers["Retry-After"] = fault.retry_after_header
        elif fault.retry_after is not None:
            response.headers["Retry-After"] = f"{fault.retry_after:g}"
        return response

    # -- the Python API --------------------------------------------------------------

    def targets(self) -> list[dict[str, Any]]:
        """One dict per workflow: name, region, project_id, cluster_id, workflow_id, api, ..."""
        return [self.world.target(wf) for wf in self.world.workflows.values()]

    async def step(self, workflow_id: str | None = None) -> dict[str, Any]:
        """Apply the next timeline step (of one workflow, or the earliest of all)."""
        if workflow_id is not None and workflow_id not in self.world.workflows:
            raise KeyError(workflow_id)
        changes = self.world.step(workflow_id)
        return {"changes": changes, "clock": round(self.clock.offset(), 3)}

    async def advance(self, seconds: float) -> dict[str, Any]:
        """Move the simulated clock forward, applying every step that falls due."""
        changes = self.world.advance(seconds)
        return {"changes": changes, "clock": round(self.clock.offset(), 3)}

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
    ) -> dict[str, Any]:
        """Inject a fault; ``token_expiry`` expires every issued token and temporary key."""
        raw: dict[str, Any] = {"kind": kind, "status": status, "count": count}
        raw.update(retry_after=retry_after, path_contains=path_contains)
        raw.update(body=body, retry_after_header=retry_after_header)
        if delay is not None:
            raw["delay"] = delay
        fault = make_fault(raw)
        if fault.kind == "token_expiry":
            return {**fault.to_json(), "expired": self.auth.expire_all()}
        self.faults.add(fault)
        return fault.to_json()

    def clear_faults(self) -> int:
        return self.faults.clear()

    def state(self) -> dict[str, Any]:
        """Clock and every workflow's phase, points and position in its timeline."""
        self.world.catch_up()
        return self.world.snapshot()

    async def add_workflows(
        self, scenario: str | os.PathLike[str], count: int
    ) -> list[dict[str, Any]]:
        """Clone ``count`` workflows of a scenario under fresh ids and clusters."""
        loaded = self._scenario(scenario)
        return [self.world.target(wf) for wf in self.world.add_clones(loaded, count)]

    async def add_cluster(
        self,
        name: str,
        *,
        api: str = "cce",
        labels: dict[str, str] | None = None,
        alias: str | None = None,
        workflows: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Create a cluster at run time, with workflows cloned from scenarios onto it.

        Each of ``workflows`` is ``{"scenario": name, "finished": bool}``: a finished one
        is upgrade history (Success, timeline not played), the others play their timeline.
        """
        if api not in ("cce", "autopilot"):
            raise ValueError("api must be cce or autopilot")
        if labels is not None and not (
            isinstance(labels, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            raise ValueError("labels must be an object of strings")
        wanted = [(self._scenario(str(w["scenario"])), bool(w.get("finished"))) for w in workflows]
        cluster = self.world.add_cluster(name, api=api, labels=labels, alias=alias)
        added = []
        for scenario, finished in wanted:
            wf = self.world.add(scenario, clone=True)
            self.world.move(wf, cluster)
            if finished:
                self.world.finish(wf)
            added.append(self.world.target(wf))
        return {"cluster": self.cluster_view(cluster.id), "targets": added}

    def cluster_view(self, cluster_id: str) -> dict[str, Any]:
        cluster = self.world.clusters[cluster_id]
        return {
            "id": cluster.id,
            "name": cluster.name,
            "api": cluster.api,
            "labels": dict(cluster.labels),
            "workflows": list(cluster.workflows),
        }

    def delete_cluster(self, cluster_id: str) -> dict[str, Any]:
        """Delete a cluster and its workflows (KeyError when there is none)."""
        view = self.cluster_view(cluster_id)
        self.world.delete_cluster(cluster_id)
        return view

    async def reset(self) -> None:
        """Back to the start: clock 0, base scenarios only, no faults, AK locks and counters
        cleared. Issued tokens and temporary keys stay valid."""
        self.world.reset()
        self.faults.clear()
        self.auth.reset_locks()
        self._counts.clear()
        self._auth_failures.clear()

    def requests(self) -> dict[str, Any]:
        return {
            "total": sum(self._counts.values()),
            "routes": dict(self._counts),
            "auth_failures": sum(self._auth_failures.values()),
            "auth_failure_reasons": dict(self._auth_failures),
        }


@contextlib.asynccontextmanager
async def start_simulator(
    scenarios: Sequence[ScenarioRef] = ("clean_upgrade",),
    speed: float = 1.0,
    autoplay: bool = True,
    host: str = "127.0.0.1",
    port: int = 0,
    account: Account = DEFAULT_ACCOUNT,
) -> AsyncIterator[Simulator]:
    """Run a simulator on ``host:port`` (0 picks a free port) for the block's duration."""
    sim = Simulator(scenarios=scenarios, speed=speed, autoplay=autoplay, account=account)
    await sim.start(host, port)
    try:
        yield sim
    finally:
        await sim.stop()


__all__ = ["SIM", "Simulator", "start_simulator"]
