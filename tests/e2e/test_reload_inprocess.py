"""Reload applies a new configuration in place: targets removed, templates replaced."""

from __future__ import annotations

import copy
from pathlib import Path

from tests.e2e.harness import base_settings, running
from watcher.config import settings_from_mapping


async def test_reload_removes_targets_and_replaces_templates(tmp_path: Path) -> None:
    async with running(tmp_path, ["clean_upgrade", "cancel"]) as h:
        await h.settle()
        assert len(h.daemon.watches) == 2
        keep, drop = h.sim.targets()
        urls = [u.url.get_secret_value() for u in h.daemon.settings.notify.urls]
        raw = base_settings(h.sim, tmp_path / "state", urls)
        new = copy.deepcopy(raw)
        new["targets"] = [t for t in raw["targets"] if t["name"] == keep["name"]]
        new["notify"]["templates"] = {
            "kinds": {"workflow.started": {"title": "RELOADED {{ event.kind }}"}},
        }
        await h.daemon.reload(settings_from_mapping(new))

        assert [w.workflow_id for w in h.daemon.watches.values()] == [keep["workflow_id"]]
        assert drop["workflow_id"] not in " ".join(h.daemon.scheduler.job_ids)
        before = len(await h.stored())
        await h.step()  # both scenarios move; only the kept target is still watched
        await h.settle()
        new_events = (await h.stored())[before:]
        assert new_events
        assert {e.event.workflow_id for e in new_events} == {keep["workflow_id"]}
        titles = [body["title"] for body in h.webhook.bodies]
        assert titles[-1] == "RELOADED workflow.started"
