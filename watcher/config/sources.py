"""The settings sources (environment, secret files, TOML, SDK fallback) and their load context.

Split from ``loader`` so that ``schema.Settings.settings_customise_sources`` can name its
source chain without importing the loader, which imports the schema (no import cycle).
The load context (which environment mapping, which file, which secret directories) travels
in a ContextVar, because ``settings_customise_sources`` is a classmethod with a fixed
signature; ``loader`` sets it around each build.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "WATCHER_"
DEFAULT_CONFIG_PATH = Path("/etc/cce-upgrade-watcher/config.toml")
ETC_SECRETS_DIR = Path("/etc/cce-upgrade-watcher/secrets")
RUN_SECRETS_DIR = Path("/run/secrets")
CONFIG_ENV = "WATCHER_CONFIG"
SDK_ENV = {
    "ak": "HUAWEICLOUD_SDK_AK",
    "sk": "HUAWEICLOUD_SDK_SK",
    "token": "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "project": "HUAWEICLOUD_SDK_PROJECT_ID",
    "iam": "HUAWEICLOUD_SDK_IAM_ENDPOINT",
}
SECRET_FILE_PREFIXES = ("", "watcher_")
"""Secret file names: ``credentials__secret_key``, or the same with a ``watcher_`` prefix."""


@dataclass(frozen=True)
class LoadContext:
    env: Mapping[str, str]
    toml_data: Mapping[str, Any] = field(default_factory=dict)
    secrets_dirs: tuple[Path, ...] = ()


CONTEXT: contextvars.ContextVar[LoadContext | None] = contextvars.ContextVar(
    "watcher_config_load", default=None
)


def default_secrets_dirs(env: Mapping[str, str]) -> tuple[Path, ...]:
    """Secret directories in increasing priority (the last one wins on a clash)."""
    dirs = [ETC_SECRETS_DIR, RUN_SECRETS_DIR]
    if creds := env.get("CREDENTIALS_DIRECTORY"):
        dirs.append(Path(creds))
    return tuple(dirs)


class _MappingEnvSource(EnvSettingsSource):
    """EnvSettingsSource over an explicit mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )

    def __repr__(self) -> str:  # never show the environment
        return "EnvSettingsSource()"


class _DictSource(PydanticBaseSettingsSource):
    """A fixed dict (the parsed TOML file) as a settings source."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return "TomlFileSource()"


class _FallbackSource(PydanticBaseSettingsSource):
    """Lowest priority: the SDK's HUAWEICLOUD_SDK_* names and systemd's $STATE_DIRECTORY.

    It reads the state merged from every higher source, so the SDK keys are used only when
    the watcher's own settings give neither access_key nor secret_key (never a mix of both).
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        env, state = self._environ, self.current_state
        out: dict[str, Any] = {}
        creds = state.get("credentials")
        creds = creds if isinstance(creds, Mapping) else {}
        kind = creds.get("kind", "auto")
        if (
            kind in ("auto", "aksk")
            and creds.get("access_key") is None
            and creds.get("secret_key") is None
            and env.get(SDK_ENV["ak"])
            and env.get(SDK_ENV["sk"])
        ):
            sdk: dict[str, Any] = {
                "access_key": env[SDK_ENV["ak"]],
                "secret_key": env[SDK_ENV["sk"]],
            }
            if creds.get("security_token") is None and env.get(SDK_ENV["token"]):
                sdk["security_token"] = env[SDK_ENV["token"]]
            out["credentials"] = sdk
        cloud = state.get("cloud")
        cloud = cloud if isinstance(cloud, Mapping) else {}
        cloud_fill = {}
        if cloud.get("project_id") is None and env.get(SDK_ENV["project"]):
            cloud_fill["project_id"] = env[SDK_ENV["project"]]
        if cloud.get("iam_endpoint") is None and env.get(SDK_ENV["iam"]):
            cloud_fill["iam_endpoint"] = env[SDK_ENV["iam"]]
        if cloud_fill:
            out["cloud"] = cloud_fill
        # systemd may list several directories separated by ":"; ours is the first.
        if state.get("state_dir") is None and (state_dirs := env.get("STATE_DIRECTORY")):
            out["state_dir"] = state_dirs.split(":")[0]
        return out

    def __repr__(self) -> str:
        return "FallbackSource()"


def customise_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    file_secret_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The source chain for Settings (called from Settings.settings_customise_sources)."""
    ctx = CONTEXT.get()
    if ctx is None:  # Settings() called directly: behave like a plain BaseSettings
        ctx = LoadContext(env=dict(os.environ), secrets_dirs=default_secrets_dirs(os.environ))
    secrets = [
        NestedSecretsSettingsSource(
            file_secret_settings,
            secrets_dir=list(ctx.secrets_dirs),
            secrets_dir_missing="ok",
            secrets_prefix=prefix,
            secrets_nested_delimiter="__",
        )
        for prefix in SECRET_FILE_PREFIXES
    ]
    return (
        init_settings,
        _MappingEnvSource(settings_cls, ctx.env),
        *secrets,
        _DictSource(settings_cls, ctx.toml_data),
        _FallbackSource(settings_cls, ctx.env),
    )
