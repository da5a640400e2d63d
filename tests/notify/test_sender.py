"""AppriseSender against real local services: webhook, SMTP, console, failures, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
from email.message import EmailMessage

import pytest
from structlog.testing import capture_logs

from tests.notify.conftest import Mailbox, Receiver, free_port, make_event
from watcher.core.errors import ConfigError
from watcher.core.events import Severity
from watcher.core.ports import RenderedMessage, Sender
from watcher.notify import targets
from watcher.notify.sender import AppriseSender
from watcher.notify.templates import Renderer
from watcher.notify.url import NotifyUrl


def _sender(*urls: NotifyUrl, **kwargs: object) -> AppriseSender:
    return AppriseSender(list(urls), **kwargs)  # type: ignore[arg-type]


def _html_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def _text_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


class TestDelivery:
    async def test_json_webhook_receives_title_message_and_type(self, receiver: Receiver) -> None:
        url = targets.parse_url(f"json://127.0.0.1:{receiver.port}/hook", name="hook")
        with _sender(url) as sender:
            typed: Sender = sender  # AppriseSender satisfies the port
            assert typed is sender
            result = await sender.send(
                "hook",
                title="[FAILURE] prod: task failed",
                body="line 1\nline 2",
                severity=Severity.FAILURE,
            )
        assert result.ok and result.error is None
        [request] = receiver.requests
        payload = json.loads(request["body"])
        assert request["path"] == "/hook"
        assert payload["title"] == "[FAILURE] prod: task failed"
        assert payload["message"] == "line 1\nline 2"
        assert payload["type"] == "failure"

    async def test_mailto_delivers_subject_and_text(self, smtp: Mailbox) -> None:
        url = targets.parse_url(
            f"mailto://127.0.0.1:{smtp.port}?from=watcher@example.com&to=ops@example.com",
            name="mail",
        )
        assert url.flavor == "email"
        with _sender(url) as sender:
            result = await sender.send(
                "mail",
                title="[SUCCESS] prod: upgraded",
                body="All done.",
                severity=Severity.SUCCESS,
            )
        assert result.ok, result.error
        [msg] = smtp.messages
        assert msg["Subject"] == "[SUCCESS] prod: upgraded"
        assert "ops@example.com" in msg["To"]
        assert "All done." in _text_part(msg)

    @pytest.mark.parametrize("fmt", ["html", None])
    async def test_html_injection_never_arrives_as_markup(
        self, smtp: Mailbox, fmt: str | None
    ) -> None:
        """TEXT bodies are escaped in an HTML mail part, or sent as text/plain only."""
        extra = f"&format={fmt}" if fmt else ""
        url = targets.parse_url(
            f"mailto://127.0.0.1:{smtp.port}?from=watcher@example.com&to=ops@example.com{extra}",
            name="mail",
        )
        event = make_event(message="boom <script>alert(1)</script>")
        message = Renderer().render([event], "email")
        with _sender(url) as sender:
            result = await sender.send(
                "mail", title=message.title, body=message.body, severity=message.severity
            )
        assert result.ok, result.error
        [msg] = smtp.messages
        html_part = msg.get_body(preferencelist=("html",))
        if fmt == "html":
            html = _html_part(msg)
            assert "<script>" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        else:
            assert html_part is None
            assert "<script>alert(1)</script>" in _text_part(msg)

    async def test_console_prints_title_and_body(self, capfd: pytest.CaptureFixture[str]) -> None:
        url = targets.parse_url("console://", name="console")
        with _sender(url) as sender:
            result = await sender.send(
                "console",
                title="[WARNING] prod: pre-check expires",
                body="in 15 min",
                severity=Severity.WARNING,
            )
        assert result.ok
        out = capfd.readouterr().out
        assert "[WARNING] prod: pre-check expires" in out
        assert "in 15 min" in out

    async def test_each_url_gets_its_own_result(self, receiver: Receiver) -> None:
        good = targets.parse_url(f"json://127.0.0.1:{receiver.port}/ok", name="good")
        dead = targets.parse_url(f"json://127.0.0.1:{free_port()}/x?cto=1", name="dead")
        with _sender(good, dead) as sender:
            ok, failed = await asyncio.gather(
                sender.send("good", title="t", body="b", severity=Severity.INFO),
                sender.send("dead", title="t", body="b", severity=Severity.INFO),
            )
        assert ok.ok and not failed.ok
        assert [r["path"] for r in receiver.requests] == ["/ok"]

    async def test_unknown_key_is_a_failure_not_an_exception(self) -> None:
        with _sender() as sender:
            result = await sender.send("nope", title="t", body="b", severity=Severity.INFO)
        assert not result.ok and "nope" in (result.error or "")


class TestFailures:
    async def test_http_500_is_a_failure_with_a_short_reason(self, receiver: Receiver) -> None:
        receiver.status = 500
        url = targets.parse_url(f"json://127.0.0.1:{receiver.port}/hook", name="hook")
        with _sender(url) as sender:
            result = await sender.send("hook", title="t", body="b", severity=Severity.INFO)
        assert not result.ok
        assert result.error and "500" in result.error and len(result.error) <= 300

    async def test_receiver_down_fails_quickly(self) -> None:
        url = targets.parse_url(f"json://127.0.0.1:{free_port()}/hook?cto=2", name="down")
        with _sender(url) as sender:
            result = await asyncio.wait_for(
                sender.send("down", title="t", body="b", severity=Severity.INFO), timeout=10
            )
        assert not result.ok
        assert result.error and "connection" in result.error.lower()

    async def test_authorization_header_secret_never_leaks(
        self, receiver: Receiver, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The secret reaches the receiver as a header, but no error or log line."""
        receiver.status = 401
        caplog.set_level(1)  # apprise's TRACE level prints the parsed URL and headers
        raw = (
            f"json://127.0.0.1:{receiver.port}/hook"
            "?+Authorization=Bearer%20SECRET&:token=PAYLOADSECRET"
        )
        with capture_logs() as structured:
            url = targets.parse_url(raw, name="hook")
            with _sender(url) as sender:
                result = await sender.send("hook", title="t", body="b", severity=Severity.INFO)
                outcomes = await sender.test_all()
        assert receiver.requests[0]["headers"]["Authorization"] == "Bearer SECRET"
        assert not result.ok and result.error
        texts = [result.error, repr(result), url.display, repr(url), repr(outcomes)]
        texts += [r.getMessage() for r in caplog.records]
        texts += [repr(entry) for entry in structured]
        for text in texts:
            assert "SECRET" not in text
            assert "PAYLOADSECRET" not in text
        assert any(e["event"] == "notify.failed" for e in structured)

    async def test_hanging_receiver_does_not_block_the_loop(self, receiver: Receiver) -> None:
        receiver.delay = 2.0
        url = targets.parse_url(f"json://127.0.0.1:{receiver.port}/hook?rto=0.5&cto=1", name="slow")
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        with _sender(url) as sender:
            task = asyncio.create_task(ticker())
            result = await sender.send("slow", title="t", body="b", severity=Severity.INFO)
            stop.set()
            await task
        assert not result.ok
        # 0.5 s of read timeout at 10 ms per tick: a blocked loop would tick once or twice.
        assert ticks >= 10


