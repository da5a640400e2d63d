"""The CCE API client: the only place the watcher talks HTTP to CCE.

It builds the request paths (standard CCE under ``/api/v3``, Autopilot under
``/autopilot/v3``), asks the credential provider for the headers, reads each answer under
a size cap, turns error answers into ``watcher.core.errors`` types, and retries inside one
call only where that is safe: 5xx and transport errors with capped, jittered exponential
backoff; 429 when Retry-After is short; 401 exactly once with fresh credentials. Everything
else goes straight back to the scheduler, which owns slower backoff and alerting.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import aiohttp
import structlog
from yarl import URL

from watcher.cloud import responses
from watcher.cloud.auth import Auth, host_header
from watcher.core.backoff import full_jitter
from watcher.core.errors import (
    AuthError,
    BadResponseError,
    ServerError,
    ThrottledError,
    TransportError,
    WatcherError,
)
from watcher.core.models import (
    TERMINAL_PHASES,
    Api,
    Cluster,
    PreCheckTask,
    UpgradeTask,
    Workflow,
    item_uid,
    newest_first,
    parse_cluster_list,
    workflow_items,
)
from watcher.core.ports import Priority
from watcher.core.regions import normalise_override
from watcher.textsafe import inert

log = structlog.get_logger()

API_PREFIXES: dict[str, str] = {"cce": "/api/v3", "autopilot": "/autopilot/v3"}
DEFAULT_MAX_BODY = 4 * 1024 * 1024
# Decoding a body this large (thousands of points) takes tens of milliseconds of pure
# Python: it runs in a worker thread so the event loop keeps serving other polls.
OFFLOAD_BODY = 256 * 1024
# Answers remembered (show: per workflow, list: per cluster), least recently polled out
# first. Polls go round-robin, so a bound below the number of polled paths evicts every
# entry just before its next poll: no hit at all (at 30,000 workflow targets and the old
# bound of 20,000, every unchanged poll was parsed, diffed and committed again). An entry
# is a 16-byte digest and objects the watch holds anyway, so the bound sits above the
# largest scale measured (100,000).
MEMO_ENTRIES = 250_000

T = TypeVar("T")


class RequestLimiter(Protocol):
    """A request budget per API host (the runtime plugs in a token bucket)."""

    async def acquire(self, host: str, *, priority: Priority = Priority.IDLE) -> None:
        """Wait until one more request to ``host`` is allowed (lower priority first)."""
        ...


# on_response(host, route, status or None for a transport error, error code, seconds)
ResponseHook = Callable[[str, str, int | None, str | None, float], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries inside one call. ``attempts`` counts every try, the first included."""

    attempts: int = 3
    base: float = 0.5
    cap: float = 8.0
    jitter: Literal["full", "none"] = "full"

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0:
            raise ValueError("RetryPolicy needs attempts >= 1 and non-negative base and cap")

    def delay(self, retry: int, rand: float) -> float:
        """Seconds before retry number ``retry`` (1 = the first): the one backoff
        (watcher.core.backoff); jitter "none" is its ceiling."""
        return full_jitter(
            retry, base=self.base, cap=self.cap, rand=rand if self.jitter == "full" else 1.0
        )


def retry_delay(
    error: WatcherError, failures: int, policy: RetryPolicy, rand: float
) -> float | None:
    """Seconds before the next try after the ``failures``-th transient failure, or None when
    the error must go back to the caller now (pure; the 401 refresh is decided elsewhere)."""
    if failures >= policy.attempts:
        return None
    if isinstance(error, ThrottledError):
        if error.retry_after is None:
            return policy.delay(failures, rand)
        # A long Retry-After is the scheduler's business: it backs the whole target off.
        return error.retry_after if error.retry_after <= policy.cap else None
    if isinstance(error, ServerError | TransportError):
        return policy.delay(failures, rand)
    return None


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_id(value: str, what: str) -> str:
    """Return ``value`` when it is safe as one URL path segment, else raise ValueError."""
    if not isinstance(value, str) or not _safe_segment(value):
        raise ValueError(f"{what} {str(value)[:40]!r} is not a valid id")
    return value


@functools.lru_cache(maxsize=16384)
def _safe_segment(value: str) -> bool:
    # Every poll checks the same few ids again: remember the answer (a hot-path cost).
    return _ID.match(value) is not None


