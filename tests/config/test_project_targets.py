"""Project targets in the config (issue 11.3): the fields a project target takes, the
precise problem for each mistake, the derived default name, and `config validate`'s lint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.config.test_errors import problems_of
from tests.config.test_lint import PROJECT, errors, validate, warnings
from watcher.config import settings_from_mapping
from watcher.core.models import Cluster
from watcher.core.projects import ClusterSelection

PROJECT_TARGET = {"kind": "project", "region": "ap-southeast-1", "project_id": "p1"}


def test_a_project_target_needs_no_cluster_and_defaults_its_filters() -> None:
    settings = settings_from_mapping({"targets": [PROJECT_TARGET]})
    (target,) = settings.targets
    assert (target.kind, target.cluster_id, target.workflow_id) == ("project", None, None)
    assert (target.include, target.exclude, target.cluster_labels) == (("*",), (), {})
    assert target.to_selection() == ClusterSelection.of(("*",), (), {})
    assert target.to_ref().cluster_id == ""


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({}, "0123abcd"),
        ({"api": "autopilot"}, "0123abcd-autopilot"),
        ({"name": "fleet"}, "fleet"),
    ],
)
def test_the_default_name_comes_from_the_project_id(extra: dict[str, str], name: str) -> None:
    raw = {**PROJECT_TARGET, "project_id": "0123abcd4567ef", **extra}
    assert settings_from_mapping({"targets": [raw]}).targets[0].name == name


def test_the_same_project_twice_needs_different_apis_or_filters() -> None:
    cce = {**PROJECT_TARGET, "name": "a"}
    autopilot = {**PROJECT_TARGET, "name": "b", "api": "autopilot"}
    prod = {**PROJECT_TARGET, "name": "c", "include": ["prod-*"]}
    settings_from_mapping({"targets": [cce, autopilot, prod]})  # a split: fine
    found = problems_of({"targets": [cce, {**cce, "name": "d"}]})
    assert found == [
        "targets.1: watches the same clusters of the same project as targets.0"
        " (env WATCHER_TARGETS as JSON)"
    ]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            {**PROJECT_TARGET, "cluster_id": "c1"},
            'targets.0.cluster_id: not allowed when kind = "project" (clusters are discovered)',
        ),
        (
            {**PROJECT_TARGET, "workflow_id": "w1"},
            'targets.0.workflow_id: not allowed when kind = "project" (clusters are discovered)',
        ),
        (
            {**PROJECT_TARGET, "include": []},
            'targets.0.include: selects no cluster; leave it out for ["*"]',
        ),
        (
            {**PROJECT_TARGET, "include": ["prod/*"]},
            "targets.0.include: a cluster name glob is letters, digits",
        ),
        (
            {**PROJECT_TARGET, "exclude": ["a b"]},
            "targets.0.exclude: a cluster name glob is letters, digits",
        ),
        (
            {**PROJECT_TARGET, "cluster_labels": {"tier": 1}},
            "targets.0.cluster_labels.tier: Input should be a valid string",
        ),
        (
            {**PROJECT_TARGET, "cluster_labels": {"-bad": "x"}},
            "targets.0.cluster_labels.-bad.[key]: String should match pattern",
        ),
        (
            {**PROJECT_TARGET, "kind": "projects"},
            "targets.0.kind: Input should be 'workflow', 'cluster' or 'project'",
        ),
        (
            {"kind": "cluster", "region": "ap-southeast-1", "project_id": "p1", "name": "x"},
            'targets.0.cluster_id: Field required when kind = "cluster"'
            ' (or kind = "project" to watch every cluster)',
        ),
        (
            {"kind": "workflow", "region": "ap-southeast-1", "project_id": "p1", "name": "x"},
            'targets.0.cluster_id: Field required when kind = "workflow"',
        ),
        (
            {"cluster_id": "c1", "region": "ap-southeast-1", "project_id": "p1", "include": ["*"]},
            'targets.0.include: only used when kind = "project"',
        ),
        (
            {**PROJECT_TARGET, "region": None},
            "targets.0.region: Field required (set it on the target or in [cloud])",
        ),
    ],
)
def test_each_mistake_gets_a_precise_problem(target: dict[str, object], expected: str) -> None:
    if target.get("region") is None:
        target = {k: v for k, v in target.items() if k != "region"}
    found = problems_of({"targets": [target]})
    assert any(p.startswith(expected) for p in found), found
    assert all("(env WATCHER_TARGETS as JSON)" in p for p in found), found


def test_a_list_can_come_as_a_comma_separated_string() -> None:
    raw = {**PROJECT_TARGET, "include": "prod-*, stage-*", "exclude": "*-scratch"}
    (target,) = settings_from_mapping({"targets": [raw]}).targets
    assert (target.include, target.exclude) == (("prod-*", "stage-*"), ("*-scratch",))


@pytest.mark.parametrize(
    ("name", "labels", "selected"),
    [
        ("prod-web", {"tier": "production"}, True),
        ("prod-web", {"tier": "production", "extra": "x"}, True),
        ("prod-web", {"tier": "staging"}, False),
        ("prod-web", {}, False),
        ("prod-web-scratch", {"tier": "production"}, False),  # exclude wins
        ("stage-web", {"tier": "production"}, False),
        ("PROD-web", {"tier": "production"}, False),  # globs are case-sensitive
    ],
)
def test_a_cluster_is_selected_only_when_every_filter_agrees(
    name: str, labels: dict[str, str], selected: bool
) -> None:
    raw = {
        **PROJECT_TARGET,
        "include": ["prod-*"],
        "exclude": ["*-scratch"],
        "cluster_labels": {"tier": "production"},
    }
    (target,) = settings_from_mapping({"targets": [raw]}).targets
    cluster = Cluster(uid="u1", name=name, labels=labels)
    assert target.to_selection().selects(cluster) is selected


def _project_config(extra: str) -> str:
    return f"""
[cloud]
region = "ap-southeast-3"
project_id = "{PROJECT}"
[credentials]
access_key = "AK0001"
secret_key = "sk-value-0001"
[[targets]]
name = "fleet"
kind = "project"
{extra}
"""


def test_config_validate_accepts_a_project_target(write_toml: Callable[[str], Path]) -> None:
    result = validate(write_toml, _project_config('include = ["prod-*"]'))
    assert result.exit_code == 0, result.output
    assert errors(result) == [] and warnings(result) == []


def test_lint_warns_about_capitals_and_refuses_an_exclude_of_everything(
    write_toml: Callable[[str], Path],
) -> None:
    result = validate(write_toml, _project_config('include = ["Prod-*"]\nexclude = ["*"]'))
    assert result.exit_code == 2, result.output
    (error,) = errors(result)
    assert error.startswith(
        "config error: targets.0.exclude: fleet: exclude removes every cluster include selects"
    )
    (warning,) = warnings(result)
    assert warning.startswith("config warning: targets.0.include: fleet: 'Prod-*' has capitals")
    assert warning.endswith("did you mean 'prod-*'?")


def test_routes_may_name_the_clusters_of_a_project_target(
    write_toml: Callable[[str], Path],
) -> None:
    routes = """
[[notify.urls]]
url = "json://127.0.0.1:9/hook"
[[notify.routes]]
targets = ["fleet/prod-*"]
[[notify.routes]]
targets = ["fleet"]
[[notify.routes]]
targets = ["flet/*"]
"""
    result = validate(write_toml, _project_config("") + routes)
    assert result.exit_code == 0, result.output
    (warning,) = warnings(result)
    assert "route 2: 'flet/*' matches no configured target" in warning
