"""Durations, routes, silences and other value rules of the schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.notify.conftest import make_event, make_target
from watcher.config import (
    format_duration,
    parse_duration,
    settings_from_mapping,
)
from watcher.core.errors import ConfigError
from watcher.core.events import Severity
from watcher.notify.routing import DEFAULT_ROUTE, plan
from watcher.notify.url import NotifyUrl
from watcher.runtime.wiring import config_silences, notify_routes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("4h", 14400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2d", 172800),
        ("500ms", 0.5),
        ("120", 120),
        (45, 45),
        (1.5, 1.5),
        ("0", 0),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "soon", "15x", "m15", "-5m", -1, True, None, [1], "1h-30m"])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration") as info:
        parse_duration(bad)
    assert str(bad) not in str(info.value) or str(bad) in ("", "True", "None")


@pytest.mark.parametrize(
    ("seconds", "text"), [(5400, "1h30m"), (90, "1m30s"), (0, "0s"), (86400, "1d"), (0.5, "0.5s")]
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_policy_durations_are_timedeltas() -> None:
    policy = settings_from_mapping(
        {"policy": {"precheck_leads": ["15m", 3600, "15m"], "repeat_interval": "1h30m"}}
    ).policy
    assert policy.precheck_leads == (timedelta(hours=1), timedelta(minutes=15))
    assert policy.repeat_interval == timedelta(minutes=90)
    assert policy.late_after == timedelta(seconds=150)
    core = policy.to_policy()
    assert core.stall_threshold("Rollback") == timedelta(hours=1)
    assert core.precheck_leads == policy.precheck_leads
    assert core.stall_threshold("Cluster") == timedelta(hours=2)
    assert core.stall_threshold("Unknown") == timedelta(hours=1)
    assert core.repeat_interval == timedelta(minutes=90)


def test_default_route_sends_everything_but_queued() -> None:
    # No [[notify.routes]]: routing.plan applies the domain's DEFAULT_ROUTE (the one copy).
    settings = settings_from_mapping({"notify": {"urls": ["json://127.0.0.1:1/x"]}})
    assert notify_routes(settings) == []
    assert DEFAULT_ROUTE.tags == frozenset()
    assert DEFAULT_ROUTE.matches(make_event("f", "task.failed", Severity.FAILURE))
    assert DEFAULT_ROUTE.matches(make_event("d", "workflow.detected", Severity.INFO))
    assert not DEFAULT_ROUTE.matches(make_event("q", "task.queued", Severity.INFO))
    url = NotifyUrl(key="x", url="json://127.0.0.1:1/x")
    events = [make_event("q", "task.queued", Severity.INFO), make_event("f")]
    (delivery,) = plan(events, [url], notify_routes(settings), [], datetime.now(UTC))
    assert delivery.event_keys == ("f",)


def test_route_matching() -> None:
    settings = settings_from_mapping(
        {
            "notify": {
                "routes": [
                    {
                        "kinds": ["workflow.*", "task.failed"],
                        "min_severity": "WARNING",
                        "targets": ["prod-*"],
                        "labels": {"env": "prod"},
                        "tags": "OnCall, chat",
                    }
                ]
            }
        }
    )
    assert settings.notify.routes[0].tags == ("oncall", "chat")
    (route,) = notify_routes(settings)
    assert route.tags == frozenset({"oncall", "chat"})
    labels = {"env": "prod", "team": "a"}

    def matches(kind: str, severity: Severity, target: str, labels: dict[str, str]) -> bool:
        return route.matches(make_event(kind, kind, severity, target=make_target(target, **labels)))

    assert matches("workflow.failed", Severity.FAILURE, "prod-1", labels)
    assert not matches("workflow.started", Severity.INFO, "prod-1", labels)
    assert not matches("task.started", Severity.WARNING, "prod-1", labels)
    assert not matches("workflow.failed", Severity.FAILURE, "dev-1", labels)
    assert not matches("workflow.failed", Severity.FAILURE, "prod-1", {"env": "dev"})


def test_notify_url_defaults() -> None:
    urls = settings_from_mapping(
        {"notify": {"urls": ["json://h/x", {"url": "mailtos://u:p@h?to=a@b"}, "console://"]}}
    ).notify.urls
    assert [u.name for u in urls] == ["json-1", "mailtos-2", "console-3"]
    assert [u.flavor for u in urls] == ["chat", "email", "chat"]


def test_silence_until_needs_an_offset_and_matches() -> None:
    settings = settings_from_mapping(
        {
            "silences": [
                {"target": "stag*", "kinds": ["task.stalled"], "until": "2030-01-31T18:00:00+08:00"}
            ]
        }
    )
    assert settings.silences[0].until == datetime(2030, 1, 31, 10, tzinfo=UTC)
    (silence,) = config_silences(settings)
    assert silence.id == "config:1"
    assert silence.until == datetime(2030, 1, 31, 10, tzinfo=UTC)
    assert silence.active(datetime(2030, 1, 31, 9, tzinfo=UTC))
    assert not silence.active(datetime(2030, 1, 31, 10, tzinfo=UTC))
    staging = make_target("staging")
    assert silence.matches(make_event("s", "task.stalled", Severity.WARNING, target=staging))
    assert not silence.matches(make_event("f", "task.failed", Severity.FAILURE, target=staging))


def test_config_silence_cluster_id_is_a_glob_like_every_silence() -> None:
    # The config's own matcher compared cluster_id with ==; the production Silence (used by
    # routing.plan, the API and the CLI) treats it as a glob. One model: the glob wins.
    settings = settings_from_mapping(
        {"silences": [{"cluster_id": "prod-*", "until": "2030-01-31T18:00:00+08:00"}]}
    )
    (silence,) = config_silences(settings)
    assert silence.matches(make_event("f", target=make_target("prod-a")))  # "prod-a-id"
    assert not silence.matches(make_event("f", target=make_target("dev-a")))


def test_http_listen_parsing() -> None:
    assert settings_from_mapping({}).http.port == 9851
    http = settings_from_mapping({"http": {"listen": "[::1]:8080"}}).http
    assert (http.host, http.port) == ("::1", 8080)
    with pytest.raises(ConfigError):
        settings_from_mapping({"http": {"listen": "127.0.0.1:70000"}})


def test_same_cluster_watched_twice() -> None:
    target = {"cluster_id": "c1", "region": "r", "project_id": "p"}
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({"targets": [{**target, "name": "a"}, {**target, "name": "b"}]})
    assert info.value.problems[0].startswith("targets.1: watches the same cluster/workflow")


def test_send_timeout_defaults_to_30_s_and_is_per_url() -> None:
    notify = settings_from_mapping(
        {"notify": {"urls": ["json://h/x", {"url": "json://h/y", "send_timeout_s": 90}]}}
    ).notify
    assert notify.send_timeout_s == 30.0  # longer than apprise's own 4 s read timeout
    assert [u.send_timeout_s for u in notify.urls] == [None, 90.0]
    notify = settings_from_mapping({"notify": {"send_timeout_s": 12.5}}).notify
    assert notify.send_timeout_s == 12.5


@pytest.mark.parametrize("bad", [0, -1, 3601, "soon"])
def test_send_timeout_must_be_positive_seconds(bad: object) -> None:
    with pytest.raises(ConfigError, match="send_timeout_s"):
        settings_from_mapping({"notify": {"send_timeout_s": bad}})
    with pytest.raises(ConfigError, match="send_timeout_s"):
        settings_from_mapping({"notify": {"urls": [{"url": "json://h/x", "send_timeout_s": bad}]}})