class CceClient:
    """Read-only CCE upgrade API calls for one project (see the module docstring)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        endpoint: str,
        auth: Auth,
        project_id: str,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        retry: RetryPolicy = RetryPolicy(),
        limiter: RequestLimiter | None = None,
        on_response: ResponseHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._session = session
        self._endpoint = normalise_override(endpoint)
        self._auth = auth
        self._project_id = check_id(project_id, "project id")
        self._max_body = max_body_bytes
        self._retry = retry
        self._limiter = limiter
        self._on_response = on_response
        self._sleep = sleep
        self._rand = rand
        self._memo_size = MEMO_ENTRIES
        self._shows: OrderedDict[tuple[Api, str, str], _ShowMemo] = OrderedDict()
        self._last_lists: OrderedDict[str, _ListMemo] = OrderedDict()  # by listing path
        self._slots: dict[str, asyncio.Semaphore] = {}  # by host; see _host_slot

    def __repr__(self) -> str:
        return (
            f"CceClient(endpoint={self._endpoint!r}, project_id={self._project_id!r}, "
            f"auth={self._auth.kind!r})"
        )

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def project_id(self) -> str:
        return self._project_id

    # -- API calls --------------------------------------------------------------------------

    async def show_workflow(
        self, cluster_id: str, workflow_id: str, *, api: Api, priority: Priority = Priority.IDLE
    ) -> Workflow:
        """ShowUpgradeWorkFlow. A CCE 404 raises WorkflowGoneError.

        A watched workflow is mostly unchanged between polls: the same body (by digest)
        gives back the very same object, so the caller can skip the diff by identity. The
        memo also keeps the request's URL, built and checked once per workflow. A finished
        workflow is looked at once more at most: nothing of it is kept.
        """
        key = (api, cluster_id, workflow_id)
        memo = self._shows.get(key)
        if memo is None:
            path = (
                self._cluster_path(api, cluster_id)
                + "/operation/upgradeworkflows/"
                + check_id(workflow_id, "workflow id")
            )
            memo = _ShowMemo(*self._url(path))
        else:
            self._shows.move_to_end(key)
        route = f"{api}.show_workflow"
        body = await self._fetch(route, memo.url, memo.host, workflow=True, priority=priority)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        if memo.workflow is not None and memo.digest == digest:
            return memo.workflow
        workflow = await _decode(body, route, "show_workflow", Workflow.from_api)
        if workflow.phase in TERMINAL_PHASES:
            # Looked at once more at most, then never again: keep nothing of it.
            self._shows.pop(key, None)
            return workflow
        memo.workflow, memo.digest = workflow, digest
        self._shows[key] = memo
        if len(self._shows) > self._memo_size:
            self._shows.popitem(last=False)
        return workflow

    async def list_workflows(
        self,
        cluster_id: str,
        *,
        api: Api,
        priority: Priority = Priority.IDLE,
        skip: AbstractSet[str] = frozenset(),
    ) -> tuple[Workflow, ...]:
        """ListUpgradeWorkFlows, newest first, without the items whose uid is in ``skip``.

        ``skip`` names workflows the caller is done with (finished ones): their items are
        neither parsed nor kept, so a cluster's upgrade history costs the caller a set
        entry per workflow, not a parsed object. The same body gives back the very same
        objects, and after a change every item that did not change keeps its object (the
        poller skips the diff of a workflow by identity).
        """
        path = self._cluster_path(api, cluster_id) + "/operation/upgradeworkflows"
        body = await self._get_body(api, "list_workflows", path, priority=priority)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        memo = self._last_lists.get(path)
        if memo is not None and memo.digest == digest and memo.skipped == skip:
            self._last_lists.move_to_end(path)
            return memo.workflows
        what = f"{api}.list_workflows"
        if len(body) > OFFLOAD_BODY:
            workflows, kept = await asyncio.to_thread(_listed, body, what, digest, skip, memo)
        else:
            workflows, kept = _listed(body, what, digest, skip, memo)
        self._last_lists[path] = kept
        if len(self._last_lists) > self._memo_size:
            self._last_lists.popitem(last=False)
        return workflows

    async def show_precheck(
        self, cluster_id: str, task_id: str, *, api: Api, priority: Priority = Priority.IDLE
    ) -> PreCheckTask:
        """ShowPreCheck: the task behind the workflow's PreCheck point."""
        path = (
            self._cluster_path(api, cluster_id)
            + "/operation/precheck/tasks/"
            + check_id(task_id, "task id")
        )
        data = await self._get_json(api, "show_precheck", path, priority=priority)
        return _parse("show_precheck", PreCheckTask.from_api, data)

    async def show_upgrade_task(
        self, cluster_id: str, task_id: str, *, api: Api, priority: Priority = Priority.IDLE
    ) -> UpgradeTask:
        """ShowUpgradeClusterTask: the task behind the workflow's Cluster point."""
        path = (
            self._cluster_path(api, cluster_id)
            + "/operation/upgrade/tasks/"
            + check_id(task_id, "task id")
        )
        data = await self._get_json(api, "show_upgrade_task", path, priority=priority)
        return _parse("show_upgrade_task", UpgradeTask.from_api, data)

    async def list_clusters(
        self, *, api: Api, priority: Priority = Priority.IDLE
    ) -> tuple[Cluster, ...]:
        """ListClusters of the project (no pagination exists), as the API lists them.

        Like ``list_workflows``, a cluster whose uid is no valid path segment is skipped
        (and logged): none of its calls could ever be made.
        """
        path = self._project_path(api) + "/clusters"
        data = await self._get_json(api, "list_clusters", path, priority=priority)
        listed = _parse("list_clusters", parse_cluster_list, data)
        usable = tuple(c for c in listed if _ID.match(c.uid))
        if len(usable) != len(listed):
            skipped = [inert(c.uid)[:64] for c in listed if not _ID.match(c.uid)]
            log.warning("cloud.cluster_uid_unusable", route="list_clusters", uids=skipped)
        return usable

    async def show_cluster(
        self, cluster_id: str, *, api: Api, priority: Priority = Priority.IDLE
    ) -> Cluster:
        """ShowCluster."""
        path = self._cluster_path(api, cluster_id)
        data = await self._get_json(api, "show_cluster", path, priority=priority)
        return _parse("show_cluster", Cluster.from_api, data)

    # -- plumbing ---------------------------------------------------------------------------

    def _project_path(self, api: Api) -> str:
        try:
            prefix = API_PREFIXES[api]
        except KeyError:
            raise ValueError(f"api must be 'cce' or 'autopilot', not {api!r}") from None
        return f"{prefix}/projects/{self._project_id}"

    def _cluster_path(self, api: Api, cluster_id: str) -> str:
        return f"{self._project_path(api)}/clusters/{check_id(cluster_id, 'cluster id')}"

    async def _get_json(
        self,
        api: Api,
        name: str,
        path: str,
        *,
        workflow: bool = False,
        priority: Priority = Priority.IDLE,
    ) -> dict[str, Any]:
        body = await self._get_body(api, name, path, workflow=workflow, priority=priority)
        return responses.parse_json_object(body, f"{api}.{name}")

    async def _get_body(
        self,
        api: Api,
        name: str,
        path: str,
        *,
        workflow: bool = False,
        priority: Priority = Priority.IDLE,
    ) -> bytes:
        url, host = self._url(path)
        return await self._fetch(f"{api}.{name}", url, host, workflow=workflow, priority=priority)

    def _url(self, path: str) -> tuple[URL, str]:
        # Every segment was checked by check_id, so the path needs no further encoding.
        url = URL(self._endpoint + path, encoded=True)
        return url, host_header(url)

    async def _fetch(
        self, route: str, url: URL, host: str, *, workflow: bool, priority: Priority
    ) -> bytes:
        refreshed = False
        failures = 0
        while True:
            signed = False
            try:
                if self._limiter is not None:
                    await self._limiter.acquire(host, priority=priority)
                async with self._host_slot(host):
                    headers = await self._auth.sign("GET", url, {"Accept": "application/json"}, b"")
                    signed = True
                    return await self._send(url, host, route, headers, workflow=workflow)
            except AuthError as exc:
                # Only a 401 from CCE earns a refresh; an IAM login refused (raised while
                # signing) is final, or retrying would walk toward the IAM user lock.
                if signed and exc.status == 401 and not refreshed and await self._auth.refresh():
                    refreshed = True
                    log.info("cloud.auth_refresh", route=route, auth=self._auth.kind)
                    continue
                raise
            except (ServerError, TransportError, ThrottledError) as exc:
                failures += 1
                delay = retry_delay(exc, failures, self._retry, self._rand())
                if delay is None:
                    raise
                log.info(
                    "cloud.retry",
                    route=route,
                    attempt=failures,
                    delay_s=round(delay, 3),
                    error=type(exc).__name__,
                    status=getattr(exc, "status", None),
                )
                await self._sleep(delay)

    def _host_slot(self, host: str) -> asyncio.Semaphore:
        """At most the pool's connections per host signed and sent at once.

        The limiter paces the rate, not the concurrency: when the host answers slower than
        the rate, polls queue. They queue here, as one waiter each, not inside aiohttp with
        a signed request, headers, URL and timers built (~5 KB each; 100,000 workflow
        targets queued ~2 GB there, issue 12.6). The limiter's priority order still holds:
        its token is taken first.
        """
        slot = self._slots.get(host)
        if slot is None:
            connector = self._session.connector
            per_host = connector.limit_per_host if connector is not None else 0
            slot = self._slots[host] = asyncio.Semaphore(per_host or 8)
        return slot

    async def _send(
        self, url: URL, host: str, route: str, headers: dict[str, str], *, workflow: bool
    ) -> bytes:
        started = time.monotonic()
        status: int | None = None
        code: str | None = None
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                if 200 <= status < 300:
                    return await responses.read_capped(resp, self._max_body)
                body = await responses.read_capped(resp, responses.ERROR_BODY_CAP, truncate=True)
                if status < 400:
                    raise BadResponseError(f"{route}: unexpected HTTP {status}")
                code, message, request_id = responses.parse_error_body(body, resp.headers)
                retry_after = (
                    responses.parse_retry_after(resp.headers.get("Retry-After"))
                    if status == 429
                    else None
                )
                raise responses.api_error(
                    status,
                    code,
                    f"{route}: {message}" if message else route,
                    request_id,
                    retry_after=retry_after,
                    workflow=workflow,
                    encoded_authorization_message=(
                        responses.encoded_authorization(body) if status == 403 else None
                    ),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = None
            raise TransportError(f"{route}: {_describe(exc)}") from None
        finally:
            self._report(host, route, status, code, time.monotonic() - started)

    def _report(
        self, host: str, route: str, status: int | None, code: str | None, seconds: float
    ) -> None:
        if self._on_response is None:
            return
        try:
            self._on_response(host, route, status, code, seconds)
        except Exception:  # a broken metrics hook must never fail a poll
            log.exception("cloud.metrics_hook_failed", route=route)


@dataclass(slots=True)
class _ShowMemo:
    """One shown workflow: its request URL and Host, and its last answer (a digest of the
    body and the object parsed from it; no body is kept)."""

    url: URL
    host: str
    digest: bytes = b""
    workflow: Workflow | None = None


@dataclass(frozen=True, slots=True)
class _ListMemo:
    """The last listing of one cluster: what it gave back, and each item kept as it came
    (a raw dict compares equal in microseconds; parsing one takes a fraction of a ms).

    Only unfinished workflows are kept. A finished one is returned until the caller skips
    it (a cluster's history on its first listing, a final look), and keeping those raw and
    parsed held ~10 KB per finished workflow until the cluster's next listing: 300 MB for
    1,000 clusters x 30 workflows. A listing that returned one is therefore no fast path
    (``digest`` empty): the next call parses again what it does not skip.
    """

    digest: bytes
    skipped: frozenset[str]
    workflows: tuple[Workflow, ...]
    items: dict[str, tuple[Any, Workflow]]


def _listed(
    body: bytes,
    what: str,
    digest: bytes,
    skip: AbstractSet[str],
    memo: _ListMemo | None,
) -> tuple[tuple[Workflow, ...], _ListMemo]:
    """Decode a listing: items in ``skip`` are left out unparsed, items equal to the last
    listing's keep their object, the rest are parsed (pure; run off the loop when large).
    Returns the workflows, newest first, and the memo for the next call (see ``_ListMemo``)."""
    try:
        items = workflow_items(responses.parse_json_object(body, what))
    except ValueError as exc:  # BadResponseError is no ValueError: it passes unchanged
        raise BadResponseError(f"list_workflows: unexpected body ({exc})") from None
    before = memo.items if memo is not None else {}
    kept: dict[str, tuple[Any, Workflow]] = {}
    unusable: list[str] = []
    for item in items:
        uid = item_uid(item)
        if uid is None:
            continue  # an item without a uid cannot be watched; skip it, keep the rest
        if uid in skip:
            continue
        # A uid that is no valid path segment can never be shown (check_id refuses it):
        # watching it would fail every poll of it, forever. Skip it, and say so.
        if not _safe_segment(uid):
            unusable.append(inert(uid)[:64])
            continue
        prior = before.get(uid)
        if prior is not None and prior[0] == item:
            kept[uid] = prior
            continue
        try:
            kept[uid] = (item, Workflow.from_api(item))
        except ValueError:
            continue
    if unusable:
        log.warning("cloud.workflow_uid_unusable", route="list_workflows", uids=unusable)
    workflows = newest_first(w for _, w in kept.values())
    live = {uid: pair for uid, pair in kept.items() if pair[1].phase not in TERMINAL_PHASES}
    if len(live) < len(kept):
        return workflows, _ListMemo(b"", frozenset(skip), (), live)
    return workflows, _ListMemo(digest, frozenset(skip), workflows, kept)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ClientError):
        return "timed out"
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _decode(body: bytes, what: str, route: str, parse: Callable[[Any], T]) -> T:
    """JSON body -> model; in a worker thread when the body is large (see OFFLOAD_BODY)."""

    def decode() -> T:
        return _parse(route, parse, responses.parse_json_object(body, what))

    if len(body) > OFFLOAD_BODY:
        return await asyncio.to_thread(decode)
    return decode()


def _parse(route: str, parse: Callable[[Any], T], data: dict[str, Any]) -> T:
    try:
        return parse(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BadResponseError(f"{route}: unexpected body ({first})") from None
