"""The alert rules pass `promtool check rules` and their own `promtool test rules` unit tests,
and cover what an SRE expects to be paged for.

promtool comes from Debian's prometheus package (tests/system_deps.sh installs it). Missing,
these tests fail rather than skip, so a green run always means the alerts were tested; set
WATCHER_SKIP_PROMTOOL=1 to opt out explicitly on a machine that cannot have it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops import promql

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "cce-upgrade-watcher.rules.yml"
RULE_TESTS = PROMETHEUS / "cce-upgrade-watcher.rules.test.yml"
RUNBOOK = PROMETHEUS / "README.md"
OPT_OUT = "WATCHER_SKIP_PROMTOOL"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is not None:
        return path
    reason = "promtool is not installed (sh tests/system_deps.sh, or apt-get install prometheus)"
    if os.environ.get(OPT_OUT) == "1":
        pytest.skip(f"{reason}; skipped because {OPT_OUT}=1")
    pytest.fail(f"{reason}; set {OPT_OUT}=1 to skip these tests on purpose")


def _run(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def _rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def _alert_tests() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULE_TESTS.read_text())
    return [case for test in loaded["tests"] for case in test["alert_rule_test"]]


def test_promtool_accepts_the_rules() -> None:
    result = _run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = _run("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_fail_when_an_alert_changes(tmp_path: Path) -> None:
    """The unit tests above can fail: a longer `for:` delays CceWatcherDown past its test."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text()
    down = text.index("alert: CceWatcherDown")
    changed = text[:down] + text[down:].replace("for: 5m", "for: 30m", 1)
    (tmp_path / RULES.name).write_text(changed)
    result = _run("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "CceWatcherDown" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in _rules()}
    fired = {case["alertname"] for case in _alert_tests() if case["exp_alerts"]}
    quiet = {case["alertname"] for case in _alert_tests() if not case["exp_alerts"]}
    assert fired == alerts
    assert quiet == alerts


# What an SRE expects to be paged for (issue 10), as the metric each alert must read.
REQUIRED = {
    "watcher down": "up",
    "watcher absent": "up",
    "scheduler down": "cce_watcher_scheduler_up",
    "target unreachable": "cce_watcher_target_up",
    "auth failed": "cce_watcher_polls_total",
    "no successful poll": "cce_watcher_target_last_success_timestamp_seconds",
    "dead letters": "cce_watcher_dead_letters",
    "oldest pending delivery": "cce_watcher_outbox_oldest_pending_age_seconds",
    "heartbeat missing": "cce_watcher_heartbeat_last_success_timestamp_seconds",
}


def test_the_expected_alerts_exist() -> None:
    read = [promql.metric_names(rule["expr"]) for rule in _rules()]
    missing = [what for what, metric in REQUIRED.items() if not any(metric in r for r in read)]
    assert missing == []
    assert any(rule["expr"].startswith("absent(up{") for rule in _rules())
    assert any('result="auth"' in rule["expr"] for rule in _rules())


def test_every_alert_says_how_bad_what_and_where_to_read_more() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    for rule in _rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        url = annotations["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.endswith("/blob/main/deploy/prometheus/README.md"), name
        assert anchor == name.lower() and anchor in anchors, f"{name}: no section {anchor}"


def test_promql_metric_names_are_found() -> None:
    """The helper the metric-name tests rely on finds selectors and nothing else."""
    expr = (
        'sum by (target) (rate(cce_watcher_polls_total{result="auth", target=~"$target"}'
        "[$__rate_interval])) / on(target) group_left(x) cce_watcher_target_up offset 5m"
        ' > 1e3 and absent(up{job="a"}) or time() - build_info'
    )
    assert promql.metric_names(expr) == {
        "cce_watcher_polls_total",
        "cce_watcher_target_up",
        "up",
        "build_info",
    }
    assert promql.grafana_query_names("label_values(cce_watcher_target_up, target)") == {
        "cce_watcher_target_up"
    }


def test_the_runbook_table_lists_every_alert_with_its_severity() -> None:
    rows = re.findall(r"^\| (CceWatcher\w+) \| (\w+) \|", RUNBOOK.read_text(), re.MULTILINE)
    assert rows == [(rule["alert"], rule["labels"]["severity"]) for rule in _rules()]
