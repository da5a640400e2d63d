"""The Kubernetes sidecar example parses and matches the daemon: probes, paths, config, user."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from watcher.config import loader, schema
from watcher.http import server

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kubernetes" / "sidecar.yaml"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    loaded = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc is not None]
    by_kind = {doc["kind"]: doc for doc in loaded}
    assert len(by_kind) == len(loaded) == 3
    return by_kind


@pytest.fixture(scope="module")
def watcher_container(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    found = [c for c in containers if "cce-upgrade-watcher" in c["image"]]
    assert len(containers) == 2 and len(found) == 1, "an application plus the watcher sidecar"
    sidecar: dict[str, Any] = found[0]
    return sidecar


def _daemon_routes() -> set[str]:
    """The paths the daemon's real aiohttp application serves."""
    app = server.build_app(
        store=None,  # type: ignore[arg-type]  # only stored, never used to list routes
        feed=None,  # type: ignore[arg-type]
        status=None,  # type: ignore[arg-type]
        metrics_registry=CollectorRegistry(),
    )
    return {resource.canonical for resource in app.router.resources()}


def _mounts(docs: dict[str, dict[str, Any]], container: dict[str, Any]) -> dict[str, Any]:
    """mountPath -> the volume definition behind it."""
    volumes = {v["name"]: v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def test_probes_hit_the_daemons_port_and_paths(watcher_container: dict[str, Any]) -> None:
    port = schema.HttpSettings().port
    live = watcher_container["livenessProbe"]["httpGet"]
    ready = watcher_container["readinessProbe"]["httpGet"]
    assert (live["path"], live["port"]) == ("/healthz", port)
    assert (ready["path"], ready["port"]) == ("/readyz", port)
    assert {"/healthz", "/readyz"} <= _daemon_routes()
    assert [p["containerPort"] for p in watcher_container["ports"]] == [port]


def test_secret_is_mounted_at_run_secrets_with_setting_names(
    docs: dict[str, dict[str, Any]], watcher_container: dict[str, Any]
) -> None:
    secret = docs["Secret"]
    volume = _mounts(docs, watcher_container)["/run/secrets"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {"credentials__access_key", "credentials__secret_key"}
    known = {"__".join(path) for path in schema.iter_secret_fields()} | {"credentials__access_key"}
    assert set(secret["stringData"]) <= known
    # A volume on /run/secrets hides the service account token's mount point.
    assert docs["Deployment"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_config_loader_reads_the_mounted_secret_and_config(
    docs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Materialise the two volumes as the kubelet would and load them like the daemon."""
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    for name, value in docs["Secret"]["stringData"].items():
        (secrets / name).write_text(value)
    config = tmp_path / "config.toml"
    config.write_text(docs["ConfigMap"]["data"]["config.toml"])
    settings = loader.load_settings(config, env={}, secrets_dirs=[secrets], require_targets=True)
    assert settings.credentials.effective_kind == "aksk"
    assert (
        settings.credentials.access_key == docs["Secret"]["stringData"]["credentials__access_key"]
    )


def test_config_map_is_a_valid_configuration(
    docs: dict[str, dict[str, Any]], watcher_container: dict[str, Any]
) -> None:
    config_map = docs["ConfigMap"]
    volume = _mounts(docs, watcher_container)["/etc/cce-upgrade-watcher"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    settings = schema.Settings.model_validate(tomllib.loads(config_map["data"]["config.toml"]))
    assert settings.targets and settings.notify.urls
    assert settings.require_targets() == []


def test_writable_paths_are_volumes_and_the_root_is_read_only(
    docs: dict[str, dict[str, Any]], watcher_container: dict[str, Any]
) -> None:
    mounts = _mounts(docs, watcher_container)
    state = mounts["/var/lib/cce-upgrade-watcher"]
    assert "emptyDir" in state or "persistentVolumeClaim" in state
    assert "emptyDir" in mounts["/tmp"]
    security = watcher_container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001  # the image's USER
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_resources(watcher_container: dict[str, Any]) -> None:
    resources = watcher_container["resources"]
    assert resources["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert resources["limits"]["memory"] == "128Mi"


def test_the_sidecar_leaves_the_applications_rollout_alone(
    docs: dict[str, dict[str, Any]], watcher_container: dict[str, Any]
) -> None:
    """Adding the watcher must not change how the application's Deployment rolls out: no
    `strategy` (Kubernetes' default RollingUpdate stays), so the state cannot be a
    ReadWriteOnce claim that two overlapping pods would need."""
    assert "strategy" not in docs["Deployment"]["spec"]
    state = _mounts(docs, watcher_container)["/var/lib/cce-upgrade-watcher"]
    assert "emptyDir" in state
