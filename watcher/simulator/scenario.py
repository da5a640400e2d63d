"""Scenario files: what one simulated cluster and its upgrade workflow do, and when.

A scenario is data (TOML, format in config/scenarios/README.md), parsed here into frozen
dataclasses and validated strictly (an unknown key is an error, so a typo never silently
does nothing). This module only reads files; playing a scenario is state.py's job.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import watcher

APIS = ("cce", "autopilot")
ACTIONS = ("cancel",)
DEFAULT_POINTS = ("PreCheck", "Snapshot", "Cluster", "PostCheck")
DEFAULT_LINES = (
    ("PreCheck", "Snapshot", True),
    ("Snapshot", "Cluster", True),
    ("Cluster", "PostCheck", False),
)


class ScenarioError(ValueError):
    """A scenario cannot be found or its file is invalid."""


@dataclass(frozen=True, slots=True)
class ClusterDef:
    id: str
    name: str
    version: str
    api: str = "cce"
    category: str = "CCE"
    flavor: str = "cce.s1.small"
    type: str = "VirtualMachine"
    alias: str | None = None  # metadata.alias: the display name people gave the cluster


@dataclass(frozen=True, slots=True)
class PointDef:
    """A point's initial state; ``None`` fields are left out of the JSON entirely."""

    task_type: str
    status: str | None = "Init"
    task_id: str | None = None
    start: str | None = ""
    end: str | None = ""
    expire: str | None = None
    progress: str | None = None


@dataclass(frozen=True, slots=True)
class LineDef:
    start: str
    end: str
    critical: bool | None = None


@dataclass(frozen=True, slots=True)
class CheckItemDef:
    name: str
    level: str = "Fatal"
    kind: str = "Exception"
    group: str = "LimitCheck"
    phase: str = "Failed"
    message: str = ""
    error_codes: tuple[str, ...] = ()
    risk_source: dict[str, Any] | None = None  # served verbatim as riskSource


@dataclass(frozen=True, slots=True)
class StepDef:
    """One timeline entry, ``at`` scenario seconds after the workflow was loaded."""

    at: float
    point: str | None = None
    status: str | None = None
    task_id: str | None = None
    progress: str | None = None
    phase: str | None = None
    action: str | None = None
    line_from: str | None = None
    note: str = ""
    task_phase: str | None = None  # the upgrade task's own phase, e.g. "Pause" / "Running"
    cluster_reason: str | None = None  # the cluster's status.reason from this step on
    cluster_message: str | None = None  # the cluster's status.message from this step on


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    cluster: ClusterDef
    workflow_id: str
    target_version: str
    workflow_name: str | None = None
    created: float = 0.0
    precheck_validity: float = 40.0
    precheck_message: str = ""
    precheck_phase: str = "Failed"  # the task's phase when its point Failed: Failed | Error
    precheck_items: tuple[CheckItemDef, ...] = ()
    points: tuple[PointDef, ...] = ()
    lines: tuple[LineDef, ...] = ()
    steps: tuple[StepDef, ...] = ()
    initial: dict[str, Any] | None = None  # a verbatim workflow JSON (the seed scenario)

    @property
    def duration(self) -> float:
        return self.steps[-1].at if self.steps else 0.0


def scenario_dirs() -> list[Path]:
    """Where names are looked up: the repository's config/scenarios, the copy installed with
    the package (watcher/simulator/scenarios links to config/scenarios in the repository, so
    a wheel carries them), then $WATCHER_SCENARIO_DIR."""
    dirs = [
        Path(watcher.__file__).resolve().parents[1] / "config" / "scenarios",
        Path(__file__).parent / "scenarios",
    ]
    extra = os.environ.get("WATCHER_SCENARIO_DIR")
    if extra:
        dirs.append(Path(extra))
    return dirs


