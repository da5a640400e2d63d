"""Renderer: default chat/email templates, per-kind overrides, fallbacks, sanitising."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.notify.conftest import NOW, make_event
from watcher.core.errors import ConfigError
from watcher.core.events import Kind, Severity
from watcher.notify.templates import Renderer, fmt_duration, sample_event, strip_controls
from watcher.notify.url import NotifyUrl

PRECHECK_OK = make_event(
    "p",
    "task.succeeded",
    Severity.SUCCESS,
    message="PreCheck task Success",
    task_type="PreCheck",
    started_at=NOW - timedelta(minutes=5),
    ended_at=NOW - timedelta(minutes=1),
)
CLUSTER_FAILED = make_event(
    "c",
    "task.failed",
    Severity.FAILURE,
    message="Cluster upgrade task Failed",
    late_since=NOW - timedelta(hours=2),
    details={"failed_items": [{"name": "NodeDiskCheck", "node": "node-1", "message": "disk full"}]},
)


class TestDefaults:
    def test_chat_title_is_the_most_severe_event(self) -> None:
        msg = Renderer().render([PRECHECK_OK, CLUSTER_FAILED], "chat")
        assert msg.title == "[FAILURE] prod-cluster: Cluster upgrade task Failed"
        assert msg.severity is Severity.FAILURE
        assert msg.extra["kind"] == "task.failed" and msg.extra["event_count"] == 2

    def test_chat_body_is_a_compact_timeline(self) -> None:
        body = Renderer().render([PRECHECK_OK, CLUSTER_FAILED], "chat").body
        lines = body.splitlines()
        # first line: the headline's time and identity (the title is not repeated)
        assert lines[0] == "09:59 UTC | prod-cluster | v1.28 -> v1.29 | workflow wf-1"
        assert lines[1] == "09:59 UTC  PreCheck task Success"  # messages carry durations
        assert lines[2] == "09:59 UTC  Cluster upgrade task Failed"
        assert "- NodeDiskCheck on node-1: disk full" in body
        # observed late: once, with the window
        assert body.count("observed late") == 1 and "between 08:00 UTC and 10:00 UTC" in body
        assert lines[-1].startswith("Console: https://")

    def test_email_body_has_versions_timestamps_labels_and_workflow(self) -> None:
        msg = Renderer().render([PRECHECK_OK, CLUSTER_FAILED], "email")
        assert msg.title.endswith("(v1.28 -> v1.29)")
        body = msg.body
        for needle in (
            "Workflow:  wf-1",
            "Versions:  v1.28 -> v1.29",
            "[env=prod, team=sre]",
            "Started:   2024-05-01 09:55:00 UTC",
            "Ended:     2024-05-01 09:59:00 UTC",
            "Duration:  4m",
            "Kind:      task.failed",
            "Failed check items:",
            "observed late",
        ):
            assert needle in body

    def test_api_text_is_not_escaped_but_control_characters_are_stripped(self) -> None:
        event = make_event(message="<b>bold</b> \x1b[31mred\x07 \u202eevil\nnext")
        msg = Renderer().render([event], "chat")
        assert "<b>bold</b>" in msg.title  # TEXT: apprise escapes for HTML services
        for text in (msg.title, msg.body):
            assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "\n" not in msg.title

    def test_long_titles_are_cut(self) -> None:
        msg = Renderer().render([make_event(message="x" * 1000)], "chat")
        assert len(msg.title) == 250

    def test_empty_events_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            Renderer().render([], "chat")

    def test_template_dir_replaces_a_default(self, tmp_path: Path) -> None:
        (tmp_path / "chat_title.j2").write_text("custom {{ cluster }}")
        msg = Renderer(template_dir=tmp_path).render([CLUSTER_FAILED], "chat")
        assert msg.title == "custom prod-cluster"


class TestOverrides:
    def test_override_for_the_headline_kind(self) -> None:
        renderer = Renderer(
            {"task.failed": {"title": "FAILED {{ target.name }} {{ event.task_type }}"}}
        )
        msg = renderer.render([PRECHECK_OK, CLUSTER_FAILED], "chat")
        assert msg.title == "FAILED prod-cluster Cluster"
        assert "PreCheck task Success" in msg.body  # body not overridden: default

    def test_glob_override(self) -> None:
        msg = Renderer({"task.*": {"body": "{{ events|length }} events"}}).render(
            [PRECHECK_OK], "chat"
        )
        assert msg.body == "1 events"

    def test_syntax_error_is_a_config_error_naming_the_kind(self) -> None:
        with pytest.raises(ConfigError) as info:
            Renderer({"task.failed": {"title": "{% if %}"}, "task.started": {"colour": "x"}})
        problems = info.value.problems
        assert problems[0].startswith("notify.templates.task.failed.title: template error")
        assert "notify.templates.task.started: unknown keys colour" in problems

    @pytest.mark.parametrize(
        "source",
        [
            "{{ no_such_variable }}",
            "{{ event.__class__.__mro__ }}",  # the sandbox refuses
            "{{ 1 / 0 }}",
        ],
    )
    def test_failing_override_falls_back_with_a_warning(self, source: str) -> None:
        renderer = Renderer({"task.failed": {"title": source}})
        with capture_logs() as logs:
            msg = renderer.render([CLUSTER_FAILED], "chat")
        assert msg.title == "[FAILURE] prod-cluster: Cluster upgrade task Failed"
        assert [e["event"] for e in logs] == ["notify.template_failed"]
        assert logs[0]["kind"] == "task.failed"


class TestFailSafe:
    """A template that fails at send time falls back; ``check()`` finds it beforehand."""

    @pytest.mark.parametrize("part", ["title", "body"])
    def test_failing_template_dir_file_falls_back_to_the_built_in(
        self, tmp_path: Path, part: str
    ) -> None:
        (tmp_path / f"chat_{part}.j2").write_text("ok\n{{ event.no_such_field }}")
        renderer = Renderer(template_dir=tmp_path)
        with capture_logs() as logs:
            msg = renderer.render([CLUSTER_FAILED], "chat")
        assert msg == Renderer().render([CLUSTER_FAILED], "chat")
        (warning,) = logs
        assert warning["event"] == "notify.template_failed"
        assert warning["template"] == f"template file {tmp_path / f'chat_{part}.j2'}"
        assert "(line 2)" in warning["error"]

    def test_failing_override_falls_back_to_a_working_template_dir_file(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "chat_title.j2").write_text("dir {{ cluster }}")
        renderer = Renderer({"task.*": {"title": "{{ nope }}"}}, template_dir=tmp_path)
        with capture_logs():
            assert renderer.render([CLUSTER_FAILED], "chat").title == "dir prod-cluster"

    def test_check_passes_the_defaults_and_working_templates(self, tmp_path: Path) -> None:
        (tmp_path / "email_body.j2").write_text("{{ cluster }} {{ event.task_type or '-' }}")
        assert Renderer().check() == []
        assert Renderer({"task.*": {"title": "{{ event.kind }}"}}, tmp_path).check() == []

    def test_check_names_each_broken_template_once(self, tmp_path: Path) -> None:
        # Fails only on some kinds and some events: a sparse event has no task_type.
        (tmp_path / "email_body.j2").write_text("{{ event.task_type.lower() }}")
        renderer = Renderer(
            {"precheck.*": {"title": "{{ event.details.failed_items[0].name }}"}},
            template_dir=tmp_path,
        )
        problems = renderer.check()
        assert len(problems) == 2, problems
        title, body = sorted(problems, key=lambda p: not p.startswith("notify."))
        assert title.startswith("notify.templates.precheck.*.title: UndefinedError")
        assert body.startswith(f"template file {tmp_path / 'email_body.j2'}: ")
        assert "(line 1)" in body


class TestForUrls:
    def test_each_url_gets_its_flavor(self) -> None:
        render = Renderer().for_urls(
            [
                NotifyUrl(key="chat", url="json://x/a"),
                NotifyUrl(key="mail", url="mailto://x", flavor="email"),
            ]
        )
        assert "Workflow:" in render("mail", [CLUSTER_FAILED]).body
        assert "Workflow:" not in render("chat", [CLUSTER_FAILED]).body
        assert "Workflow:" not in render("unknown", [CLUSTER_FAILED]).body


def test_sample_event_renders_in_both_flavors() -> None:
    event = sample_event(now=NOW)
    assert event.kind == Kind.TEST and event.severity is Severity.INFO
    for flavor in ("chat", "email"):
        msg = Renderer().render([event], flavor)
        assert "Test notification" in msg.title


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m 59s"),
        (3600, "1h"),
        (7322, "2h 2m"),
        (None, ""),
        (timedelta(minutes=2), "2m"),
        (-5, "0s"),
    ],
)
def test_fmt_duration(seconds: float | timedelta | None, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_strip_controls_keeps_newlines_and_tabs() -> None:
    assert strip_controls("a\tb\nc\x00d\x1be\r") == "a\tb\ncde"


# -- issue 7: one message stays bounded whatever one poll found ----------------------------


@pytest.mark.parametrize("flavor", ["chat", "email"])
def test_thousands_of_events_are_listed_up_to_a_cap_then_counted(flavor: str) -> None:
    events = [
        make_event(f"k{i}", "task.started", Severity.INFO, message=f"Custom{i} task Running")
        for i in range(5000)
    ]
    events.append(CLUSTER_FAILED)
    msg = Renderer().render(events, flavor)  # type: ignore[arg-type]
    assert "Custom0 task Running" in msg.body
    assert "Custom4999 task Running" not in msg.body
    assert "Cluster upgrade task Failed" in msg.body  # the headline is always listed
    assert f"and {5001 - 50} more" in msg.body
    assert len(msg.body) < 30_000
    assert msg.extra["event_count"] == 5001


def test_thousands_of_failed_items_are_capped() -> None:
    items = [{"name": f"Check{i}", "node": "n"} for i in range(3000)]
    event = make_event("c", details={"failed_items": items})
    body = Renderer().render([event], "chat").body
    assert "Check49 on n" in body and "Check50 on" not in body
    assert "and 2950 more" in body


@pytest.mark.parametrize("flavor", ["chat", "email"])
def test_timeline_lines_read_in_time_order(flavor: str) -> None:
    # One poll saw the task start (cloud time 10 min ago) and pause (now); the engine
    # emitted "paused" first. Neither line may read before an earlier fact.
    paused = make_event(
        "p", Kind.TASK_PAUSED, Severity.WARNING, message="PAUSED-LINE", occurred_at=NOW
    )
    started = make_event(
        "s", Kind.TASK_STARTED, Severity.INFO, message="STARTED-LINE",
        occurred_at=NOW - timedelta(minutes=10),
    )  # fmt: skip
    succeeded = make_event(
        "w", Kind.WORKFLOW_SUCCEEDED, Severity.SUCCESS, message="DONE-LINE",
        occurred_at=NOW - timedelta(minutes=5),
    )  # fmt: skip
    body = Renderer().render([paused, started, succeeded], flavor).body
    order = [body.find(text) for text in ("STARTED-LINE", "PAUSED-LINE")]
    assert -1 not in order and order == sorted(order), body
