"""Proxy URLs: parsed, checked and redacted in one place (seed 004: ``socks5h://`` only)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from wagate.errors import InvalidInput

ALLOWED_SCHEMES = ("socks5h",)


@dataclass(frozen=True, slots=True)
class ProxyURL:
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def redacted(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        return f"{self.scheme}://{auth}{self.host}:{self.port}"


def parse_proxy(url: str, field: str = "proxy") -> ProxyURL:
    """Parse a proxy URL, accepting only ``socks5h://[user:pass@]host:port``.

    ``socks5h`` makes the proxy resolve DNS, so a session's lookups leave from
    the proxy's address too (seed 004's proxy rules).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InvalidInput(field, "proxy is not a valid URL") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise InvalidInput(
            field, f"proxy must be a socks5h:// URL (got scheme {parts.scheme or 'none'!r})"
        )
    if not parts.hostname or port is None:
        raise InvalidInput(field, "proxy must name a host and a port: socks5h://host:port")
    if not 1 <= port <= 65535:
        raise InvalidInput(field, f"proxy port must be 1-65535 (got {port})")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInput(field, "proxy URL must not have a path, query or fragment")
    return ProxyURL(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def redact(url: str | None) -> str | None:
    """A proxy URL fit for logs and API responses (password hidden)."""
    if url is None:
        return None
    try:
        return parse_proxy(url).redacted()
    except InvalidInput:
        return "<invalid proxy>"
