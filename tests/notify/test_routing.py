"""routing.plan: tables of events, URLs, routes and silences -> planned deliveries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.notify.conftest import NOW, make_event, make_target
from watcher.core.events import Event, Severity
from watcher.core.ports import PlannedDelivery
from watcher.core.silences import Silence
from watcher.notify.routing import DEFAULT_ROUTE, Route, plan
from watcher.notify.url import NotifyUrl


def url(key: str, *tags: str) -> NotifyUrl:
    return NotifyUrl(key=key, url=f"json://localhost/{key}", tags=frozenset(tags))


CHAT = url("chat", "chat")
PAGER = url("pager", "oncall")
MAIL = url("mail", "mail", "team")
ALWAYS = url("audit", "always")
UNTAGGED = url("plain")
URLS = [CHAT, PAGER, MAIL, UNTAGGED]

QUEUED = make_event("q", "task.queued", Severity.INFO)
STARTED = make_event("s", "task.started", Severity.INFO)
SUCCEEDED = make_event("ok", "task.succeeded", Severity.SUCCESS)
FAILED = make_event("f", "task.failed", Severity.FAILURE)
EXPIRING = make_event("x", "precheck.expiring", Severity.WARNING)
DEV_FAILED = make_event(
    "df", "task.failed", Severity.FAILURE, target=make_target("dev-1", env="dev")
)


def keys(deliveries: list[PlannedDelivery]) -> dict[str, tuple[str, ...]]:
    return {d.url_key: d.event_keys for d in deliveries}


@pytest.mark.parametrize(
    ("events", "urls", "routes", "expected"),
    [
        pytest.param(
            [QUEUED, STARTED, FAILED],
            URLS,
            [],
            {k.key: ("s", "f") for k in URLS},
            id="default route: everything but task.queued to every URL",
        ),
        pytest.param([QUEUED], URLS, [], {}, id="default route: queued alone goes nowhere"),
        pytest.param([], URLS, [], {}, id="no events, no deliveries"),
        pytest.param([FAILED], [], [], {}, id="no URLs, no deliveries"),
        pytest.param(
            [STARTED, FAILED],
            URLS,
            [Route(tags=frozenset({"oncall"}), min_severity=Severity.FAILURE)],
            {"pager": ("f",)},
            id="tag selects URLs, min severity filters events",
        ),
        pytest.param(
            [STARTED, SUCCEEDED, EXPIRING],
            URLS,
            [Route(min_severity=Severity.WARNING)],
            {k.key: ("x",) for k in URLS},
            id="warning minimum drops success and info",
        ),
        pytest.param(
            [STARTED, FAILED, EXPIRING],
            URLS,
            [Route(kinds=("task.*",), tags=frozenset({"chat"}))],
            {"chat": ("s", "f")},
            id="kind glob",
        ),
        pytest.param(
            [FAILED],
            URLS,
            [Route(tags=frozenset({"chat", "mail"}))],
            {"chat": ("f",), "mail": ("f",)},
            id="several tags mean OR",
        ),
        pytest.param(
            [FAILED, DEV_FAILED],
            URLS,
            [Route(targets=("prod-*",), tags=frozenset({"oncall"}))],
            {"pager": ("f",)},
            id="target name glob",
        ),
        pytest.param(
            [FAILED, DEV_FAILED],
            URLS,
            [Route(labels={"env": "dev"}, tags=frozenset({"chat"}))],
            {"chat": ("df",)},
            id="labels must match",
        ),
        pytest.param(
            [FAILED],
            URLS,
            [Route(labels={"missing": "*"})],
            {},
            id="a label the target lacks never matches",
        ),
        pytest.param(
            [STARTED, FAILED],
            URLS,
            [
                Route(tags=frozenset({"chat"})),
                Route(kinds=("task.failed",), tags=frozenset({"chat", "oncall"})),
            ],
            {"chat": ("s", "f"), "pager": ("f",)},
            id="overlapping routes list an event once, in event order",
        ),
        pytest.param(
            [STARTED],
            [*URLS, ALWAYS],
            [Route(tags=frozenset({"oncall"}))],
            {"pager": ("s",), "audit": ("s",)},
            id="a URL tagged always is selected by every route",
        ),
        pytest.param(
            [QUEUED, STARTED],
            URLS,
            [Route(kinds=("task.queued",), tags=frozenset({"team"}))],
            {"mail": ("q",)},
            id="explicit routes replace the default route",
        ),
        pytest.param(
            [FAILED],
            URLS,
            [Route(tags=frozenset({"nobody"}))],
            {},
            id="a tag no URL carries sends nothing",
        ),
    ],
)
def test_plan(
    events: list[Event],
    urls: list[NotifyUrl],
    routes: list[Route],
    expected: dict[str, tuple[str, ...]],
) -> None:
    assert keys(plan(events, urls, routes, [], NOW)) == expected


def test_deliveries_follow_url_order() -> None:
    result = plan([FAILED], [MAIL, CHAT], [], [], NOW)
    assert [d.url_key for d in result] == ["mail", "chat"]


LATER = NOW + timedelta(hours=1)


@pytest.mark.parametrize(
    ("silence", "expected"),
    [
        pytest.param(Silence(until=LATER), (), id="a silence without matchers hides everything"),
        pytest.param(Silence(until=LATER, target="prod-*"), ("d",), id="target glob"),
        pytest.param(Silence(until=LATER, cluster_id="prod-cluster-id"), ("d",), id="cluster id"),
        pytest.param(Silence(until=LATER, workflow_id="wf-1"), ("d",), id="workflow id"),
        pytest.param(
            Silence(until=LATER, workflow_id="wf-2"), ("f", "s", "d"), id="other workflow"
        ),
        pytest.param(Silence(until=LATER, kinds=("task.failed",)), ("s",), id="kinds"),
        pytest.param(
            Silence(until=LATER, target="prod-*", kinds=("task.started",)),
            ("f", "d"),
            id="all fields must match",
        ),
        pytest.param(Silence(until=NOW, target="prod-*"), ("f", "s", "d"), id="expired at until"),
        pytest.param(
            Silence(until=NOW - timedelta(seconds=1)), ("f", "s", "d"), id="expired silence"
        ),
    ],
)
def test_silences(silence: Silence, expected: tuple[str, ...]) -> None:
    events = [
        make_event("f", "task.failed", Severity.FAILURE),
        make_event("s", "task.started", Severity.INFO),
        make_event(
            "d", "task.failed", Severity.FAILURE, target=make_target("dev-1"), workflow_id="wf-9"
        ),
    ]
    result = plan(events, [CHAT], [], [silence], NOW)
    assert keys(result).get("chat", ()) == expected


def test_default_route_shape() -> None:
    assert DEFAULT_ROUTE.matches(STARTED)
    assert not DEFAULT_ROUTE.matches(QUEUED)
    assert DEFAULT_ROUTE.selects(UNTAGGED)
