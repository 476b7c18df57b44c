"""Proxies: URLs parsed, checked and redacted in one place (seed 004: ``socks5h://``), the
pool's rows, and the pure rule that picks one (seed 004, Flow 1).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlsplit

from wagate.errors import InvalidInput

ALLOWED_SCHEMES = ("socks5h", "socks5")  # socks5: DNS resolved here, not at the proxy (a warning)


class ProxyStatus(enum.StrEnum):
    UNCHECKED = "unchecked"  # added, not checked yet: usable (seed 004 trusts its PROXY_URLs)
    ACTIVE = "active"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy of the pool, and how many sessions leave through it now (``load``)."""

    id: int
    url: str
    status: ProxyStatus
    label: str | None = None
    source: str = "api"  # env (PROXY_URL_n) | api | provision
    last_checked_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    next_check_at: datetime | None = None
    created_at: datetime | None = None
    load: int = 0

    @property
    def usable(self) -> bool:
        return self.status is not ProxyStatus.BAD


def pick_proxy(
    proxies: Iterable[Proxy], max_per_proxy: int, *, exclude: Iterable[str] = ()
) -> Proxy | None:
    """Seed 004's choice from the pool: a usable proxy under ``max_per_proxy`` sessions, the
    least loaded (ties: checked healthy first, then the oldest); None when none has room."""
    skip = set(exclude)
    fits = [p for p in proxies if p.usable and p.load < max_per_proxy and p.url not in skip]
    if not fits:
        return None
    return min(fits, key=lambda p: (p.load, p.status is not ProxyStatus.ACTIVE, p.id))


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
    """Parse ``socks5h://[user:pass@]host:port`` (or ``socks5://``), nothing else.

    ``socks5h`` makes the proxy resolve DNS, so a session's lookups leave from
    the proxy's address too (seed 004's proxy rules); ``socks5`` is accepted
    with a warning where it is added (its lookups leave from here).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InvalidInput(field, "proxy is not a valid URL") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise InvalidInput(
            field,
            f"proxy must be a socks5h:// (or socks5://) URL "
            f"(got scheme {parts.scheme or 'none'!r})",
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


_CREDENTIALS = re.compile(r"(?i)\b(socks5h?|https?)://([^:@/\s]+):[^@\s]+@")


def scrub(text: str) -> str:
    """``text`` (an engine's error, say) with every proxy URL's password hidden."""
    return _CREDENTIALS.sub(r"\1://\2:***@", text)
