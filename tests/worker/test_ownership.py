"""A fleet's worker runs exactly the sessions it holds a lease on, and lets go in time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from wagate.clock import ManualClock
from wagate.control.runtime import LeasedRuntime
from wagate.domain.lease import Fence, Lease
from wagate.domain.session import SessionState
from wagate.errors import Conflict, StaleLease, StorageUnavailable
from wagate.settings import Settings
from wagate.storage.auth_state import MemoryAuthStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import RecordingHandler, ScriptedEngine, connected, eventually
from wagate.worker.host import Worker
from wagate.worker.ownership import LeaseBook, Ownership, Terms

TERMS = Terms(ttl_s=45, renew_s=15, margin_s=10)  # an owner keeps a link 35 s after a renewal


class MemoryLeases:
    """The lease rules of docs/cluster.md over a dict, on the test's clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.rows: dict[str, Lease] = {}
        self.epochs: dict[str, int] = {}
        self.failing = False
        self.released: list[Fence] = []
        self.renew_gate: asyncio.Event | None = None  # set: renewals answer only once it is
        self.renewing = asyncio.Event()

    def _live(self, lease: Lease | None) -> bool:
        return lease is not None and self.clock.now() < lease.expires_at

    async def assign(self, session_id: str, worker_id: str, ttl: timedelta) -> Lease | None:
        self._check()
        if self._live(self.rows.get(session_id)):
            return None
        epoch = self.epochs.get(session_id, 0) + 1
        self.epochs[session_id] = epoch
        self.rows[session_id] = Lease(session_id, worker_id, epoch, self.clock.now() + ttl)
        return self.rows[session_id]

    async def renew(self, worker_id: str, ttl: timedelta) -> list[Lease]:
        self._check()
        mine = [lease for lease in self.rows.values() if lease.worker_id == worker_id]
        for lease in mine:
            self.rows[lease.session_id] = replace(lease, expires_at=self.clock.now() + ttl)
        answer = [self.rows[lease.session_id] for lease in mine]
        if self.renew_gate is not None:  # the statement ran; its answer is on its way
            self.renewing.set()
            await self.renew_gate.wait()
        return answer

    async def release(self, fence: Fence) -> bool:
        self._check()
        lease = self.rows.get(fence.session_id)
        if lease is None or (lease.worker_id, lease.epoch) != (fence.worker_id, fence.epoch):
            return False
        del self.rows[fence.session_id]
        self.released.append(fence)
        return True

    async def owner(self, session_id: str) -> Lease | None:
        self._check()
        lease = self.rows.get(session_id)
        return lease if self._live(lease) else None

    def _check(self) -> None:
        if self.failing:
            raise StorageUnavailable("the database cannot be reached")


class Row:
    def __init__(self) -> None:
        self.instance = "me"

    async def touch(self, worker_id: str, instance: str) -> bool:
        return instance == self.instance


@pytest.fixture
def leases(clock: ManualClock) -> MemoryLeases:
    return MemoryLeases(clock)


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
async def worker(
    settings: Settings,
    engine: ScriptedEngine,
    session_repo: SessionRepo,
    audit_repo: AuditRepo,
    clock: ManualClock,
) -> AsyncIterator[Worker]:
    stores: dict[str, MemoryAuthStore] = {}
    w = Worker(
        replace(settings.worker, worker_id="w1", max_sessions=3),
        engine=engine,  # type: ignore[arg-type]
        sessions=session_repo,
        audit=audit_repo,
        clock=clock,
        handler=RecordingHandler(),
        auth=lambda sid: stores.setdefault(sid, MemoryAuthStore(sid)),
        resume=False,
    )
    async with w:
        yield w


