"""One leader at a time places every session that should run on a live worker with room."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from wagate.clock import ManualClock
from wagate.control.scheduler import Leadership, Scheduler
from wagate.domain.session import SessionState
from wagate.domain.worker import Worker, WorkerStatus
from wagate.storage.db import Database
from wagate.storage.repos.leases import LeaderLeaseRepo, SessionLeaseRepo
from wagate.storage.repos.sessions import SessionRepo

TTL = timedelta(seconds=45)
TIMEOUT = timedelta(seconds=90)


def _worker(worker_id: str, now: datetime, capacity: int = 20, **kw: object) -> Worker:
    values: dict[str, object] = {
        "id": worker_id,
        "endpoint": f"http://127.0.0.1/{worker_id}",
        "max_sessions": capacity,
        "description": "",
        "status": WorkerStatus.LIVE,
        "instance": worker_id,
        "session_count": 0,
        "message_count": 0,
        "cpu_usage": None,
        "memory_usage": None,
        "uptime_s": None,
        "registered_at": now,
        "last_heartbeat_at": now,
        "updated_at": now,
    }
    return Worker(**{**values, **kw})  # type: ignore[arg-type]


class Directory:
    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers

    async def live(self, fresh_within: timedelta) -> list[Worker]:
        return list(self.workers)


@pytest.fixture
def leader_repo(db: Database, clock: ManualClock) -> LeaderLeaseRepo:
    return LeaderLeaseRepo(db, clock)


@pytest.fixture
def leases(db: Database, clock: ManualClock) -> SessionLeaseRepo:
    return SessionLeaseRepo(db, clock)


async def _should_run(repo: SessionRepo, count: int) -> list[str]:
    ids = [f"s{i:02d}" for i in range(count)]
    for sid in ids:
        await repo.create(sid, engine="sandbox")
        await repo.update(sid, status=SessionState.RECONNECTING)
    return ids


async def test_one_replica_leads_and_another_takes_over_after_the_ttl(
    leader_repo: LeaderLeaseRepo, clock: ManualClock
) -> None:
    a = Leadership(leader_repo, name="scheduler", holder="a", ttl_s=15, clock=clock)
    b = Leadership(leader_repo, name="scheduler", holder="b", ttl_s=15, clock=clock)
    assert await a.campaign() and not await b.campaign()
    await clock.advance(14)  # a stopped renewing (killed): b waits out the lease
    assert not await b.campaign() and not a.is_leader, "a steps down early, before the TTL"
    await clock.advance(1.1)
    assert await b.campaign() and b.epoch is not None and b.epoch > (a.epoch or 0)


async def test_a_resigning_leader_hands_over_at_once(
    leader_repo: LeaderLeaseRepo, clock: ManualClock
) -> None:
    b = Leadership(leader_repo, name="scheduler", holder="b", ttl_s=15, clock=clock)
    async with Leadership(leader_repo, name="scheduler", holder="a", ttl_s=15, clock=clock) as a:
        assert a.is_leader and not await b.campaign()
    assert await b.campaign()


async def test_sessions_spread_over_live_workers_and_wake_them(
    session_repo: SessionRepo,
    leases: SessionLeaseRepo,
    leader_repo: LeaderLeaseRepo,
    clock: ManualClock,
) -> None:
    ids = await _should_run(session_repo, 30)
    now = clock.now()
    workers = [_worker(w, now) for w in ("w1", "w2", "w3")]
    workers.append(_worker("draining", now, status=WorkerStatus.DRAINING))
    woken: list[str] = []

    async def wake(worker_id: str) -> None:
        woken.append(worker_id)

    leadership = Leadership(leader_repo, name="scheduler", holder="a", ttl_s=15, clock=clock)
    await leadership.campaign()
    scheduler = Scheduler(
        leadership=leadership,
        leases=leases,
        workers=Directory(workers),
        lease_ttl=TTL,
        worker_timeout=TIMEOUT,
        wake=wake,
    )
    placed = await scheduler.run_once()
    assert sorted(placed) == ids
    assert await leases.live_counts() == {"w1": 10, "w2": 10, "w3": 10}
    assert sorted(woken) == ["w1", "w2", "w3"]
    assert await scheduler.run_once() == {}, "nothing left to place"


async def test_only_the_leader_places(
    session_repo: SessionRepo,
    leases: SessionLeaseRepo,
    leader_repo: LeaderLeaseRepo,
    clock: ManualClock,
) -> None:
    await _should_run(session_repo, 3)
    await LeaderLeaseRepo.hold(leader_repo, "scheduler", "other", timedelta(seconds=15))
    follower = Leadership(leader_repo, name="scheduler", holder="me", ttl_s=15, clock=clock)
    assert not await follower.campaign()
    scheduler = Scheduler(
        leadership=follower,
        leases=leases,
        workers=Directory([_worker("w1", clock.now())]),
        lease_ttl=TTL,
        worker_timeout=TIMEOUT,
    )
    assert await scheduler.run_once() == {} and await leases.live_counts() == {}


async def test_sessions_of_a_dead_worker_move_once_their_leases_expire_and_stay_put_otherwise(
    session_repo: SessionRepo,
    leases: SessionLeaseRepo,
    leader_repo: LeaderLeaseRepo,
    clock: ManualClock,
) -> None:
    await _should_run(session_repo, 4)
    now = clock.now()
    directory = Directory([_worker("w1", now), _worker("w2", now)])
    leadership = Leadership(leader_repo, name="scheduler", holder="a", ttl_s=15, clock=clock)
    await leadership.campaign()
    scheduler = Scheduler(
        leadership=leadership,
        leases=leases,
        workers=directory,
        lease_ttl=TTL,
        worker_timeout=TIMEOUT,
    )
    first = await scheduler.run_once()
    on_w1 = sorted(s for s, w in first.items() if w == "w1")
    directory.workers = [_worker("w2", now)]  # w1 died: its leases are still live
    await clock.advance(10)
    await leadership.campaign()
    await leases.renew("w2", TTL)
    assert await scheduler.run_once() == {}, "a live lease is never taken"
    await clock.advance(TTL.total_seconds())
    await leadership.campaign()
    await leases.renew("w2", TTL)
    moved = await scheduler.run_once()
    assert sorted(moved) == on_w1 and set(moved.values()) == {"w2"}
