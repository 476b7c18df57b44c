"""The worker host: one runner per session id, resume on start, QR sweep, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from wagate.clock import ManualClock
from wagate.domain.session import SessionState
from wagate.engine.base import MemoryAuthStore, QRCode
from wagate.errors import Conflict, NotFound
from wagate.settings import Settings
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import ScriptedEngine, connected, eventually
from wagate.worker.host import Worker


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


def _worker(
    settings: Settings,
    engine: ScriptedEngine,
    repo: SessionRepo,
    audit: AuditRepo,
    clock: ManualClock,
) -> Worker:
    stores: dict[str, MemoryAuthStore] = {}
    return Worker(
        settings.model_copy(update={"qr_sweep_interval_ms": 1000, "worker_max_sessions": 2}),
        engine=engine,  # type: ignore[arg-type]
        sessions=repo,
        audit=audit,
        clock=clock,
        auth_factory=lambda sid: stores.setdefault(sid, MemoryAuthStore(sid)),
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
    assert len(engine.links) == 1 and worker.running() == ["s1"]


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
    await session_repo.record_qr("idle", "2@old,a,b,c", now, now + timedelta(seconds=1.5))
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


def test_file_auth_store_is_per_session_folder(tmp_path: Path) -> None:
    from wagate.engine.base import FileAuthStore

    store = FileAuthStore(tmp_path, "abc")
    store.save("creds", {"x": 1})
    assert (tmp_path / "abc" / "creds.json").is_file() and store.exists()
    store.clear()
    assert not (tmp_path / "abc").exists() and store.load("creds") is None