class TestConstruction:
    def test_storage_path_and_app_id(self, tmp_path: object) -> None:
        url = targets.parse_url("console://", name="c")
        with _sender(url, storage_path=tmp_path) as sender:
            assert sender.urls == [url]
            assert sender._asset.app_id == "cce-upgrade-watcher"
            assert str(sender._asset.storage_path) == str(tmp_path)

    def test_duplicate_key_is_a_config_error(self) -> None:
        url = targets.parse_url("console://", name="c")
        with pytest.raises(ConfigError, match="'c'"):
            _sender(url, url)

    def test_close_removes_the_log_filter(self) -> None:
        before = list(logging.getLogger("apprise").filters)
        sender = _sender(targets.parse_url("console://", name="c"))
        assert len(logging.getLogger("apprise").filters) == len(before) + 1
        sender.close()
        assert logging.getLogger("apprise").filters == before


class TestNotifyTest:
    async def test_test_all_reports_each_url(self, receiver: Receiver) -> None:
        good = targets.parse_url(f"json://127.0.0.1:{receiver.port}/hook", name="good")
        bad = targets.parse_url(f"json://127.0.0.1:{free_port()}/hook?cto=1", name="bad")
        renderer = Renderer()
        from watcher.notify.templates import sample_event

        event = sample_event()

        def message(u: NotifyUrl) -> RenderedMessage:
            return renderer.render([event], u.flavor)

        with _sender(good, bad) as sender:
            outcomes = await sender.test_all(message)
        assert [(o.key, o.ok) for o in outcomes] == [("good", True), ("bad", False)]
        assert outcomes[0].display.startswith("json://127.0.0.1")
        assert outcomes[1].error
        payload = json.loads(receiver.requests[0]["body"])
        assert "Test notification" in payload["title"]


