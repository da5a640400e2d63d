"""Offline, strict schema validation of the Kubernetes manifests in deploy/kubernetes/.

Built-in kinds are checked with kubernetes-validate (the API's own OpenAPI schemas, shipped in
the package, strict: an unknown field is an error, as with `kubectl apply`'s server-side field
validation). The Prometheus Operator kinds are custom resources that package does not know: they
are checked against the openAPIV3Schema of their CRDs, vendored in tests/ops/crds/ from
prometheus-operator v0.93.0 (Apache-2.0), made strict the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
CRDS = Path(__file__).resolve().parent / "crds"
# The oldest Kubernetes minor the manifests promise to work on, and the newest the package has.
VERSIONS = ("1.27.0", kubernetes_validate.latest_version())


class InvalidManifest(AssertionError):
    """A manifest that its schema rejects; the message names the file, kind and field."""


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in documents(path):
            yield path, doc


@functools.cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict JSON schema of each vendored CRD version."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in documents(path):
            spec = crd["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                schema = _strict(version["schema"]["openAPIV3Schema"])
                found[(api_version, spec["names"]["kind"])] = schema
    return found


def _strict(schema: Any) -> Any:
    """Copy of an OpenAPI schema where objects with declared properties allow no others."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validate(doc: dict[str, Any], version: str, where: str = "") -> None:
    """Raise InvalidManifest when ``doc`` does not fit its kind's schema at ``version``."""
    kind = f"{doc.get('apiVersion')}/{doc.get('kind')}"
    crd = _crd_schemas().get((str(doc.get("apiVersion")), str(doc.get("kind"))))
    try:
        if crd is not None:
            jsonschema.Draft7Validator(crd).validate(doc)
        else:
            kubernetes_validate.validate(doc, version, strict=True)
    except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
        raise InvalidManifest(f"{where} {kind}: {exc}") from None
