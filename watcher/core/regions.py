"""Where the CCE and IAM APIs live for a region (CCE_API.md 5): pure rules.

In core because both the cloud client (which calls the endpoints) and the config layer
(which validates regions and overrides, ``config lint``'s "did you mean") use them, and
config must not import cloud. yarl only parses URLs (no I/O).

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

# Huawei Cloud region ids and where they are (the console's region list), for
# `config validate`: an unknown id gets a "did you mean". Other Huawei-based clouds (Open
# Telekom Cloud's eu-de, eu-nl, ...) need cce_endpoint anyway, and then the list is not used.
KNOWN_REGIONS: dict[str, str] = {
    "af-north-1": "Cairo",
    "af-south-1": "Johannesburg",
    "ap-southeast-1": "Hong Kong",
    "ap-southeast-2": "Bangkok",
    "ap-southeast-3": "Singapore",
    "ap-southeast-4": "Jakarta",
    "ap-southeast-5": "Manila",
    "cn-east-2": "Shanghai2",
    "cn-east-3": "Shanghai1",
    "cn-east-4": "Wuhu",
    "cn-east-5": "Qingdao",
    "cn-north-1": "Beijing1",
    "cn-north-2": "Beijing2",
    "cn-north-4": "Beijing4",
    "cn-north-9": "Ulanqab",
    "cn-south-1": "Guangzhou",
    "cn-south-2": "Shenzhen",
    "cn-south-4": "Guangzhou-InvitationOnly",
    "cn-southwest-2": "Guiyang1",
    "eu-west-0": "Paris",
    "eu-west-101": "Dublin",
    "la-north-2": "Mexico City2",
    "la-south-2": "Santiago",
    "me-east-1": "Riyadh",
    "my-kualalumpur-1": "Kuala Lumpur",
    "na-mexico-1": "Mexico City1",
    "ru-northwest-2": "Moscow2",
    "sa-brazil-1": "Sao Paulo1",
    "tr-west-1": "Istanbul",
}

_LOOKALIKE_DIGITS = str.maketrans({"l": "1", "i": "1", "o": "0", "z": "2", "s": "5"})
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


def suggest_region(region: str) -> str | None:
    """The known region id closest to ``region`` (a typo), or None when nothing is close."""
    import difflib  # noqa: PLC0415  (only `config validate` asks)

    text = region.strip().lower()
    # Digits typed as look-alike letters ("ap-southeast-l") first: difflib scores every
    # one-character change the same and would pick any neighbour.
    head, _, tail = text.rpartition("-")
    confusable = f"{head}-{tail.translate(_LOOKALIKE_DIGITS)}" if head else text
    if confusable in KNOWN_REGIONS:
        return confusable
    close = difflib.get_close_matches(text, KNOWN_REGIONS, n=1, cutoff=0.6)
    return close[0] if close else None


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