class TestSendTimeout:
    """The URL's send timeout bounds an attempt; no answer in time is "maybe delivered"."""

    async def test_a_service_slower_than_apprises_4_s_default_gets_the_message_once(
        self, receiver: Receiver
    ) -> None:
        """apprise's default read timeout is 4 s: a webhook answering after 5 s looked
        failed although it had the message, and every retry delivered it again."""
        receiver.delay = 5.0
        url = targets.parse_url(f"json://127.0.0.1:{receiver.port}/hook", name="slow")
        with _sender(url) as sender:
            result = await sender.send("slow", title="t", body="b", severity=Severity.INFO)
        assert result.ok and not result.uncertain
        assert len(receiver.requests) == 1

    async def test_no_answer_within_the_send_timeout_is_maybe_delivered(
        self, receiver: Receiver
    ) -> None:
        receiver.delay = 2.0
        raw = f"json://127.0.0.1:{receiver.port}/hook"
        url = targets.parse_url(raw, name="slow", send_timeout_s=0.5)
        with _sender(url) as sender:
            started = asyncio.get_running_loop().time()
            result = await sender.send("slow", title="t", body="b", severity=Severity.INFO)
            took = asyncio.get_running_loop().time() - started
        assert not result.ok and result.uncertain
        assert result.error and result.error.startswith("no answer within 0.5 s, maybe delivered")
        assert 0.45 <= took < 1.9  # the socket read timeout ended it, not the answer
        assert len(receiver.requests) == 1  # it did reach the service

    async def test_an_rto_in_the_url_wins_over_the_send_timeout(self, receiver: Receiver) -> None:
        receiver.delay = 2.0
        raw = f"json://127.0.0.1:{receiver.port}/hook?rto=0.5"
        url = targets.parse_url(raw, name="slow", send_timeout_s=30)
        with _sender(url) as sender:
            result = await sender.send("slow", title="t", body="b", severity=Severity.INFO)
            assert sender._entries["slow"].answer_timeout_s == 0.5
        assert result.uncertain

    async def test_refused_and_rejected_are_plain_failures(self, receiver: Receiver) -> None:
        receiver.status = 500
        good_port = targets.parse_url(f"json://127.0.0.1:{receiver.port}/hook", name="no")
        down = targets.parse_url(f"json://127.0.0.1:{free_port()}/hook", name="down")
        with _sender(good_port, down) as sender:
            rejected = await sender.send("no", title="t", body="b", severity=Severity.INFO)
            refused = await sender.send("down", title="t", body="b", severity=Severity.INFO)
        assert not rejected.ok and not rejected.uncertain
        assert not refused.ok and not refused.uncertain

    def test_limits_follow_the_plugin(self) -> None:
        hook = targets.parse_url("json://127.0.0.1:9/hook?retry=1&wait=2", name="hook")
        mail = targets.parse_url(
            "mailto://127.0.0.1:25?from=a@example.com&to=b@example.com",
            name="mail",
            send_timeout_s=20,
        )
        with _sender(hook, mail) as sender:
            entry = sender._entries["hook"]
            plugin = entry.apobj[0]
            assert (plugin.socket_read_timeout, plugin.socket_connect_timeout) == (30.0, 4.0)
            assert sender.stuck_after_s("hook") == 2 * (4 + 30) + 2 + 5
            # SMTP uses one socket timeout (cto) for the whole session.
            mail_plugin = sender._entries["mail"].apobj[0]
            assert mail_plugin.socket_connect_timeout == 20.0
            assert sender._entries["mail"].answer_timeout_s == 20.0
