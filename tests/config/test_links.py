"""notify.console_url and runbook_url (issue 9 item 5): validated at load, used to render."""

from __future__ import annotations

import pytest

from tests.notify.conftest import make_event
from watcher.config import settings_from_mapping
from watcher.core.errors import ConfigError
from watcher.core.events import TargetRef
from watcher.runtime.wiring import notify_plan

TARGET = {
    "name": "prod",
    "kind": "cluster",
    "cluster_id": "c1",
    "region": "ap-southeast-1",
    "project_id": "p1",
}


def _problems(data: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data)
    return "\n".join(info.value.problems)


def test_an_unknown_console_placeholder_is_a_config_error() -> None:
    text = _problems({"notify": {"console_url": "https://console.example/{cluster}"}})
    assert "notify.console_url" in text and "unknown placeholder cluster" in text
    assert "{cluster_id}" in text  # says what is allowed


@pytest.mark.parametrize(
    "data",
    [
        {"targets": [{**TARGET, "runbook_url": "ftp://wiki/x"}]},
        {"notify": {"routes": [{"runbook_url": "javascript:alert(1)"}]}},
    ],
)
def test_a_runbook_must_be_an_http_url(data: dict[str, object]) -> None:
    assert "must be an http(s) URL" in _problems(data)


def test_route_runbook_wins_for_its_urls_and_the_target_runbook_is_the_fallback() -> None:
    settings = settings_from_mapping(
        {
            "targets": [{**TARGET, "runbook_url": "https://wiki.example/target"}],
            "notify": {
                "urls": [
                    {"url": "json://127.0.0.1:9/a", "tags": ["oncall"]},
                    {"url": "json://127.0.0.1:9/b"},
                ],
                "console_url": "https://console.otc.example/cce/{region}/{project_id}/{cluster_id}",
                "routes": [
                    {"tags": ["oncall"], "runbook_url": "https://wiki.example/oncall"},
                    {},
                ],
            },
        }
    )
    plan = notify_plan(settings)
    render = plan.render_for_urls()
    urls = plan.urls
    event = make_event(
        target=TargetRef(name="prod", region="eu-de", project_id="p1", cluster_id="c1")
    )
    oncall = render(urls[0].key, [event]).body
    other = render(urls[1].key, [event]).body
    assert "Runbook: https://wiki.example/oncall" in oncall
    assert "Runbook: https://wiki.example/target" in other
    assert "Console: https://console.otc.example/cce/eu-de/p1/c1" in other
