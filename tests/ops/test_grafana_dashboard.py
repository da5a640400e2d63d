"""The Grafana dashboard parses, is importable as is, and every query in it is valid PromQL.

That every metric it reads is exported by the daemon is checked against a real daemon's
/metrics in tests/ops/test_monitoring_metrics.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.ops import promql
from tests.ops.test_prometheus_rules import _run

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "cce-upgrade-watcher.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    """Every PromQL query: panel targets and the template variables' label_values()."""
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    variables = dashboard()["templating"]["list"]
    return exprs + [v["query"]["query"] for v in variables if v["type"] == "query"]


def test_the_dashboard_is_importable_without_editing() -> None:
    d = dashboard()
    assert d["uid"] == "cce-upgrade-watcher" and d["title"]
    assert "id" not in d, "an id ties the JSON to one Grafana instance; import assigns one"
    (source,) = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert (source["name"], source["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_variable_a_query_uses_is_defined() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | GRAFANA_BUILTINS
    used = {m for q in queries() for m in re.findall(r"\$\{?(\w+)", q)}
    assert used <= defined


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, with Grafana's variables replaced by plain values."""
    rules = []
    for n, query in enumerate(queries()):
        match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
        expr = match.group(1) if match else query
        expr = re.sub(r"\$\{?__\w+\}?", "5m", expr)
        expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run("check", "rules", path.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerted_metrics_are_on_the_dashboard() -> None:
    shown = {name for q in queries() for name in promql.grafana_query_names(q)}
    rules = yaml.safe_load((REPO / "deploy/prometheus/cce-upgrade-watcher.rules.yml").read_text())
    alerted = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in promql.metric_names(rule["expr"])
    }
    assert alerted <= shown
