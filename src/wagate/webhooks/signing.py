"""Webhook signatures: how wagate signs a delivery and how a receiver checks it.

This module is public and dependency-free, so a receiver written in Python can
import it (``from wagate.webhooks import verify_signature``). Every delivery
carries::

    X-Wagate-Timestamp: 1767225600            (unix seconds when it was signed)
    X-Wagate-Signature: v1=<hex>              (one or more, comma-separated)
    X-Wagate-Event:     message.received
    X-Wagate-Delivery:  1234                  (same on every retry: dedupe on it)

and ``v1`` is ``hex(HMAC-SHA256(secret, f"{timestamp}." + raw body))``. The
timestamp is inside the signed bytes, so a captured request cannot be replayed
later with a fresh timestamp; :func:`verify_signature` refuses timestamps
outside a tolerance (five minutes by default).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Wagate-Timestamp"
SIGNATURE_HEADER = "X-Wagate-Signature"
EVENT_HEADER = "X-Wagate-Event"
DELIVERY_HEADER = "X-Wagate-Delivery"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "sign",
    "signature_header",
    "verify_signature",
]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` followed by ``body``, keyed by ``secret``."""
    message = f"{int(timestamp)}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(timestamp: int, body: bytes, *secrets: str) -> str:
    """The ``X-Wagate-Signature`` value: one ``v1=`` entry per secret (several while rotating)."""
    return ", ".join(f"{SCHEME}={sign(s, timestamp, body)}" for s in secrets)


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``body`` was signed with ``secret`` within ``tolerance_s`` of ``now``.

    ``headers`` may be any mapping (header names are matched case-insensitively);
    ``body`` must be the raw request bytes, before any JSON parsing. Any ``v1=``
    entry of the signature header may match.
    """
    stamp = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    stamp = stamp.strip() if stamp is not None else ""
    if given is None or not (stamp.isascii() and stamp.isdigit()):
        return False
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).encode()
    # compare against every entry (no early exit), each in constant time
    matches = [hmac.compare_digest(expected, candidate) for candidate in _candidates(given)]
    return any(matches)


def _candidates(value: str) -> list[bytes]:
    found = []
    for part in value.split(","):
        scheme, sep, digest = part.strip().partition("=")
        if sep and scheme == SCHEME and digest:
            found.append(digest.strip().lower().encode())
    return found


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
