"""The worker host: one runner per session id, resume on start, QR sweep, limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from wagate.backoff import Backoff
from wagate.clock import ManualClock
from wagate.control.flags import FlagWatcher
from wagate.control.runtime import LocalRuntime
from wagate.domain.flag import Flag
from wagate.domain.message import MessageKind
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange, SessionState, Unlink
from wagate.engine.base import Disconnected, Link, MessageEvent, QRCode
from wagate.errors import Conflict, NotFound, TransientError
from wagate.roles.serve import Gateway
from wagate.settings import Settings
from wagate.storage.auth_state import MemoryAuthStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.flags import FlagRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import RecordingHandler, ScriptedEngine, connected, eventually
from wagate.worker.host import Worker
from wagate.worker.supervisor import AuthFactory

ALICE = "6281111111111@s.whatsapp.net"


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


def _worker(
    settings: Settings,
    engine: ScriptedEngine,
    repo: SessionRepo,
    audit: AuditRepo,
    clock: ManualClock,
    *,
    auth_factory: AuthFactory | None = None,
    only_worker: bool = False,
    handler: RecordingHandler | None = None,
) -> Worker:
    stores: dict[str, MemoryAuthStore] = {}
    return Worker(
        replace(settings.worker, qr_sweep_interval_s=1.0, max_sessions=2),
        engine=engine,  # type: ignore[arg-type]
        sessions=repo,
        audit=audit,
        clock=clock,
        handler=handler or RecordingHandler(),
        auth=auth_factory or (lambda sid: stores.setdefault(sid, MemoryAuthStore(sid))),
        only_worker=only_worker,
    )


@pytest.fixture
async def worker(
    settings: Settings,
    engine: ScriptedEngine,
    session_repo: SessionRepo,
    audit_repo: AuditRepo,
    clock: ManualClock,
) -> AsyncIterator[Worker]:
    async with _worker(settings, engine, session_repo, audit_repo, clock) as w:
        yield w


async def test_a_session_runs_at_most_once_per_process(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine
) -> None:
    await session_repo.create("s1", engine="scripted", worker_id="local")
    engine.add([connected()])
    assert await worker.start("s1") is True
    assert await worker.start("s1") is False
    await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
    assert len(engine.links) == 1 and list(worker.running()) == ["s1"]


async def test_unknown_session_cannot_start(worker: Worker) -> None:
    with pytest.raises(NotFound):
        await worker.start("ghost")


async def test_max_sessions_is_enforced(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine
) -> None:
    for sid in ("a", "b", "c"):
        await session_repo.create(sid, engine="scripted")
    engine.add([connected("111111111")], [connected("222222222")])
    await worker.start("a")
    await worker.start("b")
    with pytest.raises(Conflict) as info:
        await worker.start("c")
    assert info.value.code == "worker_full"


async def test_stop_records_stopped(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine
) -> None:
    await session_repo.create("s1", engine="scripted")
    engine.add([connected()])
    await worker.start("s1")
    await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
    await worker.stop("s1")
    s = await session_repo.get("s1")
    assert s is not None and s.status is SessionState.STOPPED and not s.is_connected
    assert engine.links[0].closed and not worker.is_running("s1")


async def test_resume_brings_back_running_sessions_it_owns(
    settings: Settings,
    engine: ScriptedEngine,
    session_repo: SessionRepo,
    audit_repo: AuditRepo,
    clock: ManualClock,
) -> None:
    for sid, state, owner in (
        ("was-connected", SessionState.CONNECTED, "local"),
        ("was-qr", SessionState.QR, "local"),
        ("stopped", SessionState.STOPPED, "local"),
        ("failed", SessionState.FAILED, "local"),
        ("elsewhere", SessionState.CONNECTED, "other-worker"),
    ):
        await session_repo.create(sid, engine="scripted", worker_id=owner)
        await session_repo.update(sid, status=state)
    engine.add([connected("111111111")], [QRCode("2@x,a,b,c", 60)])
    async with _worker(settings, engine, session_repo, audit_repo, clock) as w:
        assert sorted(w.running()) == ["was-connected", "was-qr"]


async def test_the_sweep_clears_expired_qrs(
    worker: Worker, session_repo: SessionRepo, clock: ManualClock
) -> None:
    await session_repo.create("idle", engine="scripted")
    now = clock.now()
    change = SessionChange("idle", SessionState.QR, ChangeKind.QR, now)
    await session_repo.record_qr(change, "2@old,a,b,c", now, now + timedelta(seconds=1.5))
    await clock.wait_for_sleepers(1)
    await clock.advance(1)  # the sweep at t=1 finds nothing expired
    await clock.wait_for_sleepers(1)
    assert (await session_repo.get("idle")).qr == "2@old,a,b,c"  # type: ignore[union-attr]
    await clock.advance(1)  # the sweep at t=2 clears it
    for _ in range(500):  # the sweep's database write happens in real time
        s = await session_repo.get("idle")
        if s is not None and s.qr is None:
            break
        await asyncio.sleep(0.01)
    assert s is not None and (s.qr, s.qr_generated_at, s.qr_expires_at) == (None, None, None)


# --- one runner per id, under concurrency ----------------------------------------------


async def test_concurrent_starts_of_one_id_run_one_runner(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine
) -> None:
    await session_repo.create("r1", engine="scripted", worker_id="local")
    engine.add([QRCode("2@r1,a,b,c", 60)], [QRCode("2@r1-again,a,b,c", 60)])
    results = await asyncio.gather(*(worker.start("r1") for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    await eventually(lambda: worker.runner_state("r1") is SessionState.QR)
    await worker.stop("r1")
    assert list(worker.running()) == []
    assert len(engine.links) == 1 and engine.links[0].closed  # none left running
    s = await session_repo.get("r1")
    assert s is not None and s.status is SessionState.STOPPED and s.qr is None


async def test_verbs_on_one_id_take_turns(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine
) -> None:
    await session_repo.create("r1", engine="scripted", worker_id="local")
    engine.add(*[[QRCode(f"2@r{n},a,b,c", 60)] for n in range(4)])
    await asyncio.gather(
        worker.start("r1"), worker.stop("r1"), worker.start("r1"), worker.restart("r1")
    )
    await eventually(lambda: worker.runner_state("r1") is SessionState.QR)
    assert list(worker.running()) == ["r1"]
    assert sum(not link.closed for link in engine.links) == 1
    s = await session_repo.get("r1")
    assert s is not None and s.status is SessionState.QR


async def test_a_new_link_writes_its_qr_even_when_the_code_repeats(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine
) -> None:
    await session_repo.create("s1", engine="scripted")
    engine.add([QRCode("2@same,a,b,c", 60)], [QRCode("2@same,a,b,c", 60)])
    await worker.start("s1")
    await eventually(lambda: worker.runner_state("s1") is SessionState.QR)
    await worker.restart("s1")  # the columns were cleared: the code must be written again
    await eventually(lambda: worker.runner_state("s1") is SessionState.QR)
    s = await session_repo.get("s1")
    assert s is not None and s.qr == "2@same,a,b,c" and len(engine.links) == 2


# --- supervision -----------------------------------------------------------------------


class _ClearFailsOnce(MemoryAuthStore):
    """A credential store whose first ``clear`` fails, like a read-only disk would."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.failures = 1

    async def clear(self) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("read-only file system")
        await super().clear()


