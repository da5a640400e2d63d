"""The HA Deployment (deploy/kubernetes/ha.yaml): three replicas on PostgreSQL, no volume, a
PodDisruptionBudget, the DSN from the Secret; its config and secrets read by the real loader.
(Every manifest's schema check is in test_kubernetes_monitoring.py: it globs the directory.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.ops import k8s_schema
from watcher.config import loader, schema

HA = k8s_schema.MANIFESTS / "ha.yaml"
STANDALONE = k8s_schema.MANIFESTS / "standalone.yaml"


@pytest.fixture(scope="module")
def ha() -> dict[str, dict[str, Any]]:
    docs = k8s_schema.documents(HA)
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "one object per kind"
    assert set(by_kind) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
    return by_kind


def _pod(ha: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = ha["Deployment"]["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize("version", k8s_schema.VERSIONS)
def test_every_object_passes_its_schema(ha: dict[str, dict[str, Any]], version: str) -> None:
    for doc in ha.values():
        k8s_schema.validate(doc, version, HA.name)


def test_three_replicas_without_a_state_volume(ha: dict[str, dict[str, Any]]) -> None:
    spec = ha["Deployment"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"  # no volume to hand over
    assert not any("persistentVolumeClaim" in v for v in _pod(ha)["volumes"])
    (container,) = _pod(ha)["containers"]
    assert "/var/lib/cce-upgrade-watcher" not in {m["mountPath"] for m in container["volumeMounts"]}


def test_the_disruption_budget_keeps_two_replicas(ha: dict[str, dict[str, Any]]) -> None:
    budget = ha["PodDisruptionBudget"]["spec"]
    labels = ha["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert budget["maxUnavailable"] == 1
    assert all(labels.get(k) == v for k, v in budget["selector"]["matchLabels"].items())


def test_probes_and_lock_down_match_the_standalone_deployment(
    ha: dict[str, dict[str, Any]],
) -> None:
    (container,) = _pod(ha)["containers"]
    (single,) = {d["kind"]: d for d in k8s_schema.documents(STANDALONE)}["Deployment"]["spec"][
        "template"
    ]["spec"]["containers"]
    for key in ("ports", "livenessProbe", "readinessProbe", "securityContext"):
        assert container[key] == single[key], key
    assert _pod(ha)["automountServiceAccountToken"] is False


def _load(ha: dict[str, dict[str, Any]], tmp_path: Path) -> schema.Settings:
    """The ConfigMap's config.toml and the header's Secret files, through the real loader."""
    header = HA.read_text().split("---", 1)[0]
    named = re.findall(r"--from-file=(\w+)=", header)
    assert "state__dsn" in named  # the DSN is a secret, never in the ConfigMap
    assert "dsn" not in ha["ConfigMap"]["data"]["config.toml"].replace("state__dsn", "")
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    for name in named:
        value = (
            "postgresql://watcher:pw@db.example.internal/watcher" if name == "state__dsn" else ""
        )
        (secrets / name).write_text(value or "CHANGE-ME-0123456789abcdef-" + name)
    config = tmp_path / "config.toml"
    config.write_text(ha["ConfigMap"]["data"]["config.toml"])
    return loader.load_settings(config, env={}, secrets_dirs=[secrets], require_targets=True)


def test_config_and_secrets_are_read_by_the_loader(
    ha: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    settings = _load(ha, tmp_path)
    assert settings.state.backend == "postgres"
    assert settings.state.dsn is not None
    assert settings.state.dsn.get_secret_value().startswith("postgresql://watcher:")
    assert settings.ha.lease_s == 30
    assert settings.http.token is not None  # the Service exposes the port: /api/ needs it
