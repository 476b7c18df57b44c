"""Edge workers' claims: a session held under ``edge:<W>``, queued messages handed out once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from wagate.clock import ManualClock
from wagate.domain.session import SessionState, Uplink
from wagate.settings import Settings
from wagate.storage.db import Database, create_engine
from wagate.storage.repos.leases import SessionLeaseRepo
from wagate.storage.repos.outbound import NewOutbound, OutboundRepo
from wagate.storage.repos.sessions import SessionRepo

from ..conftest import PG_URL

TTL = timedelta(seconds=30)
on_postgres = pytest.mark.skipif(
    not PG_URL,
    reason="races over several connections need PostgreSQL; SQLite serialises writers "
    "in one file (set WAGATE_TEST_DATABASE_URL to run this)",
)


@pytest.fixture
def leases(db: Database, clock: ManualClock) -> SessionLeaseRepo:
    return SessionLeaseRepo(db, clock)


@pytest.fixture
def outbound(db: Database, clock: ManualClock) -> OutboundRepo:
    return OutboundRepo(db, clock)


async def queue(outbound: OutboundRepo, session_id: str, *wa_ids: str) -> None:
    for wa_id in wa_ids:
        new = NewOutbound(session_id, wa_id, "6281@s.whatsapp.net", "text", "hi", {"v": 1})
        await outbound.enqueue(new)


# --- a session's claim --------------------------------------------------------------


async def test_a_claim_is_renewed_by_its_holder_and_refused_to_others(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    first = await leases.claim("s1", "edge:w1", TTL)
    assert first is not None and first.epoch == 1
    await clock.advance(10)
    again = await leases.claim("s1", "edge:w1", TTL)
    assert again is not None and again.epoch == 1 and again.expires_at == clock.now() + TTL
    assert await leases.claim("s1", "edge:w2", TTL) is None
    await clock.advance(TTL.total_seconds())
    taken = await leases.claim("s1", "edge:w2", TTL)
    assert taken is not None and taken.worker_id == "edge:w2" and taken.epoch == 2


async def test_a_fleet_lease_refuses_an_edge_claim(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    assert await leases.assign("s1", "worker-001", TTL) is not None
    assert await leases.claim("s1", "edge:w1", TTL) is None


async def test_the_scheduler_never_places_an_edge_session(
    session_repo: SessionRepo, leases: SessionLeaseRepo
) -> None:
    await session_repo.create("fleet-1", engine="sandbox")
    await session_repo.create("edge-1", engine="sandbox", uplink=Uplink.EDGE)
    for sid in ("fleet-1", "edge-1"):
        await session_repo.update(sid, status=SessionState.CONNECTING.value)
    assert await leases.unplaced() == [("fleet-1", None)]
    edge = await leases.claimable("edge:w1", {Uplink.EDGE}, {SessionState.CONNECTING})
    assert edge == ["edge-1"]


# --- queued messages ----------------------------------------------------------------


async def test_queued_messages_are_claimed_oldest_first_once(
    outbound: OutboundRepo, clock: ManualClock
) -> None:
    await queue(outbound, "s1", "M1", "M2", "M3")
    await queue(outbound, "s2", "OTHER")
    claimed = await outbound.claim_queued("s1", "edge:w1", TTL, limit=2)
    assert [m.wa_msg_id for m in claimed] == ["M1", "M2"]
    assert [m.attempts for m in claimed] == [1, 1]
    assert [m.wa_msg_id for m in await outbound.claim_queued("s1", "edge:w2", TTL)] == ["M3"]
    assert await outbound.claim_queued("s1", "edge:w1", TTL) == []
    await clock.advance(TTL.total_seconds())
    again = await outbound.claim_queued("s1", "edge:w2", TTL)
    assert [m.wa_msg_id for m in again] == ["M1", "M2", "M3"]


async def test_a_settled_message_is_never_claimed(
    outbound: OutboundRepo, clock: ManualClock
) -> None:
    await queue(outbound, "s1", "M1")
    [message] = await outbound.claim_queued("s1", "edge:w1", TTL)
    await outbound.mark_sent(message.id, wa_msg_id="M1", at=clock.now(), payload=None)
    await clock.advance(TTL.total_seconds())
    assert await outbound.claim_queued("s1", "edge:w1", TTL) == []


# --- races on PostgreSQL -------------------------------------------------------------

Connections = Callable[[int], list[Database]]


@pytest.fixture
async def connections(settings: Settings) -> AsyncIterator[Connections]:
    made: list[Database] = []

    def open_(n: int) -> list[Database]:
        made.extend(Database(create_engine(settings.sqlalchemy_url)) for _ in range(n))
        return made[-n:]

    yield open_
    for database in made:
        await database.aclose()


@pytest.mark.postgres
@on_postgres
async def test_concurrent_polls_never_both_get_a_message(
    connections: Connections, outbound: OutboundRepo, clock: ManualClock
) -> None:
    ids = [f"M{n:03}" for n in range(60)]
    await queue(outbound, "s1", *ids)
    repos = [OutboundRepo(database, clock) for database in connections(8)]
    handed: list[str] = []
    for _ in range(6):
        results = await asyncio.gather(
            *(repo.claim_queued("s1", f"edge:w{i}", TTL, limit=5) for i, repo in enumerate(repos))
        )
        handed += [m.wa_msg_id for batch in results for m in batch]
    assert len(handed) == len(set(handed))  # no message went to two polls
    assert sorted(handed) == ids  # and none was lost


@pytest.mark.postgres
@on_postgres
async def test_concurrent_claims_of_one_session_have_one_winner(
    connections: Connections, clock: ManualClock
) -> None:
    repos = [SessionLeaseRepo(database, clock) for database in connections(8)]
    for n in range(10):
        results = await asyncio.gather(
            *(repo.claim(f"s{n}", f"edge:w{i}", TTL) for i, repo in enumerate(repos))
        )
        assert len([r for r in results if r is not None]) == 1, results
