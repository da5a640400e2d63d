"""The status page in a real headless Chromium: graph nodes, colours, lines, countdown, live.

Uses Debian's /usr/bin/chromium driven by the ``playwright`` package (never
``playwright install``: no browser downloads). ``tests/system_deps.sh`` installs
chromium when run as root; without it this test skips locally and fails under CI.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.http.conftest import ServerFactory
from tests.http.fakes import TARGET, StaticStatus, commit, commit_and_publish, make_event
from watcher.core.events import Severity, TargetRef
from watcher.core.models import Line, Point, Workflow
from watcher.http.feed import EventFeed
from watcher.http.status import workflow_view
from watcher.store.sqlite import SqliteStore

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "page-token-123"
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this test must not skip)")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        _unavailable(
            f"{CHROMIUM} is missing: run tests/system_deps.sh as root "
            "or `sudo apt-get install -y chromium`"
        )
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is missing: pip install -e '.[test]'")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


def _wf(uid: str, phase: str, points: list[Point], lines: list[tuple[str, str]]) -> Workflow:
    return Workflow(
        uid=uid,
        cluster_version="v1.28.5-r0",
        target_version="v1.29.1-r0",
        phase=phase,
        points=tuple(points),
        lines=tuple(Line(start=a, end=b, critical=True) for a, b in lines),
    )


def _views(now: datetime, *, cluster_status: str = "Running") -> list[dict[str, Any]]:
    def ago(minutes: float) -> datetime:
        return now - timedelta(minutes=minutes)

    chain = [("PreCheck", "Snapshot"), ("Snapshot", "Cluster"), ("Cluster", "PostCheck")]
    running = _wf(
        "wf-running",
        "Running",
        [
            Point(task_type="PreCheck", status="Success", started_at=ago(50), ended_at=ago(48)),
            Point(task_type="Snapshot", status="Success", started_at=ago(40), ended_at=ago(35)),
            Point(
                task_type="Cluster",
                status=cluster_status,
                started_at=ago(30),
                ended_at=now if cluster_status == "Success" else None,
            ),
            Point(task_type="PostCheck", status="Init"),
        ],
        chain,
    )
    waiting = _wf(
        "wf-waiting",
        "Init",
        [
            Point(
                task_type="PreCheck",
                status="Success",
                started_at=ago(10),
                ended_at=ago(9),
                expires_at=now + timedelta(minutes=45),
            ),
            Point(task_type="Cluster", status="Init"),
            Point(task_type="PostCheck"),
        ],
        [("PreCheck", "Cluster"), ("Cluster", "PostCheck")],
    )
    failed = _wf(
        "wf-failed",
        "Pending",
        [
            Point(task_type="PreCheck", status="Success", started_at=ago(90), ended_at=ago(88)),
            Point(task_type="Cluster", status="Failed", started_at=ago(80), ended_at=ago(60)),
            Point(task_type="PostCheck", status="Init"),
            Point(task_type="Rollback", status="Queuing"),
            Point(task_type="Canary", status="Mystery"),
        ],
        [("PreCheck", "Cluster"), ("Cluster", "PostCheck"), ("Cluster", "Rollback")],
    )
    other = TargetRef(name="staging", region="eu-west-101", project_id="p" * 32, cluster_id="c-2")
    return [
        workflow_view(
            key="k-run", target=TARGET, workflow=running, now=now, display_name="Prod EU"
        ),
        workflow_view(
            key="k-wait", target=TARGET, workflow=waiting, now=now, cluster_name="prod-2"
        ),
        workflow_view(
            key="k-fail",
            target=other,
            workflow=failed,
            now=now,
            display_name=HOSTILE,
            last_error="HTTP 503 from CCE <b>not bold</b>",
        ),
    ]


async def test_status_page_draws_graphs_and_updates_live(
    browser: Any,
    make_server: ServerFactory,
    status: StaticStatus,
    store: SqliteStore,
    feed: EventFeed,
) -> None:
    now = datetime.now(UTC)
    status.views = _views(now)
    await commit(
        store,
        [
            make_event(1, kind="workflow.detected", message="Upgrade workflow found"),
            make_event(2, kind="task.failed", severity=Severity.FAILURE, message="Cluster failed"),
        ],
    )
    server = await make_server(token=TOKEN)
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/?token={TOKEN}")

    running = page.locator('.wf[data-workflow-id="wf-running"]')
    await running.wait_for()
    await page.wait_for_selector('#conn[data-state="live"]')

    # Nodes in graph order, coloured by status.
    nodes = running.locator(".node")
    assert await nodes.evaluate_all("ns => ns.map(n => n.dataset.taskType)") == [
        "PreCheck",
        "Snapshot",
        "Cluster",
        "PostCheck",
    ]
    cluster = running.locator('.node[data-task-type="Cluster"]')
    assert await cluster.get_attribute("data-status") == "Running"
    assert await cluster.get_attribute("data-color") == "active"
    failed = page.locator('.wf[data-workflow-id="wf-failed"]')
    colours = await failed.locator(".node").evaluate_all(
        "ns => Object.fromEntries(ns.map(n => [n.dataset.taskType, n.dataset.color]))"
    )
    assert colours == {
        "PreCheck": "success",
        "Cluster": "failed",
        "PostCheck": "init",
        "Rollback": "active",
        "Canary": "unknown",
    }
    fill = await failed.locator('.node[data-task-type="Cluster"] rect').evaluate(
        "r => getComputedStyle(r).fill"
    )
    assert fill == "rgb(217, 48, 37)"
    # A node the API left without a status is drawn as Init.
    waiting = page.locator('.wf[data-workflow-id="wf-waiting"]')
    assert (
        await waiting.locator('.node[data-task-type="PostCheck"]').get_attribute("data-status")
        == "Init"
    )

    # Lines, with their ends.
    assert await running.locator(".line").count() == 3
    assert await failed.locator('.line[data-start="Cluster"][data-end="Rollback"]').count() == 1

    # Durations and the ticking pre-check countdown.
    dur = await running.locator('.node[data-task-type="Snapshot"] .t-dur').text_content()
    assert dur == "5m"  # the one duration format: no zero parts
    countdown = waiting.locator(".countdown")
    first = await countdown.text_content()
    assert first is not None and re.fullmatch(r"Pre-check expires in 4[45]m( \d{1,2}s)?", first)
    await page.wait_for_function(
        "t => document.querySelector('.countdown').textContent !== t", arg=first, timeout=3000
    )
    assert await countdown.get_attribute("data-state") == "pending"

    # Phases and versions; API text shown as text, never markup.
    assert await running.locator(".phase").text_content() == "Running"
    assert await running.locator(".versions").text_content() == "v1.28.5-r0 → v1.29.1-r0"
    assert await failed.locator(".wf-title").text_content() == HOSTILE
    assert await page.locator("img").count() == 0
    assert await failed.locator(".error").text_content() == "HTTP 503 from CCE <b>not bold</b>"
    assert await page.title() == "CCE upgrade watcher"

    # The latest events, newest first.
    kinds = await page.locator("#events li").evaluate_all("ls => ls.map(l => l.dataset.kind)")
    assert kinds == ["task.failed", "workflow.detected"]

    # Live: the daemon moves on, commits and publishes; the page follows.
    status.views = _views(now, cluster_status="Success")
    [live] = await commit_and_publish(
        store, feed, [make_event(3, kind="task.succeeded", message="Cluster upgraded")]
    )
    await page.wait_for_selector(f'#events li[data-seq="{live.seq}"]', timeout=5000)
    await page.wait_for_selector(
        '.wf[data-workflow-id="wf-running"] .node[data-task-type="Cluster"][data-status="Success"]',
        timeout=5000,
    )
    assert (
        await page.locator("#events li").first.locator(".ev-msg").text_content()
        == "Cluster upgraded"
    )

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status_page.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert errors == []


async def test_repeated_task_types_and_a_broken_view_never_blank_the_page(
    browser: Any, make_server: ServerFactory, status: StaticStatus
) -> None:
    """Issue 7: two points of one task type (a retried upgrade) are both drawn; a view the
    page cannot draw gets a card saying so; the other cards and the target errors stay."""
    now = datetime.now(UTC)
    good = _views(now)[0]
    twice = workflow_view(
        key="k-twice",
        target=TARGET,
        workflow=_wf(
            "wf-twice",
            "Running",
            [
                Point(task_type="PreCheck", status="Success", started_at=now, ended_at=now),
                Point(task_type="Cluster", status="Failed", started_at=now, ended_at=now),
                Point(task_type="Cluster", status="Running", started_at=now),
            ],
            [("PreCheck", "Cluster")],
        ),
        now=now,
    )
    odd: Any = {"workflow_id": "wf-odd", "points": 5, "target": 7}
    status.views = [twice, None, odd, good]  # type: ignore[list-item]
    status.target_views = [
        {
            "name": "prod",
            "consecutive_failures": 3,
            "failing_since": now.isoformat(),
            "last_error_kind": "store",
            "unsaved_error": "state store: OperationalError: database or disk is full",
            "discovery_error": None,
        },
        {"name": "calm", "consecutive_failures": 0, "discovery_error": None},
    ]
    server = await make_server()
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server.url + "/")
    await page.locator('.wf[data-workflow-id="wf-running"]').wait_for()

    twice_card = page.locator('.wf[data-workflow-id="wf-twice"]')
    slots = await twice_card.locator(".node").evaluate_all(
        "ns => ns.map(n => [n.dataset.taskType, n.dataset.slot, n.dataset.status])"
    )
    assert slots == [
        ["PreCheck", "PreCheck", "Success"],
        ["Cluster", "Cluster", "Failed"],
        ["Cluster", "Cluster#2", "Running"],
    ]
    assert await page.locator(".wf").count() == 4  # nothing blanked
    broken = page.locator('.wf[data-broken="true"]')
    assert await broken.count() == 1
    assert "could not be drawn" in (await broken.locator(".error").text_content() or "")
    assert await page.locator('.wf[data-workflow-id="wf-odd"] .node').count() == 0
    assert await page.locator(".wf.empty, .empty.error").count() == 0

    banner = page.locator('#targets .target[data-target="prod"]')
    assert await banner.get_attribute("data-failures") == "3"
    assert "(store)" in (await banner.locator(".wf-title").text_content() or "")
    assert await banner.locator(".error").text_content() == (
        "state store: OperationalError: database or disk is full"
    )
    assert await page.locator('#targets .target[data-target="calm"]').count() == 0
    assert errors == []
