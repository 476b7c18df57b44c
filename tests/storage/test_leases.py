"""Session leases and leader leases: the compare-and-sets behind "exactly one owner"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from wagate.clock import ManualClock
from wagate.domain.lease import Fence, Lease
from wagate.domain.session import SessionState
from wagate.settings import Settings
from wagate.storage.db import Database, create_engine
from wagate.storage.repos.leases import LeaderLeaseRepo, SessionLeaseRepo
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
def leaders(db: Database, clock: ManualClock) -> LeaderLeaseRepo:
    return LeaderLeaseRepo(db, clock)


def fence(lease: Lease) -> Fence:
    return Fence(lease.session_id, lease.worker_id, lease.epoch)


async def assigned(leases: SessionLeaseRepo, session_id: str, worker_id: str) -> Lease:
    lease = await leases.assign(session_id, worker_id, TTL)
    assert lease is not None, f"{session_id} was not free for {worker_id}"
    return lease


# --- assign ----------------------------------------------------------------------


async def test_a_first_assign_takes_epoch_one(leases: SessionLeaseRepo, clock: ManualClock) -> None:
    lease = await leases.assign("s1", "w1", TTL)
    assert lease == Lease("s1", "w1", 1, clock.now() + TTL)
    assert await leases.owner("s1") == lease


async def test_a_live_lease_refuses_every_assign(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    held = await assigned(leases, "s1", "w1")
    await clock.advance(TTL.total_seconds() - 1)
    assert await leases.assign("s1", "w2", TTL) is None
    assert await leases.assign("s1", "w1", TTL) is None  # its own too: renew is for that
    assert await leases.owner("s1") == held


async def test_an_expired_lease_goes_to_the_next_owner_with_a_new_epoch(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    await assigned(leases, "s1", "w1")
    await clock.advance(TTL.total_seconds())  # expires_at == now: no longer live
    assert await leases.owner("s1") is None
    lease = await assigned(leases, "s1", "w2")
    assert (lease.worker_id, lease.epoch, lease.expires_at) == ("w2", 2, clock.now() + TTL)


async def test_a_released_lease_is_free_at_once_and_its_epoch_grows(
    leases: SessionLeaseRepo,
) -> None:
    first = await assigned(leases, "s1", "w1")
    assert await leases.release(fence(first)) is True
    assert await leases.owner("s1") is None
    again = await assigned(leases, "s1", "w1")
    assert again.epoch == 2  # even the same worker gets a new token


async def test_every_change_of_owner_grows_the_epoch(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    epochs = []
    for n in range(6):
        lease = await assigned(leases, "s1", f"w{n % 2}")
        epochs.append(lease.epoch)
        if n % 2:
            await leases.release(fence(lease))
        else:
            await clock.advance(TTL.total_seconds() + 1)
    assert epochs == [1, 2, 3, 4, 5, 6]


# --- renew -------------------------------------------------------------------------


async def test_renew_extends_every_lease_of_the_worker_and_only_those(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    await assigned(leases, "a", "w1")
    await assigned(leases, "b", "w1")
    other = await assigned(leases, "c", "w2")
    await clock.advance(10)
    renewed = await leases.renew("w1", TTL)
    assert renewed == [
        Lease("a", "w1", 1, clock.now() + TTL),
        Lease("b", "w1", 1, clock.now() + TTL),
    ]
    assert await leases.owner("c") == other


async def test_renew_tells_a_worker_of_its_new_assignments(leases: SessionLeaseRepo) -> None:
    assert await leases.renew("w1", TTL) == []
    await assigned(leases, "new", "w1")
    assert [lease.session_id for lease in await leases.renew("w1", TTL)] == ["new"]


async def test_renew_skips_released_leases_and_keeps_epochs(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    kept = await assigned(leases, "kept", "w1")
    await leases.release(fence(await assigned(leases, "gone", "w1")))
    await clock.advance(5)
    assert await leases.renew("w1", TTL) == [Lease("kept", "w1", kept.epoch, clock.now() + TTL)]
    assert await leases.owner("gone") is None


async def test_a_lease_taken_over_is_not_renewed_by_its_old_owner(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    await assigned(leases, "s1", "w1")
    await clock.advance(TTL.total_seconds())
    taken = await assigned(leases, "s1", "w2")
    assert await leases.renew("w1", TTL) == []
    assert await leases.owner("s1") == taken


# --- release, expire, bump, forget -------------------------------------------------


async def test_release_needs_the_current_token(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    first = await assigned(leases, "s1", "w1")
    await clock.advance(TTL.total_seconds())
    second = await assigned(leases, "s1", "w2")
    assert await leases.release(fence(first)) is False  # the old owner cannot free it
    assert await leases.release(Fence("s1", "w1", second.epoch)) is False
    assert await leases.release(Fence("nope", "w2", 1)) is False
    assert await leases.owner("s1") == second
    assert await leases.release(fence(second)) is True
    assert await leases.release(fence(second)) is False  # already free


async def test_release_all_frees_only_that_workers_leases(leases: SessionLeaseRepo) -> None:
    await assigned(leases, "a", "w1")
    await assigned(leases, "b", "w1")
    await assigned(leases, "c", "w2")
    assert await leases.release_all("w1") == 2
    assert await leases.held_by("w1") == []
    assert [lease.session_id for lease in await leases.held_by("w2")] == ["c"]
    assert await leases.release_all("w1") == 0


async def test_expire_all_ends_a_workers_leases_now(
    leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    await assigned(leases, "a", "w1")
    await assigned(leases, "b", "w1")
    other = await assigned(leases, "c", "w2")
    assert await leases.expire_all("w1") == 2
    assert await leases.owner("a") is None and await leases.held_by("w1") == []
    assert await leases.expire_all("w1") == 0  # nothing live left
    assert (await assigned(leases, "a", "w2")).epoch == 2  # free without waiting for the TTL
    assert await leases.owner("c") == other


async def test_bump_all_makes_the_old_processes_fences_stale(leases: SessionLeaseRepo) -> None:
    old = [await assigned(leases, s, "w1") for s in ("a", "b")]
    await assigned(leases, "c", "w2")
    assert await leases.bump_all("w1") == 2
    assert [lease.epoch for lease in await leases.held_by("w1")] == [2, 2]
    assert await leases.release(fence(old[0])) is False
    assert [lease.epoch for lease in await leases.held_by("w2")] == [1]


async def test_forget_drops_the_lease(leases: SessionLeaseRepo) -> None:
    await assigned(leases, "s1", "w1")
    await leases.forget("s1")
    assert await leases.owner("s1") is None
    assert (await assigned(leases, "s1", "w2")).epoch == 1  # a new session of the same id
    await leases.forget("never-leased")


# --- reads -------------------------------------------------------------------------


async def test_reads_see_only_live_leases(leases: SessionLeaseRepo, clock: ManualClock) -> None:
    await assigned(leases, "early", "w1")
    await clock.advance(10)
    await assigned(leases, "late", "w1")
    await assigned(leases, "other", "w2")
    await leases.release(fence(await assigned(leases, "released", "w2")))
    assert await leases.live_counts() == {"w1": 2, "w2": 1}
    await clock.advance(TTL.total_seconds() - 5)  # "early" has expired, "late" has not
    assert [lease.session_id for lease in await leases.held_by("w1")] == ["late"]
    assert await leases.owner("early") is None
    assert await leases.live_counts() == {"w1": 1, "w2": 1}
    assert await leases.owner("unknown") is None


async def _session(sessions: SessionRepo, session_id: str, state: SessionState) -> None:
    await sessions.create(session_id, engine="sandbox")
    if state is not SessionState.CREATED:
        await sessions.update(session_id, status=state.value)


async def test_unplaced_lists_running_sessions_without_a_live_lease(
    leases: SessionLeaseRepo, session_repo: SessionRepo, clock: ManualClock
) -> None:
    for n, state in enumerate(SessionState):
        await _session(session_repo, f"s{n}-{state.value}", state)
        await clock.advance(1)
    running = [f"s{n}-{s.value}" for n, s in enumerate(SessionState) if s.is_running]
    assert len(running) == 4
    assert await leases.unplaced() == [(s, None) for s in running]  # never leased, oldest first

    expired, live, released, *_ = running
    await assigned(leases, expired, "w1")
    await clock.advance(TTL.total_seconds())
    await assigned(leases, live, "w2")
    await leases.release(fence(await assigned(leases, released, "w3")))
    assert await leases.unplaced() == [(expired, "w1"), (released, None), (running[3], None)]


async def test_unplaced_takes_at_most_limit_oldest_first(
    leases: SessionLeaseRepo, session_repo: SessionRepo, clock: ManualClock
) -> None:
    for n in range(5):
        await _session(session_repo, f"s{n}", SessionState.RECONNECTING)
        await clock.advance(1)
    assert await leases.unplaced(limit=3) == [("s0", None), ("s1", None), ("s2", None)]


# --- leader leases -----------------------------------------------------------------


async def test_a_leader_holds_renews_and_keeps_its_epoch(
    leaders: LeaderLeaseRepo, clock: ManualClock
) -> None:
    assert await leaders.current("scheduler") is None
    assert await leaders.hold("scheduler", "replica-a", TTL) == 1
    await clock.advance(10)
    assert await leaders.hold("scheduler", "replica-a", TTL) == 1
    assert await leaders.current("scheduler") == ("replica-a", 1, clock.now() + TTL)
    assert await leaders.hold("scheduler", "replica-b", TTL) is None
    assert await leaders.hold("monitor", "replica-b", TTL) == 1  # duties are independent


async def test_an_expired_leader_lease_passes_on_with_a_new_epoch(
    leaders: LeaderLeaseRepo, clock: ManualClock
) -> None:
    await leaders.hold("scheduler", "replica-a", TTL)
    await clock.advance(TTL.total_seconds())
    assert await leaders.hold("scheduler", "replica-b", TTL) == 2
    assert await leaders.hold("scheduler", "replica-a", TTL) is None
    await clock.advance(TTL.total_seconds() + 1)
    assert await leaders.hold("scheduler", "replica-a", TTL) == 3


async def test_an_expired_leader_that_nobody_took_keeps_its_epoch(
    leaders: LeaderLeaseRepo, clock: ManualClock
) -> None:
    await leaders.hold("scheduler", "replica-a", TTL)
    await clock.advance(TTL.total_seconds() * 3)
    assert await leaders.hold("scheduler", "replica-a", TTL) == 1


async def test_resign_frees_the_duty_at_once(leaders: LeaderLeaseRepo, clock: ManualClock) -> None:
    await leaders.hold("scheduler", "replica-a", TTL)
    await leaders.resign("scheduler", "replica-b")  # not its to give
    assert await leaders.hold("scheduler", "replica-b", TTL) is None
    await leaders.resign("scheduler", "replica-a")
    current = await leaders.current("scheduler")
    assert current == ("replica-a", 1, clock.now())  # kept, not live
    assert await leaders.hold("scheduler", "replica-b", TTL) == 2
    await leaders.resign("never-held", "replica-a")


# --- races on PostgreSQL -------------------------------------------------------------

Connections = Callable[[int], list[Database]]


@pytest.fixture
async def connections(settings: Settings) -> AsyncIterator[Connections]:
    """``connections(n)``: n databases with engines of their own (separate pools)."""
    made: list[Database] = []

    def open_(n: int) -> list[Database]:
        made.extend(Database(create_engine(settings.sqlalchemy_url)) for _ in range(n))
        return made[-n:]

    yield open_
    for database in made:
        await database.aclose()


@pytest.mark.postgres
@on_postgres
@pytest.mark.parametrize("state", ["new", "expired", "released"])
async def test_racing_assigns_have_exactly_one_winner(
    state: str, connections: Connections, leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    for n in range(20):
        if state == "expired":
            await assigned(leases, f"s{n}", "old")
        elif state == "released":
            await leases.release(fence(await assigned(leases, f"s{n}", "old")))
    await clock.advance(TTL.total_seconds())
    before = 0 if state == "new" else 1
    repos = [SessionLeaseRepo(database, clock) for database in connections(8)]
    for n in range(20):
        results = await asyncio.gather(
            *(repo.assign(f"s{n}", f"w{i}", TTL) for i, repo in enumerate(repos))
        )
        winners = [lease for lease in results if lease is not None]
        assert len(winners) == 1, results
        assert winners[0].epoch == before + 1
        assert await leases.owner(f"s{n}") == winners[0]


@pytest.mark.postgres
@on_postgres
async def test_racing_leaders_have_exactly_one_winner(
    connections: Connections, clock: ManualClock
) -> None:
    repos = [LeaderLeaseRepo(database, clock) for database in connections(8)]
    for round_ in range(10):
        results = await asyncio.gather(
            *(repo.hold(f"duty-{round_}", f"replica-{i}", TTL) for i, repo in enumerate(repos))
        )
        assert [r for r in results if r is not None] == [1], results
    await clock.advance(TTL.total_seconds())
    results = await asyncio.gather(
        *(repo.hold("duty-0", f"replica-{i}", TTL) for i, repo in enumerate(repos))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0] in (1, 2), results  # the old holder keeps epoch 1
