"""The HTTP surface against a real server on loopback, a real SqliteStore and a real feed."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import load_fixture
from tests.http.conftest import ServerFactory
from tests.http.fakes import (
    T0,
    TARGET,
    SseReader,
    StaticStatus,
    commit,
    commit_and_publish,
    make_event,
)
from watcher.core.models import Workflow
from watcher.core.ports import PlannedDelivery
from watcher.http.feed import EventFeed
from watcher.http.server import HttpServer
from watcher.http.status import POINT_VIEW_KEYS, WORKFLOW_VIEW_KEYS, workflow_view
from watcher.runtime.metrics import Metrics
from watcher.store.sqlite import SqliteStore

STREAM = "/api/v1/events/stream"


async def get_json(client: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with client.get(url, **kwargs) as resp:
        return resp.status, await resp.json(), resp.headers


class TestProbes:
    async def test_healthz_ok(self, server: HttpServer, client: aiohttp.ClientSession) -> None:
        status, body, _ = await get_json(client, server.url + "/healthz")
        assert (status, body) == (200, {"status": "ok"})

    async def test_healthz_unhealthy_says_why(
        self, server: HttpServer, client: aiohttp.ClientSession, status: StaticStatus
    ) -> None:
        status.health = (False, "scheduler stopped")
        code, body, _ = await get_json(client, server.url + "/healthz")
        assert code == 503 and body == {"status": "unhealthy", "reason": "scheduler stopped"}

    async def test_readyz_ok(self, server: HttpServer, client: aiohttp.ClientSession) -> None:
        status, body, _ = await get_json(client, server.url + "/readyz")
        assert (status, body) == (200, {"status": "ready"})

    async def test_readyz_lists_reasons(
        self, server: HttpServer, client: aiohttp.ClientSession, status: StaticStatus
    ) -> None:
        status.readiness = (False, ["first poll round not done"])
        code, body, _ = await get_json(client, server.url + "/readyz")
        assert code == 503
        assert body == {"status": "not ready", "reasons": ["first poll round not done"]}

    async def test_readyz_notices_an_unreachable_store(
        self, server: HttpServer, client: aiohttp.ClientSession, store: SqliteStore
    ) -> None:
        await store.close()
        code, body, _ = await get_json(client, server.url + "/readyz")
        assert code == 503 and "store unreachable" in body["reasons"]


class TestMetrics:
    async def test_metrics_exposes_the_registry_with_fresh_outbox_gauges(
        self,
        server: HttpServer,
        client: aiohttp.ClientSession,
        store: SqliteStore,
        metrics: Metrics,
    ) -> None:
        metrics.poll_finished("prod-eu", "ok", 0.2)
        metrics.event_emitted("task.started", "info")
        event = make_event(1)
        await store.commit_poll(
            "wf-key", None, [event], [PlannedDelivery("slack-ops", (event.dedup_key,))]
        )
        async with client.get(server.url + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        for name in (
            "cce_watcher_polls_total",
            "cce_watcher_poll_duration_seconds",
            "cce_watcher_events_total",
            "cce_watcher_outbox_pending",
            "cce_watcher_outbox_oldest_pending_age_seconds",
            "cce_watcher_dead_letters",
            "cce_watcher_scheduler_up",
        ):
            assert name in text
        assert "cce_watcher_outbox_pending 1.0" in text

    async def test_metrics_is_open_even_with_a_token(
        self, make_server: ServerFactory, client: aiohttp.ClientSession
    ) -> None:
        server = await make_server(token="s3cret")
        for path in ("/metrics", "/healthz", "/readyz", "/"):
            async with client.get(server.url + path) as resp:
                assert resp.status == 200, path


class TestWorkflows:
    async def test_workflows_returns_the_status_source_views(
        self,
        server: HttpServer,
        client: aiohttp.ClientSession,
        status: StaticStatus,
        seed_workflow_raw: dict[str, Any],
    ) -> None:
        wf = Workflow.from_api(seed_workflow_raw)
        status.views = [workflow_view(key="k1", target=TARGET, workflow=wf, now=T0)]
        code, body, _ = await get_json(client, server.url + "/api/v1/workflows")
        assert code == 200
        [view] = body["workflows"]
        assert set(view) == WORKFLOW_VIEW_KEYS
        assert view["workflow_id"] == wf.uid and view["phase"] == "Pending"
        assert [p["task_type"] for p in view["points"]] == [
            "PreCheck",
            "Snapshot",
            "Cluster",
            "PostCheck",
        ]
        assert all(set(p) == POINT_VIEW_KEYS for p in view["points"])
        assert view["lines"][0] == {"start": "PreCheck", "end": "Cluster", "critical": None}
        assert view["points"][2]["duration_s"] == pytest.approx(545.22, abs=0.01)
        # Cluster has started (Failed), so the pre-check expiry no longer matters.
        assert view["precheck_expires_at"] is None


class TestEvents:
    async def test_events_without_cursor_are_the_latest_then_pages_follow(
        self, server: HttpServer, client: aiohttp.ClientSession, store: SqliteStore
    ) -> None:
        stored = await commit(store, [make_event(n) for n in range(1, 6)])
        seqs = [s.seq for s in stored]
        url = server.url + "/api/v1/events"
        _, body, _ = await get_json(client, url, params={"limit": "2"})
        assert [e["seq"] for e in body["events"]] == seqs[-2:]
        assert body["next"] == seqs[-1]

        _, body, _ = await get_json(client, url, params={"after": str(seqs[0]), "limit": "2"})
        assert [e["seq"] for e in body["events"]] == seqs[1:3]
        _, body, _ = await get_json(client, url, params={"after": str(body["next"])})
        assert [e["seq"] for e in body["events"]] == seqs[3:]
        _, body, _ = await get_json(client, url, params={"after": str(body["next"])})
        assert body == {"events": [], "next": seqs[-1]}

    async def test_events_are_cloudevents(
        self, server: HttpServer, client: aiohttp.ClientSession, store: SqliteStore
    ) -> None:
        [stored] = await commit(store, [make_event(1, kind="task.failed")])
        _, body, _ = await get_json(client, server.url + "/api/v1/events")
        [ce] = body["events"]
        assert ce["specversion"] == "1.0"
        assert ce["id"] == stored.event.id
        assert ce["source"] == "cce-upgrade-watcher/prod-eu"
        assert ce["type"] == "com.huaweicloud.cce.upgrade.task.failed"
        assert ce["time"] == stored.event.observed_at.isoformat()
        assert ce["subject"] == "wf-1"
        assert ce["datacontenttype"] == "application/json"
        assert ce["data"] == stored.event.to_dict()

    @pytest.mark.parametrize("query", ["after=x", "after=-1", "limit=0", "limit=abc"])
    async def test_bad_paging_parameters_are_400(
        self, server: HttpServer, client: aiohttp.ClientSession, query: str
    ) -> None:
        async with client.get(server.url + "/api/v1/events?" + query) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()


class TestToken:
    @pytest.mark.parametrize("path", ["/api/v1/workflows", "/api/v1/events", STREAM])
    async def test_api_needs_the_bearer_token(
        self, make_server: ServerFactory, client: aiohttp.ClientSession, path: str
    ) -> None:
        server = await make_server(token="s3cret")
        async with client.get(server.url + path) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        bad = {"Authorization": "Bearer nope"}
        async with client.get(server.url + path, headers=bad) as resp:
            assert resp.status == 401
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
            assert "s3cret" not in await resp.text()

    async def test_right_token_is_accepted(
        self, make_server: ServerFactory, client: aiohttp.ClientSession
    ) -> None:
        server = await make_server(token="s3cret")
        good = {"Authorization": "Bearer s3cret"}
        async with client.get(server.url + "/api/v1/workflows", headers=good) as resp:
            assert resp.status == 200

    async def test_query_token_is_for_the_stream_only(
        self, make_server: ServerFactory, client: aiohttp.ClientSession
    ) -> None:
        server = await make_server(token="s3cret")
        async with client.get(server.url + "/api/v1/workflows?token=s3cret") as resp:
            assert resp.status == 401
        async with client.get(server.url + STREAM + "?token=s3cret") as resp:
            assert resp.status == 200
            frame = await SseReader(resp).next_event()
            assert frame is not None and frame.event == "hello"

    def test_an_empty_token_is_refused(self, store: SqliteStore, feed: EventFeed) -> None:
        from prometheus_client import CollectorRegistry

        from watcher.http.server import build_app

        with pytest.raises(ValueError, match="token"):
            build_app(
                store=store,
                feed=feed,
                status=StaticStatus(),
                metrics_registry=CollectorRegistry(),
                token="",
            )


class TestPage:
    async def test_page_is_served_self_contained(
        self, server: HttpServer, client: aiohttp.ClientSession
    ) -> None:
        async with client.get(server.url + "/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
            html = await resp.text()
        assert "<svg" in html or "createElementNS" in html
        for needle in ('src="http', "src='http", 'href="http', "@import", "innerHTML"):
            assert needle not in html


class TestStream:
    async def test_live_events_arrive_as_cloudevents(
        self,
        server: HttpServer,
        client: aiohttp.ClientSession,
        store: SqliteStore,
        feed: EventFeed,
    ) -> None:
        async with client.get(server.url + STREAM) as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            reader = SseReader(resp)
            hello = await reader.next_event()
            assert hello is not None and hello.event == "hello" and hello.id == "0"
            stored = await commit_and_publish(
                store, feed, [make_event(1), make_event(2, kind="task.succeeded")]
            )
            for expected in stored:
                frame = await reader.next_event()
                assert frame is not None
                assert frame.id == str(expected.seq)
                assert frame.event == expected.event.kind
                ce = frame.json()
                assert ce["specversion"] == "1.0" and ce["id"] == expected.event.id
                assert ce["data"]["message"] == expected.event.message

    async def test_reconnect_with_last_event_id_misses_none_and_repeats_none(
        self,
        server: HttpServer,
        client: aiohttp.ClientSession,
        store: SqliteStore,
        feed: EventFeed,
    ) -> None:
        received: list[int] = []
        async with client.get(server.url + STREAM) as resp:
            reader = SseReader(resp)
            await reader.next_event()  # hello
            await commit_and_publish(store, feed, [make_event(1), make_event(2)])
            for _ in range(2):
                frame = await reader.next_event()
                assert frame is not None and frame.id is not None
                received.append(int(frame.id))
        # Disconnected: three more are committed and published to nobody.
        await commit_and_publish(store, feed, [make_event(n) for n in (3, 4, 5)])
        # Committed but not yet published when the client comes back (the runtime
        # publishes after its commit): the replay has it, the feed then repeats it.
        late = await commit(store, [make_event(6)])
        headers = {"Last-Event-ID": str(received[-1])}
        async with client.get(server.url + STREAM, headers=headers) as resp:
            reader = SseReader(resp)
            for _ in range(4):
                frame = await reader.next_event()
                assert frame is not None and frame.id is not None
                received.append(int(frame.id))
            feed.publish(late)  # already sent from the backlog: must be skipped
            await commit_and_publish(store, feed, [make_event(7)])
            frame = await reader.next_event()
            assert frame is not None and frame.id is not None
            received.append(int(frame.id))
        all_seqs = [s.seq for s in await store.recent_events(after_seq=0, limit=100)]
        assert received == all_seqs
        assert len(received) == 7

    async def test_resume_from_an_empty_store_gets_everything_since(
        self, server: HttpServer, client: aiohttp.ClientSession, store: SqliteStore
    ) -> None:
        """The hello of an empty store has id 0; resuming from 0 replays all events."""
        async with client.get(server.url + STREAM) as resp:
            hello = await SseReader(resp).next_event()
            assert hello is not None and hello.id == "0"
        stored = await commit(store, [make_event(n) for n in (1, 2, 3)])
        async with client.get(server.url + STREAM, headers={"Last-Event-ID": "0"}) as resp:
            reader = SseReader(resp)
            ids = []
            for _ in range(3):
                frame = await reader.next_event()
                assert frame is not None
                ids.append(frame.id)
        assert ids == [str(s.seq) for s in stored]

    async def test_query_last_event_id_also_resumes(
        self,
        server: HttpServer,
        client: aiohttp.ClientSession,
        store: SqliteStore,
    ) -> None:
        stored = await commit(store, [make_event(n) for n in (1, 2, 3)])
        url = f"{server.url}{STREAM}?last_event_id={stored[0].seq}"
        async with client.get(url) as resp:
            reader = SseReader(resp)
            ids = []
            for _ in range(2):
                frame = await reader.next_event()
                assert frame is not None
                ids.append(frame.id)
        assert ids == [str(s.seq) for s in stored[1:]]

    async def test_heartbeat_comments_keep_the_stream_alive(
        self, make_server: ServerFactory, client: aiohttp.ClientSession
    ) -> None:
        server = await make_server(heartbeat_s=0.05)
        async with client.get(server.url + STREAM) as resp:
            reader = SseReader(resp)
            comments: list[str] = []
            while len(comments) < 2:
                frame = await reader.next(timeout=2)
                assert frame is not None
                if frame.comment is not None:
                    comments.append(frame.comment)
        assert comments == ["ping", "ping"]

    async def test_slow_subscriber_is_told_to_reconnect(
        self,
        make_server: ServerFactory,
        client: aiohttp.ClientSession,
        store: SqliteStore,
    ) -> None:
        tiny = EventFeed(max_queue=2)
        server = await make_server(feed=tiny)
        async with client.get(server.url + STREAM) as resp:
            reader = SseReader(resp)
            await reader.next_event()  # hello
            stored = await commit(store, [make_event(n) for n in range(1, 6)])
            tiny.publish(stored)  # five at once into a queue of two
            kinds = []
            while True:
                frame = await reader.next_event()
                if frame is None:
                    break
                kinds.append(frame.event)
        assert kinds == ["task.started", "task.started", "reconnect"]

    async def test_stop_with_an_open_stream_is_prompt_and_says_bye(
        self, make_server: ServerFactory, client: aiohttp.ClientSession
    ) -> None:
        server = await make_server()
        async with client.get(server.url + STREAM) as resp:
            reader = SseReader(resp)
            await reader.next_event()  # hello: the stream is open
            started = time.monotonic()
            stopping = asyncio.create_task(server.stop())
            bye = await reader.next_event()
            await stopping
            elapsed = time.monotonic() - started
        assert bye is not None and bye.event == "bye"
        assert elapsed < 1.0

    async def test_feed_close_ends_streams(
        self,
        server: HttpServer,
        client: aiohttp.ClientSession,
        feed: EventFeed,
    ) -> None:
        async with client.get(server.url + STREAM) as resp:
            reader = SseReader(resp)
            await reader.next_event()
            feed.close()
            bye = await reader.next_event()
            assert bye is not None and bye.event == "bye"
            assert await reader.next_event() is None

    async def test_bad_last_event_id_is_400(
        self, server: HttpServer, client: aiohttp.ClientSession
    ) -> None:
        async with client.get(server.url + STREAM, headers={"Last-Event-ID": "abc"}) as resp:
            assert resp.status == 400


def test_seed_fixture_makes_a_json_ready_view() -> None:
    """workflow_view output survives json round trips unchanged."""
    wf = Workflow.from_api(load_fixture("seed_workflow.json"))
    view = workflow_view(key="k", target=TARGET, workflow=wf, now=T0)
    assert json.loads(json.dumps(view)) == view
