from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from wagate.clock import ManualClock
from wagate.domain.audit import AuditEvent
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange, SessionState
from wagate.errors import Conflict
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo


def _change(session_id: str, state: SessionState, at: datetime) -> SessionChange:
    return SessionChange(session_id, state, ChangeKind.STATE, at)


async def test_create_get_list_delete(session_repo: SessionRepo) -> None:
    created = await session_repo.create("s1", engine="sandbox", worker_id="w1", phone="6281")
    assert created.status is SessionState.CREATED
    assert created.created_at is not None and created.created_at.tzinfo is not None
    assert (await session_repo.get("s1")) == created
    await session_repo.create("s2", engine="sandbox", worker_id="w2")
    assert [s.id for s in await session_repo.find()] == ["s1", "s2"]
    assert [s.id for s in await session_repo.find(worker_id="w2")] == ["s2"]
    assert await session_repo.delete("s1") is True
    assert await session_repo.get("s1") is None
    assert await session_repo.delete("s1") is False


async def test_duplicate_id_is_a_conflict(session_repo: SessionRepo) -> None:
    await session_repo.create("dup", engine="sandbox")
    with pytest.raises(Conflict):
        await session_repo.create("dup", engine="sandbox")


async def test_qr_then_connected_sets_seed_000_columns(
    session_repo: SessionRepo, clock: ManualClock
) -> None:
    await session_repo.create("s", engine="sandbox")
    now = clock.now()
    await session_repo.record_qr(
        _change("s", SessionState.QR, now), "2@abc", now, now + timedelta(seconds=60)
    )
    s = await session_repo.get("s")
    assert s is not None
    assert (s.status, s.qr, s.qr_generated_at, s.qr_expires_at) == (
        SessionState.QR,
        "2@abc",
        now,
        now + timedelta(seconds=60),
    )
    assert (s.is_ready, s.is_connected) == (False, False)
    await clock.advance(5)
    await session_repo.record_connected(
        _change("s", SessionState.CONNECTED, clock.now()),
        phone_number="6281",
        jid="6281:3@s.whatsapp.net",
        wa_name="Ann",
        device_name="wagate",
        lid="1@lid",
    )
    s = await session_repo.get("s")
    assert s is not None
    assert (s.qr, s.qr_generated_at, s.qr_expires_at) == (None, None, None)
    assert (s.is_ready, s.is_connected, s.phone_number, s.wa_name) == (True, True, "6281", "Ann")
    assert s.last_connected_at == clock.now()
    assert s.updated_at == clock.now()


async def test_disconnect_records_kind_and_reason(
    session_repo: SessionRepo, clock: ManualClock
) -> None:
    await session_repo.create("s", engine="sandbox")
    await session_repo.record_disconnected(
        _change("s", SessionState.FAILED, clock.now()), DisconnectKind.BANNED, "temporary ban 24h"
    )
    s = await session_repo.get("s")
    assert s is not None
    assert (s.status, s.disconnect_kind, s.disconnect_reason) == (
        SessionState.FAILED,
        DisconnectKind.BANNED,
        "temporary ban 24h",
    )
    assert (s.is_connected, s.last_disconnected_at) == (False, clock.now())


async def test_expire_qrs_clears_only_expired(
    session_repo: SessionRepo, clock: ManualClock
) -> None:
    now = clock.now()
    for sid, ttl in (("old", 10), ("fresh", 100)):
        await session_repo.create(sid, engine="sandbox")
        change = _change(sid, SessionState.QR, now)
        await session_repo.record_qr(change, f"2@{sid}", now, now + timedelta(seconds=ttl))
    assert await session_repo.expire_qrs(now + timedelta(seconds=11)) == ["old"]
    old, fresh = await session_repo.get("old"), await session_repo.get("fresh")
    assert old is not None and fresh is not None
    assert (old.qr, old.qr_expires_at) == (None, None)
    assert fresh.qr == "2@fresh"


async def test_find_by_phone_matches_provisioned_or_linked(session_repo: SessionRepo) -> None:
    await session_repo.create("a", engine="sandbox", phone="111111111")
    await session_repo.create("b", engine="sandbox")
    await session_repo.update("b", phone_number="222222222")
    assert (await session_repo.find_by_phone("111111111")).id == "a"  # type: ignore[union-attr]
    assert (await session_repo.find_by_phone("222222222")).id == "b"  # type: ignore[union-attr]
    assert await session_repo.find_by_phone("333333333") is None


async def test_count_by_state(session_repo: SessionRepo) -> None:
    await session_repo.create("a", engine="sandbox")
    await session_repo.create("b", engine="sandbox")
    await session_repo.update("b", status=SessionState.CONNECTED)
    assert await session_repo.count_by_state() == {
        SessionState.CREATED: 1,
        SessionState.CONNECTED: 1,
    }


async def test_audit_log_round_trip(audit_repo: AuditRepo) -> None:
    await audit_repo.add("s", AuditEvent.QR_GENERATED, {"n": 1})
    await audit_repo.add("s", AuditEvent.CONNECT, {"phone": "1"})
    await audit_repo.add("other", AuditEvent.ERROR, {"code": "X"})
    entries = await audit_repo.recent("s")
    assert [e.event for e in entries] == ["connect", "qr_generated"]
    assert entries[1].data == {"n": 1}
    assert [e.event for e in await audit_repo.recent(event="error")] == ["error"]


async def test_timestamps_are_utc_in_the_database(db: Database, session_repo: SessionRepo) -> None:
    await session_repo.create("s", engine="sandbox")
    async with db.begin() as conn:
        if db.dialect == "postgresql":
            kind = await conn.scalar(
                sa.text(
                    "select data_type from information_schema.columns "
                    "where table_name='sessions' and column_name='created_at'"
                )
            )
            assert kind == "timestamp with time zone"
        else:
            raw = await conn.scalar(sa.text("select created_at from sessions"))
            assert str(raw).startswith("2026-01-01 00:00:00")


async def test_owners_are_the_holders_of_live_leases(
    db: Database, session_repo: SessionRepo, clock: ManualClock
) -> None:
    from wagate.storage.tables import session_leases

    now = clock.now()
    rows = [
        ("s1", "w1", now + timedelta(seconds=30)),
        ("s2", "w2", now + timedelta(seconds=30)),
        ("s3", "w3", now - timedelta(seconds=1)),  # expired: nobody holds it
        ("s4", None, None),  # released
    ]
    async with db.begin() as conn:
        for session_id, worker_id, expires_at in rows:
            await conn.execute(
                session_leases.insert().values(
                    session_id=session_id,
                    worker_id=worker_id,
                    expires_at=expires_at,
                    updated_at=now,
                )
            )
    assert await session_repo.owners() == {"s1": "w1", "s2": "w2"}
    assert await session_repo.owners("s2") == {"s2": "w2"}
    assert await session_repo.owners("s3") == {}
    await clock.advance(31)
    assert await session_repo.owners() == {}
