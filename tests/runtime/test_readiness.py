"""/readyz before the poll jobs exist: an app still starting is not ready (issue 12.2)."""

from __future__ import annotations

from pathlib import Path

from watcher.config import settings_from_mapping
from watcher.runtime.app import App


def test_an_app_whose_jobs_are_not_scheduled_yet_is_not_ready(tmp_path: Path) -> None:
    settings = settings_from_mapping(
        {
            "state_dir": str(tmp_path),
            "cloud": {"cce_endpoint": "http://127.0.0.1:9", "iam_endpoint": "http://127.0.0.1:9"},
            "credentials": {"kind": "aksk", "access_key": "AK" * 8, "secret_key": "SK" * 16},
            "targets": [
                {
                    "kind": "cluster",
                    "name": "prod",
                    "region": "ap-southeast-1",
                    "project_id": "0123456789abcdef0123456789abcdef",
                    "cluster_id": "b4b9e60f-8aa2-11ee-af09-0255ac10004f",
                }
            ],
            "notify": {"urls": ["json://127.0.0.1:9/"]},
        }
    )
    app = App(settings)
    # No jobs at all would otherwise read as "every job on schedule" (none is behind).
    assert app.scheduler.behind_schedule() == 0
    ok, reasons = app.ready()
    assert not ok
    assert any(r.startswith("starting") for r in reasons), reasons
