"""Seed 002's side of a worker: its sessions' status updates to the backend.

``POST {BACKEND_URL}/api/webhooks/session-status`` with ``Authorization: Bearer
<WORKER_AUTH_TOKEN>`` and seed 002's body::

    {"sessionId": "user123-personal", "status": "qr_required",
     "phoneNumber": null, "qrCode": "data:image/png;base64,…",
     "timestamp": "2026-01-01T09:00:00.000Z"}

``status`` is seed 002's word for the session's state; ``phoneNumber`` is
``+digits`` once connected, else null; ``qrCode`` comes with a QR only.
A change seed 002 cannot tell from the last one reported (connecting, then
reconnecting: both "connecting") is not sent again.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

from wagate.backoff import Backoff
from wagate.clock import Clock
from wagate.domain.session import SEED_002, ChangeKind, SessionChange
from wagate.qr_image import qr_data_url
from wagate.uplinks.reporting import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_QUEUED,
    Report,
    Reporter,
)

STATUS_PATH = "/api/webhooks/session-status"


def seed002_status(change: SessionChange) -> dict[str, Any] | None:
    """Seed 002's status body for a change; None for a pairing code (no status of its own)."""
    said = _said(change)
    if said is None:
        return None
    status, phone, qr = said
    body: dict[str, Any] = {
        "sessionId": change.session_id,
        "status": status,
        "phoneNumber": f"+{phone}" if phone else None,
        "timestamp": change.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if qr:
        body["qrCode"] = qr_data_url(qr)
    return body


def _said(change: SessionChange) -> tuple[str, str | None, str | None] | None:
    """What a change tells seed 002: its status word, the phone, the QR."""
    if change.kind is ChangeKind.PAIR_CODE:
        return None
    phone = change.data.get("phone") if change.kind is ChangeKind.CONNECTED else None
    qr = change.data.get("qr") if change.kind is ChangeKind.QR else None
    return SEED_002[change.state], phone, qr


class StatusReporter(Reporter):
    """Sends a worker's session status updates to ``backend_url`` (``BACKEND_URL``).

    Give :meth:`on_change` to the worker as a listener; it never blocks (see
    :mod:`wagate.uplinks.reporting` for the queue, retries and drops).
    """

    def __init__(
        self,
        backend_url: str,
        token: str,
        *,
        client: httpx.AsyncClient,
        clock: Clock,
        backoff: Backoff = DEFAULT_BACKOFF,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_queued: int = DEFAULT_MAX_QUEUED,
        rng: random.Random | None = None,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            "seed002-status",
            backend_url.rstrip("/") + STATUS_PATH,
            client=client,
            clock=clock,
            backoff=backoff,
            max_attempts=max_attempts,
            max_queued=max_queued,
            rng=rng,
            stop_timeout_s=stop_timeout_s,
        )
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._last: dict[str, tuple[str, str | None, str | None]] = {}  # each one's last word

    async def on_change(self, change: SessionChange) -> None:
        """A worker listener: report ``change`` when seed 002 can tell it from the last one."""
        said = _said(change)
        if said is None or self._last.get(change.session_id) == said:
            return
        self._last[change.session_id] = said
        body = seed002_status(change)
        assert body is not None
        raw = json.dumps(body, separators=(",", ":")).encode()
        self.send(Report(change.session_id, body["status"], raw, self._headers))
