from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from wagate.clock import ManualClock
from wagate.domain.worker import Worker, WorkerStatus
from wagate.errors import Conflict, NotFound
from wagate.storage.db import Database
from wagate.storage.repos.workers import ANY_INSTANCE, MonitorSwitch, WorkerRepo
from wagate.storage.tables import session_leases


@pytest.fixture
def repo(db: Database, clock: ManualClock) -> WorkerRepo:
    return WorkerRepo(db, clock)


async def _register(
    repo: WorkerRepo, worker_id: str, instance: str, *, replacing: str | None = ANY_INSTANCE
) -> Worker:
    return await repo.register(
        worker_id,
        endpoint=f"http://{worker_id}:8001",
        max_sessions=50,
        description="",
        instance=instance,
        replacing=replacing,
    )


async def _get(repo: WorkerRepo, worker_id: str) -> Worker:
    worker = await repo.get(worker_id)
    assert worker is not None
    return worker


async def _lease(db: Database, clock: ManualClock, session_id: str, worker_id: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            session_leases.insert().values(
                session_id=session_id,
                worker_id=worker_id,
                epoch=1,
                expires_at=clock.now() + timedelta(seconds=45),
                updated_at=clock.now(),
            )
        )


async def _epochs(db: Database) -> dict[str, int]:
    async with db.begin() as conn:
        rows = await conn.execute(sa.select(session_leases.c.session_id, session_leases.c.epoch))
        return {sid: int(epoch) for sid, epoch in rows}


async def test_register_inserts_a_live_worker(repo: WorkerRepo, clock: ManualClock) -> None:
    worker = await repo.register(
        "w1", endpoint="http://a:8001", max_sessions=50, description="primary", instance="i1"
    )
    assert (worker.id, worker.endpoint, worker.max_sessions, worker.description) == (
        "w1",
        "http://a:8001",
        50,
        "primary",
    )
    assert (worker.status, worker.instance, worker.session_count) == (WorkerStatus.LIVE, "i1", 0)
    assert worker.registered_at == worker.last_heartbeat_at == clock.now()
    assert await repo.get("w1") == worker
    assert await repo.get("nope") is None


async def test_the_same_instance_again_updates_and_fences_nothing(
    repo: WorkerRepo, db: Database, clock: ManualClock
) -> None:
    first = await _register(repo, "w1", "i1")
    await _lease(db, clock, "s1", "w1")
    await repo.set_status("w1", WorkerStatus.DRAINING)
    await clock.advance(10)
    again = await repo.register(
        "w1", endpoint="http://b:9000", max_sessions=5, description="moved", instance="i1"
    )
    assert (again.endpoint, again.max_sessions, again.description) == ("http://b:9000", 5, "moved")
    assert again.status is WorkerStatus.LIVE  # registering again ends a drain
    assert again.registered_at == first.registered_at
    assert again.last_heartbeat_at == clock.now()
    assert await _epochs(db) == {"s1": 1}


async def test_a_new_instance_bumps_the_epoch_of_that_workers_leases_only(
    repo: WorkerRepo, db: Database, clock: ManualClock
) -> None:
    await _register(repo, "w1", "old")
    await _register(repo, "w2", "other")
    for sid, wid in [("s1", "w1"), ("s2", "w1"), ("s3", "w2")]:
        await _lease(db, clock, sid, wid)
    await clock.advance(5)
    taken = await _register(repo, "w1", "new", replacing="old")
    assert taken.instance == "new"
    assert taken.registered_at == clock.now()
    assert await _epochs(db) == {"s1": 2, "s2": 2, "s3": 1}


async def test_a_take_over_from_an_instance_that_no_longer_holds_the_id_is_refused(
    repo: WorkerRepo, db: Database, clock: ManualClock
) -> None:
    await _register(repo, "w1", "a")
    await _lease(db, clock, "s1", "w1")
    await _register(repo, "w1", "b", replacing="a")  # b won the race
    with pytest.raises(Conflict) as caught:
        await _register(repo, "w1", "c", replacing="a")  # c decided on an older read
    assert caught.value.code == "worker_id_in_use"
    with pytest.raises(Conflict):
        await _register(repo, "w1", "d", replacing=None)  # d saw no row at all
    assert (await _get(repo, "w1")).instance == "b"
    assert await _epochs(db) == {"s1": 2}


async def test_a_take_over_of_a_row_removed_meanwhile_inserts(repo: WorkerRepo) -> None:
    worker = await _register(repo, "w1", "b", replacing="a")
    assert worker.instance == "b"


