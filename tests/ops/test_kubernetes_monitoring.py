"""Every Kubernetes manifest passes its schema; the standalone Deployment, its Service, the
ServiceMonitor and the PrometheusRule agree with each other and with the daemon."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops import k8s_schema
from tests.ops.test_kubernetes import _daemon_routes
from watcher.config import loader, schema

REPO = k8s_schema.REPO
STANDALONE = k8s_schema.MANIFESTS / "standalone.yaml"
SERVICE_MONITOR = k8s_schema.MANIFESTS / "servicemonitor.yaml"
PROMETHEUS_RULE = k8s_schema.MANIFESTS / "prometheusrule.yaml"
RULES = REPO / "deploy" / "prometheus" / "cce-upgrade-watcher.rules.yml"

DOCS = list(k8s_schema.all_documents())


def _by_kind(path: Path) -> dict[str, dict[str, Any]]:
    docs = k8s_schema.documents(path)
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), f"one object per kind in {path.name}"
    return by_kind


@pytest.fixture(scope="module")
def standalone() -> dict[str, dict[str, Any]]:
    by_kind = _by_kind(STANDALONE)
    assert set(by_kind) == {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
    return by_kind


@pytest.fixture(scope="module")
def container(standalone: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (only,) = standalone["Deployment"]["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = only
    return found


def _mounts(deployment: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


# -- schemas -----------------------------------------------------------------------------------


def test_every_manifest_file_is_covered() -> None:
    kinds = {(path.name, doc["kind"]) for path, doc in DOCS}
    assert {
        ("sidecar.yaml", "Deployment"),
        ("standalone.yaml", "Deployment"),
        ("standalone.yaml", "Service"),
        ("servicemonitor.yaml", "ServiceMonitor"),
        ("prometheusrule.yaml", "PrometheusRule"),
    } <= kinds


@pytest.mark.parametrize("version", k8s_schema.VERSIONS)
@pytest.mark.parametrize(("path", "doc"), DOCS, ids=[f"{p.name}:{d['kind']}" for p, d in DOCS])
def test_manifest_passes_its_schema(path: Path, doc: dict[str, Any], version: str) -> None:
    k8s_schema.validate(doc, version, path.name)


def _break(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(doc)
    node: Any = broken
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[leaf] = value
    return broken


@pytest.mark.parametrize(
    ("path", "kind", "dotted", "value", "complaint"),
    [
        # A typo in a field name: Kubernetes would drop it silently without strict validation.
        (
            STANDALONE,
            "Deployment",
            "spec.template.spec.containers.0.livenessProbe.httpGet.paht",
            "/healthz",
            "paht",
        ),
        (STANDALONE, "Service", "spec.ports.0.port", "http", "'http' is not of type 'integer'"),
        (SERVICE_MONITOR, "ServiceMonitor", "spec.endpoints.0.intervall", "30s", "intervall"),
        (PROMETHEUS_RULE, "PrometheusRule", "spec.groups.0.rules.0.fore", "5m", "fore"),
        (PROMETHEUS_RULE, "PrometheusRule", "spec.groups.0.rules.0.for", "5 minutes", "for"),
    ],
)
def test_the_schema_check_catches_mistakes(
    path: Path, kind: str, dotted: str, value: Any, complaint: str
) -> None:
    """The validation above can fail, for built-in kinds and for the operator's CRDs."""
    broken = _break(_by_kind(path)[kind], dotted, value)
    with pytest.raises(k8s_schema.InvalidManifest, match=re.escape(complaint)):
        k8s_schema.validate(broken, k8s_schema.VERSIONS[-1], path.name)


# -- the standalone Deployment -----------------------------------------------------------------


def test_standalone_runs_one_pod_at_a_time_on_a_persistent_volume(
    standalone: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    deployment = standalone["Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    state = _mounts(deployment, container)["/var/lib/cce-upgrade-watcher"]
    claim = standalone["PersistentVolumeClaim"]
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_standalone_probes_and_port_match_the_daemon(container: dict[str, Any]) -> None:
    port = schema.HttpSettings().port
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"/healthz", "/readyz", "/metrics"} <= _daemon_routes()


def test_standalone_config_and_secret_are_read_by_the_loader(
    standalone: dict[str, dict[str, Any]], container: dict[str, Any], tmp_path: Path
) -> None:
    deployment = standalone["Deployment"]
    mounts = _mounts(deployment, container)
    config_map = standalone["ConfigMap"]
    assert mounts["/etc/cce-upgrade-watcher"]["configMap"]["name"] == config_map["metadata"]["name"]
    secret_name = mounts["/run/secrets"]["secret"]["secretName"]
    header = STANDALONE.read_text().split("---", 1)[0]
    assert f"kubectl create secret generic {secret_name}" in header
    # The file names the header's `kubectl create secret` gives are settings the loader reads.
    named = re.findall(r"--from-file=(\w+)=", header)
    known = {"__".join(path) for path in schema.iter_secret_fields()} | {"credentials__access_key"}
    assert named and set(named) <= known
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    for name in named:
        (secrets / name).write_text("CHANGE-ME-0123456789abcdef-" + name)
    config = tmp_path / "config.toml"
    config.write_text(config_map["data"]["config.toml"])
    settings = loader.load_settings(config, env={}, secrets_dirs=[secrets], require_targets=True)
    assert settings.credentials.effective_kind == "aksk"
    assert settings.http.token is not None  # the Service exposes the port: /api/ needs it
    assert schema.Settings.model_validate(tomllib.loads(config_map["data"]["config.toml"]))


def test_standalone_is_locked_down_like_the_sidecar(
    standalone: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    pod = standalone["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsUser"] == 10001
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "emptyDir" in _mounts(standalone["Deployment"], container)["/tmp"]


# -- Service, ServiceMonitor, PrometheusRule ---------------------------------------------------


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_service_reaches_the_pods(
    standalone: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    service = standalone["Service"]
    pod_labels = standalone["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert _selects(service["spec"]["selector"], pod_labels)
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}


def test_service_monitor_scrapes_the_service_metrics(
    standalone: dict[str, dict[str, Any]],
) -> None:
    monitor = _by_kind(SERVICE_MONITOR)["ServiceMonitor"]
    service = standalone["Service"]
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["path"] in _daemon_routes()


def test_the_alerts_select_the_job_the_service_monitor_creates(
    standalone: dict[str, dict[str, Any]],
) -> None:
    """The operator names the job after the Service (no jobLabel set)."""
    monitor = _by_kind(SERVICE_MONITOR)["ServiceMonitor"]
    assert "jobLabel" not in monitor["spec"]
    job = standalone["Service"]["metadata"]["name"]
    exprs = [rule["expr"] for group in _rules()["groups"] for rule in group["rules"]]
    jobs = set(re.findall(r'job="([^"]+)"', " ".join(exprs)))
    assert jobs == {job}


def _rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def test_prometheus_rule_holds_exactly_the_rules_file() -> None:
    """One set of alerts: the operator's object and the plain rules file never drift."""
    rule = _by_kind(PROMETHEUS_RULE)["PrometheusRule"]
    assert rule["spec"] == _rules()


def test_deploy_readme_mentions_every_monitoring_and_kubernetes_file() -> None:
    readme = (REPO / "deploy" / "README.md").read_text()
    folders = ("kubernetes", "prometheus", "grafana")
    files = [p for folder in folders for p in sorted((REPO / "deploy" / folder).iterdir())]
    missing = [
        str(p.relative_to(REPO / "deploy"))
        for p in files
        if p.name != "README.md" and p.name not in readme
    ]
    assert missing == []
