"""Configuration: the typed Settings tree, its loader, and secret-safe rendering.

Import from here: ``load_settings``, ``Settings`` and friends. The schema lives in
``schema``, source assembly and error formatting in ``loader``, masking in ``masking``.
"""

from __future__ import annotations

from watcher.config.durations import Duration, format_duration, parse_duration
from watcher.config.loader import (
    env_name,
    format_validation_error,
    load_settings,
    settings_from_mapping,
)
from watcher.config.masking import MASK, mask_url, masked_dict, render_masked
from watcher.config.schema import (
    CloudSettings,
    CredentialsSettings,
    HttpSettings,
    LoggingSettings,
    NotifySettings,
    NotifyUrlSetting,
    PolicySettings,
    PollingSettings,
    Route,
    Settings,
    Silence,
    Target,
    TemplateOverride,
    TemplatesSettings,
)
from watcher.config.sources import DEFAULT_CONFIG_PATH, default_secrets_dirs

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MASK",
    "CloudSettings",
    "CredentialsSettings",
    "Duration",
    "HttpSettings",
    "LoggingSettings",
    "NotifySettings",
    "NotifyUrlSetting",
    "PolicySettings",
    "PollingSettings",
    "Route",
    "Settings",
    "Silence",
    "Target",
    "TemplateOverride",
    "TemplatesSettings",
    "default_secrets_dirs",
    "env_name",
    "format_duration",
    "format_validation_error",
    "load_settings",
    "mask_url",
    "masked_dict",
    "parse_duration",
    "render_masked",
    "settings_from_mapping",
]