async def test_heartbeat_records_figures_and_keeps_the_ones_left_out(
    repo: WorkerRepo, clock: ManualClock
) -> None:
    await _register(repo, "w1", "i1")
    await clock.advance(30)
    beat = await repo.heartbeat(
        "w1",
        status=WorkerStatus.LIVE,
        session_count=25,
        cpu_usage=45.5,
        memory_usage=67.8,
        uptime_s=3600,
        message_count=1250,
    )
    assert (beat.session_count, beat.cpu_usage, beat.memory_usage) == (25, 45.5, 67.8)
    assert (beat.uptime_s, beat.message_count) == (3600, 1250)
    assert beat.last_heartbeat_at == clock.now()
    await clock.advance(30)
    kept = await repo.heartbeat("w1", status=WorkerStatus.LIVE, session_count=3)
    assert (kept.session_count, kept.cpu_usage, kept.message_count) == (3, 45.5, 1250)
    assert kept.last_heartbeat_at == clock.now()


async def test_heartbeat_of_an_unknown_worker_is_not_found(repo: WorkerRepo) -> None:
    with pytest.raises(NotFound):
        await repo.heartbeat("ghost", status=WorkerStatus.LIVE)


async def test_a_draining_worker_stays_draining_and_a_dead_one_comes_back(
    repo: WorkerRepo,
) -> None:
    await _register(repo, "w1", "i1")
    await repo.set_status("w1", WorkerStatus.DRAINING)
    beat = await repo.heartbeat("w1", status=WorkerStatus.LIVE)
    assert beat.status is WorkerStatus.DRAINING
    await repo.set_status("w1", WorkerStatus.DEAD)
    assert (await repo.heartbeat("w1", status=WorkerStatus.LIVE)).status is WorkerStatus.LIVE
    beat = await repo.heartbeat("w1", status=WorkerStatus.DRAINING)
    assert beat.status is WorkerStatus.DRAINING


async def test_touch_only_while_the_instance_holds_the_id(
    repo: WorkerRepo, clock: ManualClock
) -> None:
    await _register(repo, "w1", "i1")
    await clock.advance(20)
    assert await repo.touch("w1", "i1") is True
    assert (await _get(repo, "w1")).last_heartbeat_at == clock.now()
    await _register(repo, "w1", "i2")
    assert await repo.touch("w1", "i1") is False
    assert await repo.touch("gone", "i1") is False


async def test_mark_dead_takes_the_silent_live_and_draining_workers(
    repo: WorkerRepo, clock: ManualClock
) -> None:
    for wid in ("quiet", "leaving", "beating"):
        await _register(repo, wid, "i")
    await repo.set_status("leaving", WorkerStatus.DRAINING)
    await clock.advance(60)
    await repo.heartbeat("beating", status=WorkerStatus.LIVE)
    assert await repo.mark_dead(timedelta(seconds=90)) == []
    await clock.advance(31)
    assert await repo.mark_dead(timedelta(seconds=90)) == ["leaving", "quiet"]
    assert (await _get(repo, "quiet")).status is WorkerStatus.DEAD
    assert (await _get(repo, "beating")).status is WorkerStatus.LIVE
    assert await repo.mark_dead(timedelta(seconds=90)) == []  # once


async def test_live_lists_the_fresh_live_workers(repo: WorkerRepo, clock: ManualClock) -> None:
    for wid in ("a", "b", "c", "d"):
        await _register(repo, wid, "i")
    await repo.set_status("b", WorkerStatus.DRAINING)
    await repo.set_status("c", WorkerStatus.DEAD)
    await clock.advance(100)
    await repo.heartbeat("a", status=WorkerStatus.LIVE)
    assert [w.id for w in await repo.live(timedelta(seconds=90))] == ["a"]
    assert [w.id for w in await repo.live(timedelta(seconds=200))] == ["a", "d"]


async def test_list_delete_and_set_status(repo: WorkerRepo) -> None:
    await _register(repo, "b", "i")
    await _register(repo, "a", "i")
    assert [w.id for w in await repo.list()] == ["a", "b"]
    drained = await repo.set_status("a", WorkerStatus.DRAINING)
    assert drained is not None and drained.status is WorkerStatus.DRAINING
    assert await repo.set_status("ghost", WorkerStatus.DRAINING) is None
    assert await repo.delete("a") is True
    assert await repo.delete("a") is False
    assert [w.id for w in await repo.list()] == ["b"]


async def test_the_monitor_switch_is_on_until_switched_off(
    db: Database, clock: ManualClock
) -> None:
    switch = MonitorSwitch(db, clock)
    state = await switch.state()
    assert (state.enabled, state.changed_at, state.checked_at, state.last_dead) == (
        True,
        None,
        None,
        (),
    )
    await switch.set(False)
    await clock.advance(5)
    await switch.checked(["w1"])
    state = await MonitorSwitch(db, clock).state()  # another replica reads the same
    assert state.enabled is False
    assert state.changed_at == clock.now() - timedelta(seconds=5)
    assert (state.checked_at, state.last_dead) == (clock.now(), ("w1",))
    await switch.set(True)
    assert (await switch.state()).enabled is True