async def test_a_crashed_runner_is_restarted_after_a_backoff(
    settings: Settings,
    engine: ScriptedEngine,
    session_repo: SessionRepo,
    audit_repo: AuditRepo,
    clock: ManualClock,
) -> None:
    store = _ClearFailsOnce("s1")
    await store.save("creds", {"device": "d1"})
    await session_repo.create("s1", engine="scripted")
    engine.add([Disconnected(DisconnectKind.LOGGED_OUT, "removed")], [QRCode("2@n,a,b,c", 60)])
    w = _worker(settings, engine, session_repo, audit_repo, clock, auth_factory=lambda _: store)
    async with w:
        await w.start("s1")
        # the sweeper sleeps on the clock too: the second sleeper is the restart's backoff
        await eventually(lambda: clock.sleeping >= 2 or not w.is_running("s1"))
        assert w.is_running("s1"), "the crashed runner was not restarted"
        low, high = Backoff(1.0, 30.0, 0.5).bounds(0)
        assert low <= clock.sleeps[-1] <= high
        errors = await audit_repo.recent("s1", event="error")
        assert [e.data["code"] for e in errors] == ["RUNNER_CRASHED"]
        assert "read-only" in str(errors[0].data["msg"])
        await clock.advance(clock.sleeps[-1])
        await eventually(lambda: w.runner_state("s1") is SessionState.QR)
        assert len(engine.links) == 2


async def test_a_runner_that_rests_is_not_restarted(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine, clock: ManualClock
) -> None:
    await session_repo.create("s1", engine="scripted")
    engine.add([connected(), Disconnected(DisconnectKind.BANNED, "banned")], [connected()])
    await worker.start("s1")
    await eventually(lambda: not worker.is_running("s1"))
    await clock.advance(60)
    assert not worker.is_running("s1") and len(engine.links) == 1
    s = await session_repo.get("s1")
    assert s is not None and s.status is SessionState.FAILED


# --- logout without a live link ----------------------------------------------------------