def find_scenario(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve an explicit file path, else a name in scenario_dirs()."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    name = str(name_or_path)
    for folder in scenario_dirs():
        path = folder / f"{name}.toml"
        if path.is_file():
            return path
    names = sorted({p.stem for folder in scenario_dirs() for p in folder.glob("*.toml")})
    close = difflib.get_close_matches(name, names, n=1)
    raise ScenarioError(
        f"scenario {name!r} not found (neither a file nor a name in"
        f" {', '.join(str(d) for d in scenario_dirs())})"
        + (f"; did you mean {close[0]!r}?" if close else "")
        + (f" Scenarios: {', '.join(names)}" if names else "")
    )


def list_scenarios() -> dict[str, str]:
    """Name -> description of every scenario file found, first directory wins."""
    found: dict[str, str] = {}
    for folder in scenario_dirs():
        for path in sorted(folder.glob("*.toml")):
            if path.stem not in found:
                try:
                    found[path.stem] = load_scenario(path).description
                except ScenarioError as exc:
                    found[path.stem] = f"(invalid: {exc})"
    return found


def load_scenario(name_or_path: str | os.PathLike[str]) -> Scenario:
    path = find_scenario(name_or_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    try:
        return _parse(path, raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None


_TOP = {"name", "description", "precheck_validity", "cluster", "workflow", "precheck", "steps"}
_CLUSTER = {"id", "name", "version", "api", "category", "flavor", "type", "alias"}
_WORKFLOW = {"id", "name", "target_version", "created", "initial_json", "points", "lines"}
_POINT = {"type", "status", "task_id", "start", "end", "expire", "progress"}
_LINE = {"from", "to", "critical"}
_PRECHECK = {"message", "items", "phase"}
_ITEM = {"name", "level", "kind", "group", "phase", "message", "error_codes", "risk_source"}
_STEP = {
    "at",
    "point",
    "status",
    "task_id",
    "progress",
    "phase",
    "action",
    "line_from",
    "note",
    "task_phase",
    "cluster_reason",
    "cluster_message",
}


def _table(raw: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError(f"{where} must be a table")
    unknown = set(raw) - allowed
    if unknown:
        raise KeyError(f"unknown key(s) in {where}: {', '.join(sorted(unknown))}")
    return raw


def _opt_str(raw: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = raw.get(key, default)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _parse(path: Path, raw: dict[str, Any]) -> Scenario:
    top = _table(raw, _TOP, "the file")
    name = str(top.get("name", path.stem))
    cluster_raw = _table(top["cluster"], _CLUSTER, "[cluster]")
    cluster = ClusterDef(
        id=str(cluster_raw["id"]),
        name=str(cluster_raw["name"]),
        version=str(cluster_raw["version"]),
        api=str(cluster_raw.get("api", "cce")),
        category=str(cluster_raw.get("category", "CCE")),
        flavor=str(cluster_raw.get("flavor", "cce.s1.small")),
        type=str(cluster_raw.get("type", "VirtualMachine")),
        alias=_opt_str(cluster_raw, "alias"),
    )
    if cluster.api not in APIS:
        raise ValueError(f"[cluster] api must be one of {APIS}")
    wf = _table(top.get("workflow", {}), _WORKFLOW, "[workflow]")
    initial: dict[str, Any] | None = None
    if "initial_json" in wf:
        loaded = json.loads((path.parent / str(wf["initial_json"])).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not loaded.get("metadata", {}).get("uid"):
            raise ValueError("initial_json must hold a workflow object with metadata.uid")
        initial = loaded
    spec = (initial or {}).get("spec", {})
    workflow_id = str(wf.get("id") or (initial or {}).get("metadata", {}).get("uid", ""))
    if not workflow_id:
        raise KeyError("[workflow] id is required")
    target = str(wf.get("target_version") or spec.get("targetVersion") or "")
    if not target:
        raise KeyError("[workflow] target_version is required")

    points = tuple(
        PointDef(
            task_type=str(p["type"]),
            status=_opt_str(p, "status", "Init"),
            task_id=_opt_str(p, "task_id"),
            start=_opt_str(p, "start", ""),
            end=_opt_str(p, "end", ""),
            expire=_opt_str(p, "expire", "" if p["type"] == "PreCheck" else None),
            progress=_opt_str(p, "progress"),
        )
        for p in (_table(x, _POINT, "[[workflow.points]]") for x in wf.get("points", []))
    )
    if not points and initial is None:
        points = tuple(PointDef(t, expire="" if t == "PreCheck" else None) for t in DEFAULT_POINTS)
    lines = tuple(
        LineDef(str(x["from"]), str(x["to"]), x.get("critical"))
        for x in (_table(y, _LINE, "[[workflow.lines]]") for y in wf.get("lines", []))
    )
    if not lines and "points" not in wf and initial is None:
        lines = tuple(LineDef(a, b, c) for a, b, c in DEFAULT_LINES)

    pre = _table(top.get("precheck", {}), _PRECHECK, "[precheck]")
    items = tuple(
        CheckItemDef(
            name=str(i["name"]),
            level=str(i.get("level", "Fatal")),
            kind=str(i.get("kind", "Exception")),
            group=str(i.get("group", "LimitCheck")),
            phase=str(i.get("phase", "Failed")),
            message=str(i.get("message", "")),
            error_codes=tuple(str(c) for c in i.get("error_codes", [])),
            risk_source=dict(i["risk_source"]) if "risk_source" in i else None,
        )
        for i in (_table(x, _ITEM, "[[precheck.items]]") for x in pre.get("items", []))
    )
    steps = []
    for entry in top.get("steps", []):
        s = _table(entry, _STEP, "[[steps]]")
        step = StepDef(
            at=float(s["at"]),
            point=_opt_str(s, "point"),
            status=_opt_str(s, "status"),
            task_id=_opt_str(s, "task_id"),
            progress=_opt_str(s, "progress"),
            phase=_opt_str(s, "phase"),
            action=_opt_str(s, "action"),
            line_from=_opt_str(s, "line_from"),
            note=str(s.get("note", "")),
            task_phase=_opt_str(s, "task_phase"),
            cluster_reason=_opt_str(s, "cluster_reason"),
            cluster_message=_opt_str(s, "cluster_message"),
        )
        if step.action is not None and step.action not in ACTIONS:
            raise ValueError(f"step action must be one of {ACTIONS}")
        if step.status is not None and step.point is None:
            raise ValueError("a step with a status needs a point")
        steps.append(step)
    steps.sort(key=lambda s: s.at)  # stable: equal times keep file order
    return Scenario(
        name=name,
        description=str(top.get("description", "")),
        cluster=cluster,
        workflow_id=workflow_id,
        workflow_name=_opt_str(wf, "name"),
        target_version=target,
        created=float(wf.get("created", 0.0)),
        precheck_validity=float(top.get("precheck_validity", 40.0)),
        precheck_message=str(pre.get("message", "")),
        precheck_phase=str(pre.get("phase", "Failed")),
        precheck_items=items,
        points=points,
        lines=lines,
        steps=tuple(steps),
        initial=initial,
    )
