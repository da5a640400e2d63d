"""Secret-safe views of the configuration, for ``config show``, logs and status pages.

Every SecretStr becomes ``********``. Notification URLs are secrets too (tokens in the host or
path, passwords, ``?+Authorization=`` headers), so ``mask_url`` keeps only what identifies the
destination: the scheme, the host (unless apprise says the host is a token) and the query
keys. apprise's own ``url(privacy=True)`` is consulted for the host only, because it prints
custom headers, payload keys and some identifiers in clear (LIBRARIES.md 1.13).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from watcher.config.schema import Settings

MASK = "********"
_PYDANTIC_SECRET = "**********"  # noqa: S105  (what SecretStr dumps as, not a password)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _looks_like_token(host: str) -> bool:
    """A host that is not a DNS name or address: a long opaque word (feishu://TOKEN)."""
    if not host or host == "localhost" or "." in host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return len(host) >= 8
    return False


@functools.lru_cache(maxsize=256)
def _apprise_host(url: str) -> str | None:
    """The host part of apprise's privacy rendering, or None if apprise cannot parse the URL."""
    try:
        import apprise  # noqa: PLC0415  (slow import; only when masking URLs)

        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if not plugin:
            return None
        render = cast("Callable[..., object]", plugin.url)  # apprise leaves it untyped
        private = str(render(privacy=True))
    except Exception:  # any parsing trouble means: fall back to our own rules
        return None
    netloc = private.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    return netloc.rpartition("@")[2]


def mask_url(url: str, *, use_apprise: bool = True) -> str:
    """Mask credentials, tokens and path secrets in an apprise URL; keep scheme and host.

    ``json://user:pw@127.0.0.1:8080/hook/T0KEN?+Authorization=Bearer%20x`` becomes
    ``json://****@127.0.0.1:8080/...?+Authorization=****``.
    """
    if "://" not in url:
        return MASK
    scheme, rest = url.split("://", 1)
    parts = urlsplit("x://" + rest)
    netloc = parts.netloc
    _userinfo, at, hostport = netloc.rpartition("@")
    masked_host = hostport
    apprise_host = _apprise_host(url) if use_apprise else None
    if apprise_host is not None and apprise_host != hostport:
        masked_host = apprise_host if "..." in apprise_host or "*" in apprise_host else "****"
    elif _looks_like_token(hostport.split(":", 1)[0]):
        masked_host = "****"
    out = f"{scheme.lower()}://" + ("****@" if at else "") + masked_host
    if parts.path not in ("", "/"):
        out += "/..."
    if parts.query:
        # Keys name options and headers (+Authorization); values and bare words may be secret.
        masked = [
            f"{seg.split('=', 1)[0]}=****" if "=" in seg else "****"
            for seg in parts.query.split("&")
            if seg
        ]
        out += "?" + "&".join(masked)
    if parts.fragment:
        out += "#..."
    return out


def mask_access_key(value: str) -> str:
    """Keep the first four characters of an access key ID, enough to tell keys apart."""
    return value[:4] + "****" if len(value) > 8 else MASK


def _replace_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _replace_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_secrets(v) for v in value]
    if value == _PYDANTIC_SECRET:
        return MASK
    return value


def masked_dict(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain JSON types, with every secret masked."""
    data: dict[str, Any] = _replace_secrets(settings.model_dump(mode="json"))
    creds = data["credentials"]
    if settings.credentials.access_key:
        creds["access_key"] = mask_access_key(settings.credentials.access_key)
    for item, dumped in zip(settings.notify.urls, data["notify"]["urls"], strict=True):
        dumped["url"] = mask_url(item.url.get_secret_value())
    if settings.heartbeat.url is not None:
        data["heartbeat"]["url"] = mask_url(
            settings.heartbeat.url.get_secret_value(), use_apprise=False
        )
    creds["effective_kind"] = settings.credentials.effective_kind
    return data


# ----------------------------------------------------------------------------- TOML writer


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _emit(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any], header: str) -> None:
    plain = {
        k: v
        for k, v in table.items()
        if v is not None and not (isinstance(v, dict) and v) and not _is_table_array(v)
    }
    if header:
        lines.extend(["", header])
    lines.extend(f"{_key(k)} = {_scalar(v)}" for k, v in plain.items())
    for key, value in table.items():
        dotted = ".".join(_key(p) for p in (*path, key))
        if isinstance(value, dict) and value:
            _emit(lines, (*path, key), value, f"[{dotted}]")
        elif _is_table_array(value):
            for item in value:
                _emit(lines, (*path, key), item, f"[[{dotted}]]")


def to_toml(data: Mapping[str, Any]) -> str:
    """Render nested dicts of JSON types as TOML (None values are left out)."""
    lines: list[str] = []
    _emit(lines, (), data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def render_masked(settings: Settings, fmt: Literal["toml", "json"] = "toml") -> str:
    """The effective configuration, secrets masked, as TOML (with a header) or JSON."""
    data = masked_dict(settings)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    data.get("credentials", {}).pop("effective_kind", None)
    source = str(settings.config_path) if settings.config_path else "no file"
    header = (
        f"# Effective configuration (from {source}, environment and secret files).\n"
        f"# Secrets are masked as {MASK}; credentials resolve to"
        f" {settings.credentials.effective_kind!r}.\n"
    )
    return header + to_toml(data)
