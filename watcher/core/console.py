"""The link to a workflow in the cloud console, from a configurable URL template (pure).

Derived from region, project and cluster (and the workflow id) so every message, e-mail
and status-page card can point at the page where the next step is taken (issue 9 item 5).
"""

from __future__ import annotations

import string
from urllib.parse import quote

from watcher.core.events import Event

# [UNVERIFIED] the Huawei Cloud international console's CCE cluster page; set
# notify.console_url for another console (e.g. Huawei Cloud Europe, Open Telekom Cloud).
DEFAULT_CONSOLE_URL = (
    "https://console-intl.huaweicloud.com/cce2.0/?region={region}"
    "#/cce/cluster/{cluster_id}/upgrade?projectId={project_id}&workflowId={workflow_id}"
)
PLACEHOLDERS = frozenset({"region", "project_id", "cluster_id", "workflow_id"})


def template_problems(template: str) -> list[str]:
    """What is wrong with a console URL template (empty when it is usable)."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError as exc:
        return [f"not a valid URL template: {exc}"]
    unknown = sorted(set(fields) - PLACEHOLDERS)
    if unknown:
        allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
        return [f"unknown placeholder {', '.join(unknown)}; allowed: {allowed}"]
    return []


def console_url(template: str | None, event: Event) -> str | None:
    """The console link for the event's workflow (None without a template)."""
    target = event.target
    return workflow_url(
        template, target.region, target.project_id, target.cluster_id, event.workflow_id
    )


def workflow_url(
    template: str | None, region: str, project_id: str, cluster_id: str, workflow_id: str | None
) -> str | None:
    """The console link from the parts (None without a template)."""
    if not template:
        return None
    values = {
        "region": region,
        "project_id": project_id,
        "cluster_id": cluster_id,
        "workflow_id": workflow_id or "",
    }
    return template.format(**{k: quote(v, safe="") for k, v in values.items()})
