"""The record a worker writes: the database's and the in-memory one keep it alike.

The same assertions run over ``SessionRepo`` (the database) and
``MemoryRecord`` (a worker with no database, seed 001's edge worker); then a
worker runs a whole session on the in-memory record alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from wagate.clock import ManualClock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import (
    ChangeKind,
    DisconnectKind,
    Session,
    SessionChange,
    SessionState,
    Uplink,
)
from wagate.engine.base import QRCode
from wagate.settings import Settings
from wagate.storage.auth_state import MemoryAuthStore
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import RecordingHandler, ScriptedEngine, connected, eventually
from wagate.worker.host import Worker
from wagate.worker.record import MemoryRecord, SessionRecord


@pytest.fixture(params=["database", "memory"])
async def record(
    request: pytest.FixtureRequest, session_repo: SessionRepo, clock: ManualClock
) -> AsyncIterator[tuple[SessionRecord, MemoryRecord | None]]:
    if request.param == "database":
        for sid in ("s1", "s2"):
            await session_repo.create(sid, engine="scripted", worker_id="w1")
        yield session_repo, None
        return
    memory = MemoryRecord(clock)
    for sid in ("s1", "s2"):
        memory.put(
            Session(sid, SessionState.CREATED, "scripted", worker_id="w1", created_at=clock.now())
        )
    yield memory, memory


def _change(clock: ManualClock, sid: str, state: SessionState, kind: ChangeKind) -> SessionChange:
    return SessionChange(sid, state, kind, clock.now(), {})


async def test_a_runners_changes_land_in_the_row_alike(
    record: tuple[SessionRecord, MemoryRecord | None], clock: ManualClock
) -> None:
    rec, _ = record
    expires = clock.now() + timedelta(seconds=60)
    await rec.record_qr(
        _change(clock, "s1", SessionState.QR, ChangeKind.QR), "2@q", clock.now(), expires
    )
    row = await rec.get("s1")
    assert row is not None and (row.status, row.qr, row.qr_expires_at) == (
        SessionState.QR,
        "2@q",
        expires,
    )
    change = _change(clock, "s1", SessionState.CONNECTED, ChangeKind.CONNECTED)
    await rec.record_connected(
        change, phone_number="628111", jid="628111:1@s.whatsapp.net", wa_name="Ann",
        device_name="wagate", lid=None,
    )  # fmt: skip
    row = await rec.get("s1")
    assert row is not None and row.status is SessionState.CONNECTED and row.is_connected
    assert (row.phone_number, row.qr, row.last_connected_at) == ("628111", None, clock.now())
    await clock.advance(5)
    change = _change(clock, "s1", SessionState.RECONNECTING, ChangeKind.DISCONNECTED)
    await rec.record_disconnected(change, DisconnectKind.CONNECTION_LOST, "network", attempts=2)
    row = await rec.get("s1")
    assert row is not None and row.status is SessionState.RECONNECTING and not row.is_connected
    assert (row.disconnect_kind, row.disconnect_reason, row.reconnect_attempts) == (
        DisconnectKind.CONNECTION_LOST,
        "network",
        2,
    )
    assert row.updated_at == clock.now()


async def test_reads_sweeps_and_missing_rows_alike(
    record: tuple[SessionRecord, MemoryRecord | None], clock: ManualClock
) -> None:
    rec, _ = record
    await rec.update("s2", proxy="socks5h://p:1080")
    await rec.record(_change(clock, "s2", SessionState.CONNECTING, ChangeKind.STATE))
    running = await rec.find(states=[SessionState.CONNECTING], uplink=Uplink.FLEET)
    assert [s.id for s in running] == ["s2"] and running[0].proxy == "socks5h://p:1080"
    assert [s.id for s in await rec.find(worker_id="w1")] == ["s1", "s2"]
    change = _change(clock, "s1", SessionState.QR, ChangeKind.QR)
    await rec.record_qr(change, "2@q", clock.now(), clock.now() + timedelta(seconds=10))
    assert await rec.expire_qrs(clock.now()) == []
    await clock.advance(11)
    assert await rec.expire_qrs(clock.now()) == ["s1"]
    row = await rec.get("s1")
    assert row is not None and row.qr is None
    await rec.record(_change(clock, "gone", SessionState.QR, ChangeKind.STATE))  # no error
    assert await rec.get("gone") is None


async def test_a_worker_runs_a_session_on_the_memory_record_alone(
    settings: Settings, clock: ManualClock
) -> None:
    heard: list[SessionState] = []

    async def hear(change: SessionChange) -> None:
        heard.append(change.state)

    memory = MemoryRecord(clock, on_change=hear)
    memory.put(Session("e1", SessionState.CREATED, "scripted", created_at=clock.now()))
    engine = ScriptedEngine([[QRCode("2@edge,a,b,c", 60), connected("628222")]])
    worker = Worker(
        replace(settings.worker, worker_id="edge-1"),
        engine=engine,  # type: ignore[arg-type]
        sessions=memory,
        audit=memory,
        clock=clock,
        handler=RecordingHandler(),
        auth=MemoryAuthStore,
    )
    async with worker:
        assert await worker.start("e1") is True
        await eventually(lambda: worker.runner_state("e1") is SessionState.CONNECTED)
        await worker.stop("e1")
    row = await memory.get("e1")
    assert row is not None and row.status is SessionState.STOPPED
    assert row.phone_number == "628222" and row.worker_id == "edge-1"
    assert heard[:3] == [SessionState.CONNECTING, SessionState.QR, SessionState.CONNECTED]
    assert any(event is AuditEvent.CONNECT for _, event, _ in memory.audit)
