"""The status page of a real daemon with a token, in headless Chromium: the token prompt
(kept for the tab's session), the acknowledge button, the silences list, a failing target
marked stale and the header degraded, and every time in one named zone.

The daemon runs in-process on the simulator (tests/e2e/harness.py) with its HTTP server;
the browser is Debian's chromium driven by playwright, as in test_status_page_browser.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from tests.e2e.harness import free_port, running
from tests.http.test_status_page_browser import ARTIFACTS, browser  # noqa: F401 - the fixture

TOKEN = "ops-page-token-0123456789"
ZONE = "Asia/Shanghai"


def configure(raw: dict[str, Any]) -> None:
    raw["http"] = {"enabled": True, "listen": f"127.0.0.1:{free_port()}", "token": TOKEN}


async def test_token_prompt_ack_button_silences_stale_and_zone(
    browser: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    async with running(tmp_path, ["cluster_fails_rollback"], configure=configure) as h:
        await h.settle()
        assert h.daemon.http is not None
        url = h.daemon.http.url
        context = await browser.new_context(
            timezone_id=ZONE, viewport={"width": 1400, "height": 900}
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        # No token yet: the page says what to do instead of an HTTP error.
        await page.goto(url + "/")
        form = page.locator("#token-form")
        await form.wait_for(state="visible")
        msg = await page.locator("#auth-msg").text_content()
        assert msg is not None and "http.token" in msg and "this browser tab only" in msg

        # A wrong token is rejected and the prompt says so.
        await page.fill("#token-input", "not-the-token-at-all")
        await page.click("#token-form button[type=submit]")
        await page.wait_for_function(
            "() => document.getElementById('auth-msg').textContent.includes('rejected')"
        )
        assert await page.evaluate("sessionStorage.length") == 0

        # The right one: the page loads and keeps it for this tab's session.
        await page.fill("#token-input", TOKEN)
        await page.click("#token-form button[type=submit]")
        card = page.locator(".wf").first
        await card.wait_for()
        assert await form.is_hidden()
        await page.reload()
        await card.wait_for()
        await page.wait_for_selector('#conn[data-state="live"]')
        assert await form.is_hidden()  # asked once per session
        stored = await page.evaluate("Object.values(sessionStorage)")
        assert stored == [TOKEN]
        assert TOKEN not in page.url

        # Times in one zone, named in the header.
        tz = await page.locator("#tz").text_content()
        assert tz is not None and tz.startswith(f"times in {ZONE}") and "GMT+8" in tz
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{url}/api/v1/events?limit=5", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as resp,
        ):
            last = (await resp.json())["events"][-1]
        shown = await page.locator(f'#events li[data-seq="{last["seq"]}"] .ev-time').text_content()
        expected = datetime.fromisoformat(last["time"]).astimezone(ZoneInfo(ZONE))
        assert shown == expected.strftime("%Y-%m-%d %H:%M:%S")
        assert await page.locator("#health").get_attribute("data-state") == "ok"

        # Acknowledge from the card.
        await card.locator(".ack-btn").click()
        await card.locator(".ack-by").fill("alice")
        await card.locator(".ack-note").fill("retrying after lunch")
        await card.locator(".ack-for").select_option("8h")
        await card.locator(".ack-submit").click()
        ack = page.locator(".wf .ack").first
        await ack.wait_for(timeout=5000)
        text = await ack.text_content()
        assert text is not None
        assert text.startswith("acknowledged by alice: retrying after lunch · until ")
        assert re.search(r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", text)
        (key,) = h.daemon.ops.workflow_acks()
        assert h.daemon.ops.workflow_acks()[key].note == "retrying after lunch"

        # A silence added over the API is listed.
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{url}/api/v1/silences",
                json={"kinds": ["task.*"], "creator": "bob", "comment": "noisy", "for": "1h"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as resp,
        ):
            assert resp.status == 201
        await page.reload()
        item = page.locator('#silences li[data-silence-id="1"]')
        await item.wait_for()
        assert await item.get_attribute("data-active") == "true"
        listed = await item.text_content()
        assert listed is not None and "kinds task.*" in listed and "bob: noisy" in listed

        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "status_page_ops.png"), full_page=True)

        # The target starts failing: its card is stale, the header degraded.
        h.sim.add_fault("status", status=503)
        await h.wait_polled()
        await page.reload()
        await page.wait_for_selector('.wf[data-stale="true"] .stale-badge')
        health = page.locator("#health")
        assert await health.get_attribute("data-state") == "degraded"
        health_text = await health.text_content()
        assert health_text is not None and health_text.startswith("degraded")
        h.sim.clear_faults()
        await h.wait_polled()
        await page.reload()
        await page.wait_for_selector('.wf[data-stale="false"]')
        assert await health.get_attribute("data-state") == "ok"

        # A token that stops working (rotated): the prompt comes back and says why.
        await page.evaluate("sessionStorage.setItem('cce-upgrade-watcher.token', 'old-token-xx')")
        await page.reload()
        await form.wait_for(state="visible")
        msg = await page.locator("#auth-msg").text_content()
        assert msg is not None and "rejected" in msg
        assert errors == []
        await context.close()
