"""RemoteRuntime: a session's commands reach its owner over HTTP; reads come from the record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import pytest

from wagate.clock import ManualClock
from wagate.control.remote import RemoteRuntime
from wagate.domain.session import SessionState, Unlink
from wagate.domain.worker import Worker, WorkerStatus
from wagate.errors import Conflict, InvalidInput, NotFound, WorkerUnavailable
from wagate.storage.db import Database
from wagate.storage.repos.leases import SessionLeaseRepo
from wagate.storage.repos.sessions import SessionRepo

TTL = timedelta(seconds=45)
Handler = Callable[[httpx.Request], httpx.Response]


def _worker(worker_id: str, now: datetime, capacity: int = 10) -> Worker:
    return Worker(
        id=worker_id,
        endpoint=f"http://{worker_id}.test:8001",
        max_sessions=capacity,
        description="",
        status=WorkerStatus.LIVE,
        instance=worker_id,
        session_count=0,
        message_count=0,
        cpu_usage=None,
        memory_usage=None,
        uptime_s=None,
        registered_at=now,
        last_heartbeat_at=now,
        updated_at=now,
    )


class Directory:
    def __init__(self, workers: list[Worker]) -> None:
        self.workers = {w.id: w for w in workers}

    async def get(self, worker_id: str) -> Worker | None:
        return self.workers.get(worker_id)

    async def live(self, fresh_within: timedelta) -> list[Worker]:
        return list(self.workers.values())


class Calls:
    """What the workers were asked, and how each answers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, object] | None, str | None]] = []
        self.answer: Handler = lambda request: httpx.Response(200, json={"started": True})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.seen.append(
            (request.url.host, request.url.path, body, request.headers.get("x-api-key"))
        )
        return self.answer(request)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def leases(db: Database, clock: ManualClock) -> SessionLeaseRepo:
    return SessionLeaseRepo(db, clock)


def _runtime(
    session_repo: SessionRepo,
    leases: SessionLeaseRepo,
    clock: ManualClock,
    calls: Calls,
    workers: list[Worker],
    *,
    processes: bool = False,
) -> tuple[RemoteRuntime, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(calls))
    runtime = RemoteRuntime(
        sessions=session_repo,
        owners=leases,
        workers=Directory(workers),
        client=client,
        api_key="the-key",
        clock=clock,
        worker_timeout=timedelta(seconds=90),
        request_timeout_s=5,
        processes=processes,
    )
    return runtime, client


async def test_a_session_nobody_runs_starts_on_the_least_loaded_worker(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock, calls: Calls
) -> None:
    await session_repo.create("s1", engine="sandbox")
    await session_repo.create("busy", engine="sandbox")
    await leases.assign("busy", "w1", TTL)
    now = clock.now()
    runtime, client = _runtime(
        session_repo, leases, clock, calls, [_worker("w1", now), _worker("w2", now)]
    )
    async with client:
        assert await runtime.start("s1", pair_phone="628123") is True
    assert calls.seen == [
        ("w2.test", "/internal/sessions/s1/start", {"pairPhone": "628123"}, "the-key")
    ]


