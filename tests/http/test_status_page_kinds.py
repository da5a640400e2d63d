"""The status page subscribes to every event kind by name (EventSource needs each name)."""

from __future__ import annotations

import re
from importlib import resources

from watcher.core.events import Kind


def test_the_status_page_listens_for_every_event_kind() -> None:
    page = resources.files("watcher.http").joinpath("static/status.html").read_text()
    block = re.search(r"const KINDS = \[(.*?)\];", page, re.S)
    assert block is not None
    listed = set(re.findall(r'"([^"]+)"', block.group(1)))
    assert {k.value for k in Kind} <= listed
