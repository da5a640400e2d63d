"""Where the CCE and IAM APIs live for a region (CCE_API.md 5).

Huawei Cloud puts every regional service at ``https://{service}.{region}.myhuaweicloud.com``,
except the Europe site (eu-west-101, Dublin), which uses ``myhuaweicloud.eu``. An override
always wins: it points the watcher at the simulator, at Open Telekom Cloud or at another
Huawei-based cloud without a code change.
"""

from __future__ import annotations

import re

from yarl import URL

from watcher.core.errors import ConfigError

DEFAULT_DOMAIN = "myhuaweicloud.com"
# Regions whose endpoints sit under a domain other than the default. eu-west-0 (Paris) is
# NOT here: it uses the .com domain.
REGION_DOMAINS: dict[str, str] = {"eu-west-101": "myhuaweicloud.eu"}

_REGION = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+$")


def cce_endpoint(region: str, override: str | None = None) -> str:
    """The CCE base URL for ``region``, or the normalised ``override`` when one is given."""
    return _endpoint("cce", region, override)


def iam_endpoint(region: str, override: str | None = None) -> str:
    """The IAM base URL for ``region``, or the normalised ``override`` when one is given."""
    return _endpoint("iam", region, override)


def _endpoint(service: str, region: str, override: str | None) -> str:
    if override:
        return normalise_override(override)
    if not _REGION.match(region):
        raise ConfigError([f"region {region!r} is not a region id such as 'ap-southeast-1'"])
    domain = REGION_DOMAINS.get(region, DEFAULT_DOMAIN)
    return f"https://{service}.{region}.{domain}"


def normalise_override(value: str) -> str:
    """Check an endpoint override is an http(s) base URL; return it without a trailing ``/``."""
    text = value.strip()
    try:
        url = URL(text)
    except (TypeError, ValueError):
        raise ConfigError(["an endpoint override is not a URL"]) from None
    if not url.absolute:
        raise ConfigError(["an endpoint override must be an absolute http:// or https:// URL"])
    shown = str(url.with_user(None))  # never echo userinfo: it may hold a password
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigError([f"endpoint {shown!r} must be an http:// or https:// URL with a host"])
    if url.query_string or url.fragment or url.user or url.password:
        raise ConfigError([f"endpoint {shown!r} must not carry a query, fragment or userinfo"])
    return text.rstrip("/")
