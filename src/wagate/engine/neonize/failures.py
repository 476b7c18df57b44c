"""neonize's and Go's failures → :mod:`wagate.errors`, once; and proxies in whatsmeow's terms.

Go hands errors over as strings (a ``NeonizeError`` with the Go message, or
the error text a connect returns), so they are classified by their words.
Proxy URLs may carry credentials: every message that leaves this module has
them redacted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wagate.engine.neonize import _loader as nz
from wagate.errors import InvalidInput, ProxyFailure, TransientError, WagateError

# whatsmeow accepts these (``SetProxyAddress``); it resolves names through a
# SOCKS5 proxy itself, so ``socks5h`` (what seed 004 asks for) means ``socks5`` here.
GO_PROXY_SCHEMES = {"http": "http", "https": "https", "socks5": "socks5", "socks5h": "socks5"}

# What a dial through a proxy says when the proxy, not WhatsApp, is the problem.
_PROXY_WORDS = (
    "proxyconnect",
    "socks connect",
    "proxy authentication required",
    "bad gateway",
    "unsupported proxy scheme",
    "proxy",
)
_TIMEOUT_WORDS = ("deadline exceeded", "i/o timeout", "timed out", "timeout")
# Send failures that no retry will fix.
_PERMANENT_SEND = (
    "unknown server",
    "must be a user jid",
    "invalid jid",
    "server returned error 400",
    "server returned error 403",
    "server returned error 404",
    "server returned error 406",
    "not-acceptable",
    "item-not-found",
    "forbidden",
)


def go_proxy_url(url: str) -> str:
    """The session's proxy URL as whatsmeow takes it (``socks5h://`` → ``socks5://``)."""
    parts = urlsplit(url.strip())
    scheme = GO_PROXY_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ProxyFailure(
            f"proxy {redact_url(url)} cannot be used: whatsmeow takes http, https and socks5 only"
        )
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def proxy_settings(url: str | None) -> Any:
    """neonize's ``ProxySettings`` for a proxy URL, or None to connect directly."""
    if url is None:
        return None
    return nz.binder.ProxySettings(proxy_address=go_proxy_url(url))


def redact_url(url: str | None) -> str:
    if not url:
        return "(none)"
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    user = f"{parts.username}:***@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}"


def redact(text: str, proxy: str | None) -> str:
    """``text`` without the proxy's password (Go may quote the URL it dialled)."""
    if not proxy:
        return text
    parts = urlsplit(proxy)
    for secret in (parts.password, parts.netloc if parts.password else None):
        if secret:
            text = text.replace(secret, "***")
    return text


def connect_error(text: str, proxy: str | None) -> TransientError:
    """Why a connect task ended before the session got going. Always worth a retry."""
    clean = redact(text, proxy)[:500]
    lowered = clean.lower()
    if proxy and (
        any(word in lowered for word in _PROXY_WORDS)
        or any(word in lowered for word in _TIMEOUT_WORDS)
    ):
        return ProxyFailure(f"proxy {redact_url(proxy)} failed: {clean}")
    return TransientError(f"cannot reach WhatsApp: {clean}")


def call_error(verb: str, exc: BaseException) -> WagateError:
    """A failed verb (send, download, groups…): retry, or the request is wrong."""
    if isinstance(exc, WagateError):
        return exc
    text = str(exc)[:500] or type(exc).__name__
    lowered = text.lower()
    if verb == "send" and any(word in lowered for word in _PERMANENT_SEND):
        return InvalidInput("to", f"WhatsApp refused the message: {text}")
    return TransientError(f"{verb} failed: {text}")
