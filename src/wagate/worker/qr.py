"""Seed 000's QR manager semantics: write a QR only when it is new or its validity ran out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(slots=True)
class _Shown:
    code: str
    generated_at: datetime
    expires_at: datetime


class QRTracker:
    """Remembers the last QR written per session, to skip rewriting an unchanged one."""

    def __init__(self, max_validity: timedelta) -> None:
        self.max_validity = max_validity
        self._shown: dict[str, _Shown] = {}

    def should_update(self, session_id: str, code: str, now: datetime) -> bool:
        shown = self._shown.get(session_id)
        return shown is None or shown.code != code or now >= shown.expires_at

    def expiry(self, now: datetime, ttl_s: float | None) -> datetime:
        """When a QR shown ``now`` stops being valid: the engine's TTL, at most ``max_validity``."""
        validity = self.max_validity
        if ttl_s is not None and ttl_s > 0:
            validity = min(validity, timedelta(seconds=ttl_s))
        return now + validity

    def updated(self, session_id: str, code: str, now: datetime, expires_at: datetime) -> None:
        self._shown[session_id] = _Shown(code, now, expires_at)

    def forget(self, session_id: str) -> None:
        self._shown.pop(session_id, None)
