"""Assemble Settings from init kwargs, environment, secret files and the TOML file.

Priority, highest first: keyword arguments, ``WATCHER_*`` environment variables (``__``
nests), secret files, the TOML file, then the Huawei SDK's environment names as a fallback
and systemd's ``$STATE_DIRECTORY`` as the default state directory.

Every failure becomes one ConfigError whose ``problems`` are one line each, naming the key and
its environment variable. Input values are never quoted: pydantic runs with
``hide_input_in_errors`` and we format ``errors(include_input=False)`` ourselves, TOML syntax
errors keep only tomllib's fixed message and position, and the original exception is dropped
before ConfigError is raised so that no traceback carries it along.

The load context (which environment mapping, which file, which secret directories; see
``sources``) travels in
a ContextVar, because ``settings_customise_sources`` is a classmethod with a fixed signature.
Passing ``env=`` therefore keeps ``os.environ`` out of the result entirely.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_settings import (
    SettingsError,
)

from watcher.config.schema import Settings
from watcher.config.sources import (
    CONFIG_ENV,
    CONTEXT,
    DEFAULT_CONFIG_PATH,
    ENV_PREFIX,
    LoadContext,
    default_secrets_dirs,
)
from watcher.core.errors import ConfigError

# ------------------------------------------------------------------------------ error lines


def env_name(loc: Sequence[str | int]) -> str:
    """The environment variable that sets a key; inside a list, the list's JSON variable."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            return ENV_PREFIX + "__".join(parts).upper() + " as JSON"
        parts.append(part)
    return ENV_PREFIX + "__".join(parts).upper()


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "Field required",
}


def _hint(loc: Sequence[str | int], msg: str) -> str:
    if len(loc) == 3 and loc[0] == "targets" and loc[2] in ("region", "project_id"):
        return f"{msg} (set it on the target or in [cloud])"
    return msg


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The settings model that holds the key at ``loc`` (list indexes skipped)."""
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part)
        found = _find_model(field_info.annotation) if field_info else None
        if found is None:
            return None
        model = found
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (found := _find_model(arg)) is not None:
            return found
    return None


def suggest_key(loc: Sequence[str | int]) -> str | None:
    """The existing key closest to an unknown one (``activ_s`` -> ``active_s``), or None."""
    if not loc or not isinstance(loc[-1], str):
        return None
    model = _model_at(loc)
    if model is None:
        return None
    close = difflib.get_close_matches(loc[-1].lower(), list(model.model_fields), n=1, cutoff=0.6)
    return close[0] if close else None


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``key.path: message (env WATCHER_KEY__PATH)``. No input values."""
    lines: list[str] = []
    for err in exc.errors(include_input=False, include_url=False, include_context=True):
        loc = tuple(err["loc"])
        if err["type"] == "watcher_problems":
            items = [(loc + tuple(sub), msg) for sub, msg in err.get("ctx", {}).get("problems", [])]
        else:
            msg = _MESSAGES.get(err["type"], err["msg"])
            msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
            items = [(loc, msg)]
        for item_loc, msg in items:
            line = f"{_dotted(item_loc)}: {_hint(item_loc, msg)} (env {env_name(item_loc)})"
            if err["type"] == "extra_forbidden" and (close := suggest_key(item_loc)):
                line += f"; did you mean {close!r}?"
            if line not in lines:
                lines.append(line)
    return lines


_FIELD_IN_SETTINGS_ERROR = re.compile(r'field "([A-Za-z0-9_]+)" from source "([A-Za-z_]+)"')


def _bad_json_env(env: Mapping[str, str], key: str) -> list[str]:
    """The WATCHER_<KEY>[__...] variables whose value looks like JSON but does not parse."""
    head = env_name((key,))
    found = []
    for name, value in env.items():
        upper = name.upper()
        if (upper == head or upper.startswith(head + "__")) and value.strip()[:1] in ("[", "{"):
            try:
                json.loads(value)
            except ValueError:
                found.append(upper)
    return sorted(found)


def _format_settings_error(exc: SettingsError, env: Mapping[str, str]) -> list[str]:
    text = str(exc)
    if match := _FIELD_IN_SETTINGS_ERROR.search(text):
        key, source = match.groups()
        if "Secrets" in source:
            return [f"{key}: a secret file for this key is not valid JSON"]
        names = _bad_json_env(env, key) or [env_name((key,))]
        return [f"{key}: the environment value is not valid JSON (env {name})" for name in names]
    return ["configuration sources: " + text.split("\n", 1)[0][:200]]