async def test_logout_of_a_stopped_linked_session_opens_a_link_to_log_out(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine, audit_repo: AuditRepo
) -> None:
    await session_repo.create("s1", engine="scripted", proxy="socks5h://p:1080")
    await worker.auth("s1").save("creds", {"device": "d1"})
    engine.add([connected()])
    assert await worker.logout("s1") is Unlink.RELINKED
    link = engine.links[0]
    assert link.logged_out and link.closed and link.options.proxy == "socks5h://p:1080"
    assert (await worker.auth("s1").load("creds")) is None and not worker.is_running("s1")
    assert [e.data for e in await audit_repo.recent("s1", event="logout")] == [{"via": "relinked"}]


async def test_logout_gives_up_after_its_bound_and_says_so(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine, clock: ManualClock
) -> None:
    await session_repo.create("s1", engine="scripted")
    await worker.auth("s1").save("creds", {"device": "d1"})
    engine.add([])  # the link opens and never connects
    pending = asyncio.create_task(worker.logout("s1"))
    await clock.wait_for_sleepers(2)  # the sweeper and the logout's deadline
    await clock.advance(worker.settings.stop_timeout_s)
    assert await asyncio.wait_for(pending, 5) is Unlink.FAILED
    assert engine.links[0].closed and (await worker.auth("s1").load("creds")) is None


async def test_logout_of_an_unreachable_device_fails_and_of_an_unlinked_one_is_a_no_op(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine, audit_repo: AuditRepo
) -> None:
    await session_repo.create("s1", engine="scripted")
    assert await worker.logout("s1") is Unlink.NOT_LINKED  # no credentials: nothing to unlink
    assert engine.options == []
    await worker.auth("s1").save("creds", {"device": "d1"})
    engine.add(TransientError("network unreachable"))
    assert await worker.logout("s1") is Unlink.FAILED
    errors = await audit_repo.recent("s1", event="error")
    assert [e.data["code"] for e in errors] == ["LOGOUT_FAILED"]


# --- one worker adopts every session -------------------------------------------------------


