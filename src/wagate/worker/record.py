"""What a worker needs of the record of its sessions: :class:`SessionRecord` and :class:`AuditLog`.

A worker reads each session's row and writes what its runner makes of it:
the state with its events, the QR, the connection, the disconnect. In
``wagate serve`` and a fleet the record is the database
(``storage.repos.sessions.SessionRepo``, ``storage.repos.audit.AuditRepo``,
which satisfy these protocols as they are). A worker with no database of its
own (seed 001's edge worker) keeps the record elsewhere and reports it over
its uplink: it implements these two protocols, and the runner, the
supervisor and the host run on it unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from wagate.clock import Clock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import (
    CLEAR_QR,
    DisconnectKind,
    RecordsChanges,
    Session,
    SessionChange,
    SessionState,
    Uplink,
    state_columns,
)

log = logging.getLogger(__name__)


class SessionRecord(Protocol):
    """The sessions' rows, as a worker reads and writes them."""

    async def get(self, session_id: str) -> Session | None: ...

    async def find(
        self,
        *,
        worker_id: str | None = None,
        states: Iterable[SessionState] | None = None,
        uplink: Uplink | None = None,
    ) -> list[Session]: ...

    async def update(self, session_id: str, **values: Any) -> None:
        """Columns that report no change of the session (its worker, its proxy)."""
        ...

    async def record(self, change: SessionChange, **columns: Any) -> None:
        """A runner's change: its state, ``columns``, and its events, together."""
        ...

    async def record_qr(
        self, change: SessionChange, qr: str, generated_at: datetime, expires_at: datetime
    ) -> None: ...

    async def record_connected(
        self,
        change: SessionChange,
        *,
        phone_number: str,
        jid: str,
        wa_name: str | None,
        device_name: str | None,
        lid: str | None,
    ) -> None: ...

    async def record_disconnected(
        self,
        change: SessionChange,
        kind: DisconnectKind | None,
        reason: str,
        *,
        attempts: int | None = None,
    ) -> None: ...

    async def expire_qrs(self, now: datetime) -> list[str]:
        """Clear every QR whose validity ran out; the sessions it cleared."""
        ...


class AuditLog(Protocol):
    async def add(
        self, session_id: str | None, event: AuditEvent, data: dict[str, Any] | None = None
    ) -> None: ...


class MemoryRecord(RecordsChanges):
    """A :class:`SessionRecord` and :class:`AuditLog` in this process's memory.

    The record of a worker with no database of its own (seed 001's edge
    worker): the sessions it was given (:meth:`put`), what their runners
    made of them, and the last ``audit_limit`` audit entries. ``on_change``
    hears every recorded change, after it is recorded (an edge worker
    reports them to its worker-proxy).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        on_change: Callable[[SessionChange], Awaitable[None]] | None = None,
        audit_limit: int = 1000,
    ) -> None:
        self._clock = clock
        self._rows: dict[str, Session] = {}
        self._on_change = on_change
        self.audit: deque[tuple[str | None, AuditEvent, dict[str, Any]]] = deque(maxlen=audit_limit)

    # --- what the worker's owner does -----------------------------------------------------

    def put(self, session: Session) -> None:
        """Know ``session`` (or replace what was known of it)."""
        self._rows[session.id] = session

    def forget(self, session_id: str) -> None:
        self._rows.pop(session_id, None)

    # --- SessionRecord ------------------------------------------------------------------

    async def get(self, session_id: str) -> Session | None:
        return self._rows.get(session_id)

    async def find(
        self,
        *,
        worker_id: str | None = None,
        states: Iterable[SessionState] | None = None,
        uplink: Uplink | None = None,
    ) -> list[Session]:
        wanted = set(states) if states is not None else None
        return [
            s
            for s in sorted(self._rows.values(), key=lambda s: (s.created_at or _EPOCH, s.id))
            if (worker_id is None or s.worker_id == worker_id)
            and (wanted is None or s.status in wanted)
            and (uplink is None or s.uplink is uplink)
        ]

    async def update(self, session_id: str, **values: Any) -> None:
        self._write(session_id, values)

    async def record(self, change: SessionChange, **columns: Any) -> None:
        if self._write(change.session_id, {**state_columns(change.state), **columns}):
            if self._on_change is not None:
                await self._on_change(change)

    async def expire_qrs(self, now: datetime) -> list[str]:
        expired = [
            s.id
            for s in self._rows.values()
            if s.qr is not None and s.qr_expires_at is not None and s.qr_expires_at < now
        ]
        for session_id in expired:
            self._write(session_id, dict(CLEAR_QR))
        return expired

    # --- AuditLog -----------------------------------------------------------------------

    async def add(
        self, session_id: str | None, event: AuditEvent, data: dict[str, Any] | None = None
    ) -> None:
        self.audit.append((session_id, event, dict(data or {})))
        log.info("audit %s %s %s", session_id or "-", event.value, data or {})

    def _write(self, session_id: str, values: dict[str, Any]) -> bool:
        row = self._rows.get(session_id)
        if row is None:
            return False  # deleted meanwhile: as a missing row, no error
        values = dict(values, updated_at=self._clock.now())
        if "status" in values:
            values["status"] = SessionState(values["status"])
        kind = values.get("disconnect_kind")
        if isinstance(kind, str):
            values["disconnect_kind"] = DisconnectKind(kind)
        self._rows[session_id] = dataclasses.replace(row, **values)
        return True


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