def _unknown_env(env: Mapping[str, str]) -> list[str]:
    """WATCHER_* variables whose top-level key does not exist (pydantic would ignore them)."""
    fields = set(Settings.model_fields)
    found: list[str] = []
    for name in env:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        top = upper[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if top not in fields:
            line = f"{top or '(empty)'}: unknown key (env {upper})"
            if top and (close := suggest_key((top,))):
                line += f"; did you mean {close!r}?"
            found.append(line)
    return sorted(found)


# ---------------------------------------------------------------------------------- loading


def resolve_config_path(
    path: str | Path | None, env: Mapping[str, str], default_path: Path | None
) -> tuple[Path | None, bool]:
    """Pick the TOML file; the flag says whether it was asked for (and so must exist)."""
    if path is not None and str(path) != "":
        return Path(path), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    return default_path, False


def _read_toml(path: Path, required: bool) -> tuple[dict[str, Any], list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, ([f"config file {path}: not found"] if required else [])
    except IsADirectoryError:
        return {}, [f"config file {path}: is a directory"]
    except OSError as exc:
        return {}, [f"config file {path}: cannot be read ({exc.strerror or 'I/O error'})"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {}, [f"config file {path}: not valid UTF-8"]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages are fixed phrases plus "(at line N, column M)"; no file content.
        return {}, [f"config file {path}: TOML syntax error: {exc}"]


def _build(overrides: Mapping[str, Any], ctx: LoadContext) -> tuple[Settings | None, list[str]]:
    """Run the sources under ``ctx``; return the settings or the problem lines."""
    token = CONTEXT.set(ctx)
    settings: Settings | None = None
    problems: list[str] = []
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = format_validation_error(exc)
    except SettingsError as exc:
        problems = _format_settings_error(exc, ctx.env)
    except UnicodeDecodeError:
        problems = ["secrets: a file in a secrets directory is not valid UTF-8"]
    except OSError as exc:
        problems = [f"secrets: cannot read a secret file ({exc.strerror or 'I/O error'})"]
    finally:
        CONTEXT.reset(token)
    return settings, problems


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    """Validate a plain dict (the TOML shape) with no environment, secret files or file.

    Raises ConfigError like load_settings. Meant for tests and for embedding.
    """
    settings, problems = _build({}, LoadContext(env={}, toml_data=dict(data)))
    if problems or settings is None:
        raise ConfigError(problems or ["configuration could not be loaded"])
    return settings


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    secrets_dirs: Sequence[Path] | None = None,
    default_path: Path | None = DEFAULT_CONFIG_PATH,
    require_targets: bool = False,
    **overrides: Any,
) -> Settings:
    """Load and validate the configuration, or raise ConfigError with one line per problem.

    ``path`` beats ``$WATCHER_CONFIG`` beats ``default_path``; only the default may be missing.
    ``env`` replaces ``os.environ`` entirely (also for $CREDENTIALS_DIRECTORY, $STATE_DIRECTORY
    and the HUAWEICLOUD_SDK_* fallback). ``secrets_dirs`` replaces the default directory list
    (/etc/cce-upgrade-watcher/secrets, /run/secrets, $CREDENTIALS_DIRECTORY; the last wins).
    ``overrides`` are init kwargs, the highest-priority source.
    """
    environ: Mapping[str, str] = dict(os.environ) if env is None else dict(env)
    config_path, required = resolve_config_path(path, environ, default_path)
    problems: list[str] = []
    toml_data: dict[str, Any] = {}
    read_path: Path | None = None
    if config_path is not None:
        toml_data, problems = _read_toml(config_path, required)
        read_path = config_path if config_path.is_file() else None
    if problems:
        raise ConfigError(problems)
    dirs = (
        tuple(Path(d) for d in secrets_dirs)
        if secrets_dirs is not None
        else default_secrets_dirs(environ)
    )
    problems = [f"secrets directory {d}: not a directory" for d in dirs if d.is_file()]
    if problems:
        raise ConfigError(problems)
    ctx = LoadContext(env=environ, toml_data=toml_data, secrets_dirs=dirs)
    settings, problems = _build(overrides, ctx)
    # Raised outside any except block so the original error (with its input) is not chained.
    problems = _unknown_env(environ) + problems
    if settings is not None and require_targets:
        problems += settings.require_targets()
    if problems or settings is None:
        raise ConfigError(problems or ["configuration could not be loaded"])
    settings._config_path = read_path  # a private attribute, not a field
    return settings