async def test_commands_go_to_the_owner_and_follow_a_session_that_moved(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock
) -> None:
    await session_repo.create("s1", engine="sandbox")
    await leases.assign("s1", "w1", TTL)
    seen: list[str] = []

    async def moving(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "w1.test":  # w1 lost it just now: w2 took it
            await leases.release_all("w1")
            await leases.assign("s1", "w2", TTL)
            error = {"code": "session_owned_elsewhere", "message": "runs on w2"}
            return httpx.Response(409, json={"success": False, "error": error})
        return httpx.Response(200, json={"started": False})

    now = clock.now()
    client = httpx.AsyncClient(transport=httpx.MockTransport(moving))
    runtime = RemoteRuntime(
        sessions=session_repo,
        owners=leases,
        workers=Directory([_worker("w1", now), _worker("w2", now)]),
        client=client,
        api_key="the-key",
        clock=clock,
        worker_timeout=timedelta(seconds=90),
        request_timeout_s=5,
    )
    async with client:
        assert await runtime.start("s1") is False, "it runs already, on w2"
    assert seen == ["w1.test", "w2.test"]


async def test_a_worker_that_does_not_answer_is_a_503(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock, calls: Calls
) -> None:
    await session_repo.create("s1", engine="sandbox")
    await leases.assign("s1", "w1", TTL)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    calls.answer = down
    runtime, client = _runtime(session_repo, leases, clock, calls, [_worker("w1", clock.now())])
    async with client:
        with pytest.raises(WorkerUnavailable, match="w1"):
            await runtime.restart("s1")


@pytest.mark.parametrize(
    ("status", "error", "raised"),
    [
        (404, {"code": "not_found", "message": "no such session"}, NotFound),
        (409, {"code": "worker_full", "message": "full"}, Conflict),
        (422, {"code": "invalid_input", "message": "bad", "field": "session_id"}, InvalidInput),
        (500, {"code": "internal_error", "message": "boom"}, WorkerUnavailable),
    ],
)
async def test_a_workers_error_is_our_error_again(
    status: int,
    error: dict[str, str],
    raised: type[Exception],
    session_repo: SessionRepo,
    leases: SessionLeaseRepo,
    clock: ManualClock,
    calls: Calls,
) -> None:
    await session_repo.create("s1", engine="sandbox")
    await leases.assign("s1", "w1", TTL)
    calls.answer = lambda request: httpx.Response(status, json={"success": False, "error": error})
    runtime, client = _runtime(session_repo, leases, clock, calls, [_worker("w1", clock.now())])
    async with client:
        with pytest.raises(raised) as info:
            await runtime.stop("s1")
    if isinstance(info.value, Conflict):
        assert info.value.code == "worker_full"


async def test_stopping_a_session_nobody_runs_is_recorded_here(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock, calls: Calls
) -> None:
    await session_repo.create("s1", engine="sandbox")
    await session_repo.update("s1", status=SessionState.RECONNECTING)
    runtime, client = _runtime(session_repo, leases, clock, calls, [])
    async with client:
        await runtime.stop("s1", reason="maintenance")
        await runtime.stop("deleted-meanwhile")  # nothing to stop, nothing to record
    row = await session_repo.get("s1")
    assert row is not None and row.status is SessionState.STOPPED and calls.seen == []


async def test_with_no_worker_at_all_start_is_a_503_and_logout_says_it_failed(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock, calls: Calls
) -> None:
    await session_repo.create("s1", engine="sandbox")
    runtime, client = _runtime(session_repo, leases, clock, calls, [])
    async with client:
        with pytest.raises(WorkerUnavailable, match="no live worker"):
            await runtime.start("s1")
        assert await runtime.logout("s1") is Unlink.FAILED


async def test_with_a_process_per_session_a_start_records_that_it_should_run(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock, calls: Calls
) -> None:
    await session_repo.create("s1", engine="sandbox")
    runtime, client = _runtime(session_repo, leases, clock, calls, [], processes=True)
    async with client:
        assert await runtime.start("s1") is True
        assert await runtime.start("s1") is False, "it should run already"
    row = await session_repo.get("s1")
    assert row is not None and row.status is SessionState.CONNECTING and calls.seen == []


async def test_reads_come_from_the_record_and_count_only_owned_sessions(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock, calls: Calls
) -> None:
    for sid in ("owned", "orphan"):
        await session_repo.create(sid, engine="sandbox")
        await session_repo.update(sid, status=SessionState.CONNECTED)
    await leases.assign("owned", "w1", TTL)
    runtime, client = _runtime(session_repo, leases, clock, calls, [_worker("w1", clock.now())])
    async with client:
        assert await runtime.running() == {"owned": SessionState.CONNECTED}
        assert await runtime.state("owned") is SessionState.CONNECTED
        assert await runtime.state("orphan") is None
        await clock.advance(TTL.total_seconds())  # its worker stopped renewing
        assert await runtime.running() == {}


async def test_a_wait_for_the_answer_is_woken_by_the_bus_and_bounded_without_it(
    session_repo: SessionRepo, leases: SessionLeaseRepo, clock: ManualClock, calls: Calls
) -> None:
    await session_repo.create("s1", engine="sandbox")
    await session_repo.update("s1", status=SessionState.CONNECTING)
    runtime, client = _runtime(session_repo, leases, clock, calls, [])
    async with client:
        waiting = asyncio.create_task(runtime.await_answer("s1", 30))
        await clock.wait_for_sleepers()
        await session_repo.update("s1", status=SessionState.QR, qr="2@ref,a,b,c")
        runtime.heard("s1")  # the worker's change, announced on the bus
        await asyncio.wait_for(waiting, 5)  # no clock advance needed
        await session_repo.update("s1", status=SessionState.CONNECTING, qr=None)
        waiting = asyncio.create_task(runtime.await_answer("s1", 2))
        advanced = 0.0
        while not waiting.done():  # nothing heard, nothing changes: the bound ends it
            await clock.wait_for_sleepers()
            await clock.advance(0.5)
            advanced += 0.5
        assert advanced == 2.0