async def test_the_only_worker_adopts_sessions_of_another_worker_id(
    settings: Settings,
    engine: ScriptedEngine,
    session_repo: SessionRepo,
    audit_repo: AuditRepo,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for sid, owner in (("mine", "local"), ("before-rename", "old-id")):
        await session_repo.create(sid, engine="scripted", worker_id=owner)
        await session_repo.update(sid, status=SessionState.CONNECTED)
    engine.add([connected("111111111")], [connected("222222222")])
    caplog.set_level(logging.INFO, logger="wagate.worker.host")
    async with _worker(settings, engine, session_repo, audit_repo, clock, only_worker=True) as w:
        assert sorted(w.running()) == ["before-rename", "mine"]
        await eventually(lambda: w.runner_state("before-rename") is SessionState.CONNECTED)
    s = await session_repo.get("before-rename")
    assert s is not None and s.worker_id == "local"
    adopted = [r.getMessage() for r in caplog.records if "adopts" in r.getMessage()]
    assert len(adopted) == 1 and "old-id" in adopted[0]


async def test_serve_resumes_linked_sessions_after_worker_id_changes(
    settings: Settings, engine: ScriptedEngine
) -> None:
    engine.add([connected()], [connected()])
    before = settings.model_copy(update={"worker_id": "box-1"})
    async with Gateway(before, engine=engine) as gw:  # type: ignore[arg-type]
        await gw.services.sessions.provision("s1")
        await eventually(lambda: gw.worker.runner_state("s1") is SessionState.CONNECTED)
    after = settings.model_copy(update={"worker_id": "box-2"})
    async with Gateway(after, engine=engine) as gw:  # type: ignore[arg-type]
        assert list(gw.worker.running()) == ["s1"]
        await eventually(lambda: gw.worker.runner_state("s1") is SessionState.CONNECTED)
        assert len(engine.links) == 2


async def test_a_qr_refresh_never_cuts_off_a_scan_that_landed_while_it_waited(
    worker: Worker,
    session_repo: SessionRepo,
    engine: ScriptedEngine,
    audit_repo: AuditRepo,
    db: Database,
    clock: ManualClock,
) -> None:
    await session_repo.create("s1", engine="scripted")
    engine.add([QRCode("2@wait,a,b,c", 60)], [QRCode("2@new,a,b,c", 60)])
    await worker.start("s1")
    await eventually(lambda: worker.runner_state("s1") is SessionState.QR)
    flags = FlagRepo(db, clock)
    watcher = FlagWatcher(flags, LocalRuntime(worker), audit_repo, discover=_no_discovery)
    await flags.set("s1", Flag.REFRESH_QR)
    users = worker._locks._users  # how many verbs hold or await the session's lock
    async with worker._locks.hold("s1"):  # another verb on the session is under way
        polling = asyncio.create_task(watcher.poll())
        await eventually(lambda: users.get("s1") == 2)  # the refresh waits for its turn
        engine.links[0].push(connected())  # and the phone scans meanwhile
        await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
    assert await asyncio.wait_for(polling, 5) == 1
    assert worker.runner_state("s1") is SessionState.CONNECTED
    assert len(engine.links) == 1 and not engine.links[0].closed


async def _no_discovery(_session_id: str) -> object:
    return None


# --- stops that take their time ----------------------------------------------------------


async def test_a_start_never_opens_a_second_link_while_the_old_one_is_still_closing(
    worker: Worker, session_repo: SessionRepo, engine: ScriptedEngine, clock: ManualClock
) -> None:
    stuck = asyncio.Event()  # the first link's close hangs until this is set, cancelled or not
    await session_repo.create("s1", engine="scripted")
    engine.add([connected()], close_gate=stuck)
    engine.add([connected()])
    await worker.start("s1")
    await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
    try:
        limit = worker.settings.stop_timeout_s
        stopping = asyncio.create_task(worker.stop("s1"))
        for _ in range(2):  # the drain's deadline, then the cancel's: both pass
            await clock.wait_for_sleepers(2)  # the QR sweep and the deadline
            await clock.advance(limit)
        await asyncio.wait_for(stopping, 5)
        s = await session_repo.get("s1")
        assert s is not None and s.status is SessionState.STOPPED
        starting = asyncio.create_task(worker.start("s1"))
        await clock.wait_for_sleepers(2)  # the start waits for the old runner to end
        await clock.advance(limit)
        with pytest.raises(Conflict) as refused:
            await asyncio.wait_for(starting, 5)
        assert refused.value.code == "session_stopping"
        assert len(engine.links) == 1, "a second link while the first may hold the socket"
    finally:
        stuck.set()  # the old link lets go at last (also when an assertion failed)
    await eventually(lambda: engine.links[0].closed)
    assert await worker.start("s1") is True
    await eventually(lambda: worker.runner_state("s1") is SessionState.CONNECTED)
    assert len(engine.links) == 2


async def test_resume_starts_what_fits_and_records_why_the_rest_waits(
    settings: Settings,
    engine: ScriptedEngine,
    session_repo: SessionRepo,
    audit_repo: AuditRepo,
    clock: ManualClock,
) -> None:
    for sid in ("a", "b", "c"):
        await session_repo.create(sid, engine="scripted", worker_id="local")
        await session_repo.update(sid, status=SessionState.CONNECTED)
    engine.add([connected("111111111")], [connected("222222222")])
    async with _worker(settings, engine, session_repo, audit_repo, clock) as w:  # at most 2
        assert sorted(w.running()) == ["a", "b"]
        left = await session_repo.get("c")
        assert left is not None and left.status is SessionState.STOPPED
        assert "maximum of 2 sessions" in (left.disconnect_reason or "")
        errors = await audit_repo.recent("c", event="error")
        assert [e.data["code"] for e in errors] == ["WORKER_FULL"]
        await clock.wait_for_sleepers(1)  # the QR sweep runs all the same


@dataclass
class _SlowHandler(RecordingHandler):
    """Handles messages one at a time; the first waits for ``release``."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def message(self, session_id: str, link: Link, event: MessageEvent) -> None:
        if not self.of("message"):
            await self.release.wait()
        await super().message(session_id, link, event)


def _text(n: int) -> MessageEvent:
    return MessageEvent(
        id=f"M{n}", chat=ALICE, sender=ALICE, timestamp=datetime.now(UTC), kind=MessageKind.TEXT
    )


async def test_a_graceful_stop_handles_every_event_the_link_already_had(
    settings: Settings,
    engine: ScriptedEngine,
    session_repo: SessionRepo,
    audit_repo: AuditRepo,
    clock: ManualClock,
) -> None:
    handler = _SlowHandler()
    await session_repo.create("s1", engine="scripted")
    engine.add([connected(), _text(1), _text(2), _text(3)])
    w = _worker(settings, engine, session_repo, audit_repo, clock, handler=handler)
    async with w:
        await w.start("s1")
        await eventually(lambda: w.runner_state("s1") is SessionState.CONNECTED)
        stopping = asyncio.create_task(w.stop("s1"))
        await eventually(lambda: engine.links[0].drained)  # intake stopped at once
        engine.links[0].push(_text(4))  # arrives after the drain began: not taken
        handler.release.set()
        await asyncio.wait_for(stopping, 5)
    link = engine.links[0]
    assert [e.id for e in handler.of("message")] == ["M1", "M2", "M3"]  # type: ignore[attr-defined]
    assert [e.id for e in link.refused] == ["M4"]  # type: ignore[attr-defined]
    assert link.closed and [name for name, *_ in handler.calls][-1] == "unlinked"
    s = await session_repo.get("s1")
    assert s is not None and s.status is SessionState.STOPPED
