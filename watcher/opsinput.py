"""Silences and acknowledgements from an operator's words: CLI options and API JSON.

Why this module exists: ``silence add`` / ``ack`` and ``POST /api/v1/silences`` /
``POST /api/v1/acks`` must accept the same fields with the same rules and the same error
messages, so both parse here. Errors are ``InputError`` naming the field; rejected values
are not echoed (a pasted secret must not reach a log).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from watcher.config.durations import DURATION_HINT, parse_duration
from watcher.core.acks import Acknowledgement
from watcher.core.events import Kind
from watcher.core.silences import Silence
from watcher.core.timeparse import EARLIEST, LATEST

MAX_TEXT = 500  # creator, comment, note: a sentence, not a document
DEFAULT_SILENCE = timedelta(hours=2)
DEFAULT_ACK = timedelta(hours=2)


class InputError(ValueError):
    """A field an operator gave is missing or wrong; the message names the field."""


def _text(data: Mapping[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise InputError(f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string")
    if len(value) > MAX_TEXT:
        raise InputError(f"{name} is longer than {MAX_TEXT} characters")
    return value.strip()


def _opt(data: Mapping[str, Any], name: str) -> str | None:
    return _text(data, name) or None


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be an ISO 8601 time with offset, e.g. 2026-05-01T22:00Z")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{name} must be an ISO 8601 time with offset, e.g. 2026-05-01T22:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise InputError(f"{name} needs a UTC offset (e.g. Z or +08:00)")
    try:
        moment = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise InputError(f"{name} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)")
    return moment


def _duration(data: Mapping[str, Any], name: str) -> timedelta | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    try:
        duration = parse_duration(value)
    except ValueError:
        raise InputError(f"{name}: {DURATION_HINT}") from None
    if duration <= timedelta(0):
        raise InputError(f"{name} must be positive")
    return duration


def _end(
    data: Mapping[str, Any], start: datetime, default: timedelta, *, end_key: str = "until"
) -> datetime:
    end = _time(data, end_key)
    duration = _duration(data, "for")
    if end is not None and duration is not None:
        raise InputError(f"give either {end_key} or for, not both")
    if end is None:
        step = duration or default
        if step > LATEST - start:
            raise InputError(f"for is too long: the end would be after {LATEST:%Y-%m-%d}")
        end = start + step
    if end <= start:
        raise InputError(f"{end_key} must be after the start")
    return end


SILENCE_FIELDS = (
    "target", "cluster_id", "workflow_id", "kinds", "labels", "starts_at", "until", "for",
    "creator", "comment",
)  # fmt: skip
ACK_FIELDS = ("workflow", "by", "note", "until", "for")


def _known_fields(data: Mapping[str, Any], known: Sequence[str]) -> None:
    """A misspelt field (``start``, ``cluster``) is an error, not a silently wider silence."""
    for name in data:
        if name not in known:
            # A prefix ("start", "cluster") says more than letter-level similarity.
            close = [k for k in known if k.startswith(str(name))] or difflib.get_close_matches(
                str(name), known, n=1, cutoff=0.5
            )
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"unknown field {str(name)[:40]!r} (fields: {', '.join(known)}){hint}")


def _kind_globs(values: Sequence[str]) -> tuple[str, ...]:
    """Kind globs that each match at least one event kind (a typo would mute nothing)."""
    kinds = [str(k) for k in Kind]
    out = []
    for value in (v.strip() for v in values):
        if not value:
            continue
        if not fnmatch.filter(kinds, value):
            close = difflib.get_close_matches(value, kinds, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"kinds: {value[:60]!r} matches no event kind (e.g. task.*, task.failed,"
                f" workflow.reminder){hint}"
            )
        out.append(value)
    return tuple(out) or ("*",)


def parse_labels(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, str]:
    """``["env=prod", ...]`` (CLI) or ``{"env": "prod"}`` (JSON) to a dict."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in items.items()):
            raise InputError("labels must map strings to strings")
        return dict(items)
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise InputError("labels must map strings to strings")
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("labels are given as key=value")
        out[key.strip()] = value.strip()
    return out


def silence_from(data: Mapping[str, Any], now: datetime) -> Silence:
    """A new silence from JSON-like fields: target, cluster_id, workflow_id, kinds, labels,
    starts_at, until or for (default 2h), creator (required), comment (required)."""
    _known_fields(data, SILENCE_FIELDS)
    kinds_value = data.get("kinds") or ["*"]
    if isinstance(kinds_value, str):
        kinds_value = [k for k in kinds_value.split(",") if k.strip()]
    if not isinstance(kinds_value, list | tuple) or not all(
        isinstance(k, str) for k in kinds_value
    ):
        raise InputError("kinds must be a list of kind globs such as task.* or workflow.reminder")
    start = _time(data, "starts_at") or now
    labels = parse_labels(data.get("labels"))
    matchers = (_opt(data, "target"), _opt(data, "cluster_id"), _opt(data, "workflow_id"))
    if not any(matchers) and not labels and data.get("kinds") in (None, "", []):
        # As with amtool: muting everything by omission is too easy a mistake.
        raise InputError(
            "give at least one matcher (target, cluster_id, workflow_id, kinds or labels); "
            "to mute everything, say target '*'"
        )
    return Silence(
        until=_end(data, max(start, now), DEFAULT_SILENCE),
        target=_opt(data, "target"),
        cluster_id=_opt(data, "cluster_id"),
        workflow_id=_opt(data, "workflow_id"),
        kinds=_kind_globs(kinds_value),
        labels=labels,
        starts_at=start,
        creator=_text(data, "creator", required=True),
        comment=_text(data, "comment", required=True),
    )


def ack_from(data: Mapping[str, Any], workflow_key: str, now: datetime) -> Acknowledgement:
    """An acknowledgement from fields: by (required), note, until or for (default 2h)."""
    _known_fields(data, ACK_FIELDS)
    return Acknowledgement(
        workflow_key=workflow_key,
        by=_text(data, "by", required=True),
        note=_text(data, "note"),
        created_at=now,
        until=_end(data, now, DEFAULT_ACK),
    )


def resolve_workflow(keys: Sequence[str], given: str) -> str:
    """The stored workflow key ``TARGET/UID`` that ``given`` names (the key itself or the
    workflow id alone when only one target has it)."""
    given = given.strip()
    if given in keys:
        return given
    matches = [k for k in keys if k.rsplit("/", 1)[-1] == given and not given.startswith("_")]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(
            f"workflow id {given} is watched on several targets; give one of: " + ", ".join(matches)
        )
    raise InputError(
        f"no watched workflow {given}; give a workflow id or TARGET/WORKFLOW_ID as listed by "
        "/api/v1/workflows"
    )