def _ownership(
    worker: Worker, leases: MemoryLeases, clock: ManualClock, row: Row | None = None, **kw: object
) -> Ownership:
    return Ownership(
        worker=worker,
        book=LeaseBook("w1", clock, TERMS),
        leases=leases,
        liveness=row or Row(),
        instance="me",
        terms=TERMS,
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


async def _running_session(repo: SessionRepo, sid: str) -> None:
    await repo.create(sid, engine="scripted")
    await repo.update(sid, status=SessionState.CONNECTED)


def test_terms_must_leave_room_to_renew_before_the_margin() -> None:
    with pytest.raises(ValueError, match="LEASE_RENEW_MS"):
        Terms(ttl_s=30, renew_s=25, margin_s=10)


async def test_the_book_fences_only_until_the_local_deadline(clock: ManualClock) -> None:
    book = LeaseBook("w1", clock, TERMS)
    sent = clock.monotonic()
    await clock.advance(5)  # a slow answer: validity still counts from the send
    book.renewed([Lease("s1", "w1", 3, clock.now() + TERMS.ttl)], sent)
    assert book.fence_for("s1") == Fence("s1", "w1", 3)
    await clock.advance(TERMS.hold_s - 5 - 0.001)
    assert book.holds("s1")
    await clock.advance(0.002)
    assert book.fence_for("s1") is None and book.valid() == set()
    assert book.prune() == {"s1"} and book.next_deadline() is None


async def test_a_renewal_names_exactly_what_is_held(clock: ManualClock) -> None:
    book = LeaseBook("w1", clock, TERMS)
    at = clock.monotonic()
    book.renewed([Lease("a", "w1", 1, clock.now()), Lease("b", "w1", 1, clock.now())], at)
    book.renewed([Lease("b", "w1", 2, clock.now()), Lease("x", "w2", 1, clock.now())], at)
    assert book.valid() == {"b"} and book.fence_for("b") == Fence("b", "w1", 2)


async def test_it_starts_the_sessions_assigned_to_it_and_only_those(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    for sid in ("mine", "theirs"):
        await _running_session(session_repo, sid)
    await leases.assign("mine", "w1", TERMS.ttl)
    await leases.assign("theirs", "w2", TERMS.ttl)
    engine.add([connected()])
    async with _ownership(worker, leases, clock) as owner:
        await eventually(lambda: worker.runner_state("mine") is SessionState.CONNECTED)
        assert list(worker.running()) == ["mine"] and owner.book.valid() == {"mine"}


async def test_a_lease_on_a_session_that_should_not_run_is_given_back(
    worker: Worker, leases: MemoryLeases, session_repo: SessionRepo, clock: ManualClock
) -> None:
    await session_repo.create("stopped", engine="scripted")
    await session_repo.update("stopped", status=SessionState.STOPPED)
    await leases.assign("stopped", "w1", TERMS.ttl)
    async with _ownership(worker, leases, clock):
        assert worker.running() == {}
        assert [f.session_id for f in leases.released] == ["stopped"]
        assert await leases.owner("stopped") is None


async def test_a_session_moved_elsewhere_is_handed_over_without_a_recorded_stop(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    await _running_session(session_repo, "s1")
    await leases.assign("s1", "w1", TERMS.ttl)
    engine.add([connected()])
    async with _ownership(worker, leases, clock) as owner:
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
        leases.rows["s1"] = replace(leases.rows["s1"], worker_id="w2", epoch=2)
        await owner.tick()
        assert worker.running() == {} and engine.links[0].closed
        row = await session_repo.get("s1")
        assert row is not None and row.status is SessionState.CONNECTED  # for the new owner


async def test_an_owner_that_cannot_renew_drops_its_links_before_the_lease_expires(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    await _running_session(session_repo, "s1")
    await leases.assign("s1", "w1", TERMS.ttl)
    engine.add([connected()])
    async with _ownership(worker, leases, clock) as owner:
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
        leases.failing = True  # the database is gone: renewals fail from now on
        await clock.advance(TERMS.renew_s)
        await clock.advance(TERMS.renew_s)
        assert worker.is_running("s1"), "still inside the renewed lease"
        await clock.advance(TERMS.hold_s - 2 * TERMS.renew_s)  # the local deadline
        await eventually(lambda: not worker.is_running("s1"))
        assert engine.links[0].closed and owner.book.fence_for("s1") is None
        expires = leases.rows["s1"].expires_at
        assert clock.now() <= expires - timedelta(seconds=TERMS.margin_s), "stopped in time"


async def test_a_resumed_renewal_brings_the_session_back(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    await _running_session(session_repo, "s1")
    await leases.assign("s1", "w1", TERMS.ttl)
    engine.add([connected()], [connected()])
    async with _ownership(worker, leases, clock) as owner:
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
        leases.failing = True
        await clock.advance(TERMS.hold_s)
        await eventually(lambda: not worker.is_running("s1"))
        leases.failing = False  # nobody took it meanwhile: it is still this worker's
        await owner.tick()
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
        assert len(engine.links) == 2 and engine.links[0].closed


async def test_a_worker_whose_id_was_taken_over_lets_every_session_go(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    await _running_session(session_repo, "s1")
    await leases.assign("s1", "w1", TERMS.ttl)
    engine.add([connected()])
    row, told = Row(), []

    async def taken_over() -> None:
        told.append(True)

    async with _ownership(worker, leases, clock, row, on_taken_over=taken_over) as owner:
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
        row.instance = "another process"
        await owner.tick()
        assert worker.running() == {} and owner.taken_over and told == [True]
        await owner.tick()
        assert told == [True], "said once"


async def test_acquire_takes_a_free_lease_and_refuses_a_held_one(
    worker: Worker, leases: MemoryLeases, clock: ManualClock
) -> None:
    await leases.assign("theirs", "w2", TERMS.ttl)
    async with _ownership(worker, leases, clock) as owner:
        fence = await owner.acquire("free")
        assert fence == Fence("free", "w1", 1) and owner.book.holds("free")
        assert await owner.acquire("free") == fence, "holding it already is fine"
        with pytest.raises(Conflict) as info:
            await owner.acquire("theirs")
        assert info.value.code == "session_owned_elsewhere" and "w2" in info.value.message
        await clock.advance(TERMS.ttl_s)  # w2's lease expired (w2 is gone): it can be taken
        assert (await owner.acquire("theirs")).epoch == 2


async def test_drain_hands_every_session_over_and_releases_its_lease(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    for sid in ("a", "b"):
        await _running_session(session_repo, sid)
        await leases.assign(sid, "w1", TERMS.ttl)
    engine.add([connected("111")], [connected("222")])
    async with _ownership(worker, leases, clock):
        await eventually(lambda: len(worker.running()) == 2)
    assert worker.running() == {} and all(link.closed for link in engine.links)
    assert sorted(f.session_id for f in leases.released) == ["a", "b"]
    assert leases.rows == {}


class FencedOut(SessionRepo):
    """A repository whose owner-only writes are refused: another process owns the session."""

    async def record_connected(self, *args: object, **kw: object) -> None:
        raise StaleLease("session 's1': epoch 1 is not the lease's epoch any more")


async def test_a_refused_write_ends_the_runner_at_once_and_for_good(
    settings: Settings, db: Database, audit_repo: AuditRepo, clock: ManualClock
) -> None:
    repo = FencedOut(db, clock)
    await repo.create("s1", engine="scripted")
    engine = ScriptedEngine([[connected()], [connected()]])
    w = Worker(
        replace(settings.worker, worker_id="w1"),
        engine=engine,  # type: ignore[arg-type]
        sessions=repo,
        audit=audit_repo,
        clock=clock,
        handler=RecordingHandler(),
        auth=MemoryAuthStore,
        resume=False,
    )
    async with w:
        await w.start("s1")
        await eventually(lambda: not w.is_running("s1"))
        assert len(engine.links) == 1 and engine.links[0].closed, "not reconnected, not restarted"
        errors = [e.data for e in await audit_repo.recent("s1", event="error")]
        assert not any(d.get("code") == "RUNNER_CRASHED" for d in errors), errors


async def test_the_leased_runtime_starts_under_the_lease_and_gives_it_back_on_stop(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    for sid in ("s1", "taken"):
        await session_repo.create(sid, engine="scripted")
    await leases.assign("taken", "w2", TERMS.ttl)
    engine.add([connected()])
    async with _ownership(worker, leases, clock) as owner:
        runtime = LeasedRuntime(worker, owner)
        assert await runtime.start("s1") is True
        assert (await leases.owner("s1")) is not None and owner.book.holds("s1")
        with pytest.raises(Conflict):
            await runtime.start("taken")
        assert not worker.is_running("taken")
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
        await runtime.stop("s1")
        row = await session_repo.get("s1")
        assert row is not None and row.status is SessionState.STOPPED
        assert await leases.owner("s1") is None and not owner.book.holds("s1")


async def test_a_lease_taken_while_a_renewal_is_on_its_way_is_not_lost(
    worker: Worker,
    leases: MemoryLeases,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    clock: ManualClock,
) -> None:
    """The renewal's answer names what was held when it ran; an acquire waits for it."""
    await session_repo.create("s1", engine="scripted")
    engine.add([connected()], [connected()])
    async with _ownership(worker, leases, clock) as owner:
        leases.renew_gate = asyncio.Event()
        ticking = asyncio.create_task(owner.tick())
        await asyncio.wait_for(leases.renewing.wait(), 5)
        acquiring = asyncio.create_task(LeasedRuntime(worker, owner).start("s1"))
        await asyncio.sleep(0.05)  # the acquire had every chance to slip in
        leases.renew_gate.set()
        await asyncio.wait_for(ticking, 5)
        assert await asyncio.wait_for(acquiring, 5) is True
        await owner.tick()
        assert owner.book.holds("s1") and worker.is_running("s1")
        assert leases.released == [], "the session it was asked to start stays here"
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
        assert len(engine.links) == 1 and not engine.links[0].closed, "never handed over"
