"""The runner's seed 004 Flow 3 handling, on a manual clock: no test sleeps."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from wagate.backoff import Backoff
from wagate.clock import ManualClock
from wagate.control.proxy_pool import ProxyPool
from wagate.domain.proxy import ProxyStatus
from wagate.domain.session import ChangeKind, DisconnectKind, SessionChange, SessionState
from wagate.engine.base import Disconnected, QRCode
from wagate.errors import ProxyFailure, StorageUnavailable, TransientError
from wagate.settings import ProxyPoolSettings
from wagate.storage.auth_state import FileAuthStore
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.proxies import ProxyRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import (
    RecordingHandler,
    RecordingOutbox,
    ScriptedEngine,
    connected,
    eventually,
    lost,
)
from wagate.worker.qr import QRTracker
from wagate.worker.runner import RunnerDeps, SessionRunner

BACKOFF = Backoff(base_s=1.0, max_s=30.0, jitter_s=0.5)


@dataclass
class Harness:
    engine: ScriptedEngine
    clock: ManualClock
    sessions: SessionRepo
    audit: AuditRepo
    auth: FileAuthStore
    changes: list[SessionChange]
    deps: RunnerDeps

    tasks: list[asyncio.Task[SessionState]]

    def start(
        self, runner: SessionRunner | None = None, **kw: object
    ) -> asyncio.Task[SessionState]:
        task = asyncio.create_task((runner or self.runner(**kw)).run())
        self.tasks.append(task)
        return task

    def runner(self, **kw: object) -> SessionRunner:
        return SessionRunner("s1", self.auth, self.deps, state=SessionState.CREATED, **kw)  # type: ignore[arg-type]

    async def audit_events(self) -> list[str]:
        return [e.event for e in reversed(await self.audit.recent("s1", limit=1000))]


@pytest.fixture
async def h(
    session_repo: SessionRepo, audit_repo: AuditRepo, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[Harness]:
    await session_repo.create("s1", engine="scripted")
    changes: list[SessionChange] = []

    async def notify(change: SessionChange) -> None:
        changes.append(change)

    engine = ScriptedEngine()
    deps = RunnerDeps(
        engine=engine,  # type: ignore[arg-type]
        sessions=session_repo,
        audit=audit_repo,
        clock=clock,
        rng=random.Random(3),
        backoff=BACKOFF,
        qr=QRTracker(timedelta(minutes=5)),
        reset_after_s=60.0,
        notify=notify,
        handler=RecordingHandler(),
    )
    harness = Harness(
        engine,
        clock,
        session_repo,
        audit_repo,
        FileAuthStore(tmp_path / "auth", "s1"),
        changes,
        deps,
        [],
    )
    yield harness
    for task in harness.tasks:
        task.cancel()
    await asyncio.gather(*harness.tasks, return_exceptions=True)


async def test_connection_lost_reconnects_with_growing_delays(h: Harness) -> None:
    h.engine.add(*[[lost()] for _ in range(7)], [connected()])
    h.start()
    for _ in range(7):
        await h.clock.wait_for_sleepers(1)
        s = await h.sessions.get("s1")
        assert s is not None and s.status is SessionState.RECONNECTING
        assert s.disconnect_kind is DisconnectKind.CONNECTION_LOST
        await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: len(h.engine.links) == 8)
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))
    assert len(h.clock.sleeps) == 7
    for attempt, delay in enumerate(h.clock.sleeps):
        low, high = BACKOFF.bounds(attempt)
        assert low <= delay <= high, (attempt, delay)
    assert [round(d) for d in h.clock.sleeps[:5]] == [1, 2, 4, 8, 16]
    assert h.clock.sleeps[6] <= 30.5
    s = await h.sessions.get("s1")
    assert s is not None and s.status is SessionState.CONNECTED and s.reconnect_attempts == 0
    events = await h.audit_events()
    assert events.count("reconnect") == 7 and events.count("disconnect") == 7
    assert events[-1] == "connect"


async def test_backoff_resets_after_a_healthy_period(h: Harness) -> None:
    h.engine.add([lost()], [lost()], [connected()], [lost()])
    h.start()
    for _ in range(2):
        await h.clock.wait_for_sleepers(1)
        await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: len(h.engine.links) == 3)
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))
    await h.clock.advance(61)  # healthy for longer than reset_after
    h.engine.links[-1].end()
    await h.clock.wait_for_sleepers(1)
    assert BACKOFF.bounds(0)[0] <= h.clock.sleeps[-1] <= BACKOFF.bounds(0)[1]


async def test_a_flapping_connection_keeps_backing_off(h: Harness) -> None:
    h.engine.add([lost()], [connected(), lost()], [lost()])
    h.start()
    await h.clock.wait_for_sleepers(1)
    await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: len(h.clock.sleeps) == 2)
    assert h.clock.sleeps[1] >= BACKOFF.bounds(1)[0]


async def test_open_errors_are_retried(h: Harness) -> None:
    h.engine.add(TransientError("refused"), [connected()])
    h.start()
    await h.clock.wait_for_sleepers(1)
    s = await h.sessions.get("s1")
    assert s is not None and s.disconnect_reason == "refused"
    await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))


async def test_logged_out_deletes_auth_and_rests(h: Harness) -> None:
    await h.auth.save("creds", {"device": "d1"})
    assert (await h.auth.folder()).exists()
    h.engine.add([connected(), Disconnected(DisconnectKind.LOGGED_OUT, "device removed")])
    state = await asyncio.wait_for(h.runner().run(), 5)
    assert state is SessionState.LOGGED_OUT
    assert not ((await h.auth.folder()).parent / "s1").exists() or not any(
        (await h.auth.folder()).iterdir()
    )
    assert (await h.auth.load("creds")) is None
    s = await h.sessions.get("s1")
    assert s is not None
    assert (s.status, s.disconnect_kind, s.disconnect_reason) == (
        SessionState.LOGGED_OUT,
        DisconnectKind.LOGGED_OUT,
        "device removed",
    )
    assert (s.is_connected, s.is_ready) == (False, False)
    assert h.clock.sleeps == []
    # started again, the engine is asked to link without credentials: a new QR
    h.engine.add([QRCode("2@new,k,i,a", 60)])
    rerun = SessionRunner("s1", h.auth, h.deps, state=SessionState.LOGGED_OUT)
    h.start(rerun)
    await eventually(lambda: any(c.kind is ChangeKind.QR for c in h.changes))
    assert (await h.engine.links[-1].auth.load("creds")) is None
    s = await h.sessions.get("s1")
    assert s is not None and s.status is SessionState.QR and s.qr == "2@new,k,i,a"


@pytest.mark.parametrize("kind", [DisconnectKind.BANNED, DisconnectKind.REPLACED])
async def test_banned_and_replaced_end_failed_with_the_reason(
    h: Harness, kind: DisconnectKind
) -> None:
    await h.auth.save("creds", {"device": "d1"})
    h.engine.add([connected(), Disconnected(kind, f"{kind} by server")], [connected()])
    state = await asyncio.wait_for(h.runner().run(), 5)
    assert state is SessionState.FAILED
    s = await h.sessions.get("s1")
    assert s is not None
    assert (s.status, s.disconnect_kind, s.disconnect_reason) == (
        SessionState.FAILED,
        kind,
        f"{kind} by server",
    )
    assert len(h.engine.links) == 1 and h.clock.sleeps == []
    assert (await h.auth.load("creds")) == {"device": "d1"}  # kept: an operator decides


async def test_qr_timeout_stops(h: Harness) -> None:
    h.engine.add([QRCode("2@a,x,y,z", 60), Disconnected(DisconnectKind.QR_TIMEOUT, "no scan")])
    assert await asyncio.wait_for(h.runner().run(), 5) is SessionState.STOPPED
    s = await h.sessions.get("s1")
    assert s is not None and s.qr is None and s.disconnect_kind is DisconnectKind.QR_TIMEOUT


async def test_proxy_error_swaps_the_proxy_and_reconnects(h: Harness) -> None:
    asked: list[tuple[str, str | None]] = []

    async def failover(session_id: str, proxy: str | None, reason: str) -> str | None:
        asked.append((session_id, proxy))
        return "socks5h://second:1080"

    h.deps.proxy_failover = failover
    h.engine.add(ProxyFailure("socks connect failed"), [connected()])
    h.start(proxy="socks5h://first:1080")
    await h.clock.wait_for_sleepers(1)
    s = await h.sessions.get("s1")
    assert s is not None
    assert (s.status, s.disconnect_kind) == (SessionState.RECONNECTING, DisconnectKind.PROXY_ERROR)
    assert s.proxy == "socks5h://second:1080"
    assert asked == [("s1", "socks5h://first:1080")]
    await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: len(h.engine.options) == 2)
    assert h.engine.options[1].proxy == "socks5h://second:1080"


async def test_unchanged_qr_is_not_rewritten(h: Harness) -> None:
    h.engine.add([QRCode("2@a,k,i,s", 60)])
    h.start()
    await eventually(lambda: len(h.engine.links) == 1)
    await eventually(lambda: any(c.kind is ChangeKind.QR for c in h.changes))
    first = await h.sessions.get("s1")
    link = h.engine.links[0]
    await h.clock.advance(10)
    link.push(QRCode("2@a,k,i,s", 60))  # same code inside its validity: skipped
    link.push(QRCode("2@b,k,i,s", 20))
    await eventually(lambda: sum(c.kind is ChangeKind.QR for c in h.changes) == 2)
    second = await h.sessions.get("s1")
    assert first is not None and second is not None
    assert second.qr == "2@b,k,i,s"
    assert second.qr_generated_at == first.qr_generated_at + timedelta(seconds=10)  # type: ignore[operator]
    assert second.qr_expires_at == second.qr_generated_at + timedelta(seconds=20)  # type: ignore[operator]
    await h.clock.advance(25)  # past b's validity: the same code is written again
    link.push(QRCode("2@b,k,i,s", 20))
    await eventually(lambda: sum(c.kind is ChangeKind.QR for c in h.changes) == 3)
    assert (await h.audit_events()).count("qr_generated") == 3


async def test_logout_verb_unlinks_through_the_engine(h: Harness) -> None:
    h.engine.add([connected()])
    runner = h.runner()
    task = h.start(runner)
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))
    assert await runner.logout() is True
    assert await asyncio.wait_for(task, 5) is SessionState.LOGGED_OUT
    assert h.engine.links[0].logged_out


class _FailsOnce(SessionRepo):
    """Session rows whose next write of ``fail_on`` fails, like a brief database outage."""

    fail_on: SessionState | None = None

    async def record(self, change: SessionChange, **columns: object) -> None:
        if self.fail_on is not None and change.state is self.fail_on:
            self.fail_on = None
            raise StorageUnavailable("database unavailable")
        await super().record(change, **columns)


async def test_a_failed_write_while_reconnecting_is_retried(
    h: Harness, db: Database, clock: ManualClock
) -> None:
    flaky = _FailsOnce(db, clock)
    h.engine.add([lost()], [connected()])
    runner = SessionRunner(
        "s1", h.auth, replace(h.deps, sessions=flaky), state=SessionState.CREATED
    )
    task = h.start(runner)
    await h.clock.wait_for_sleepers(1)  # backing off after the lost link
    flaky.fail_on = SessionState.CONNECTING
    await h.clock.advance(h.clock.sleeps[-1])  # the reconnect's first write fails
    await eventually(lambda: task.done() or h.clock.sleeping == 1)
    assert not task.done(), task.exception()
    errors = await h.audit.recent("s1", event="error")
    assert [e.data["code"] for e in errors] == ["RUNNER_ERROR"]
    await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))
    s = await h.sessions.get("s1")
    assert s is not None and s.status is SessionState.CONNECTED


# --- seed 004's proxy failover, as the runner sees it -------------------------------------

FIRST, SECOND = "socks5h://u:pw@first:1080", "socks5h://u:pw@second:1080"


async def test_a_proxy_error_reconnects_through_the_pools_replacement(
    h: Harness, db: Database, clock: ManualClock
) -> None:
    outbox = RecordingOutbox(db, clock)
    proxies = ProxyRepo(db, clock)
    pool = ProxyPool(
        proxies,
        h.sessions,
        h.audit,
        outbox,
        clock,
        check=_never_checked,
        settings=ProxyPoolSettings(max_per_proxy=2),
        rng=random.Random(1),
    )
    await pool.load([FIRST, SECOND])
    await h.sessions.update("s1", proxy=FIRST)
    h.deps.proxy_failover = pool.failover
    h.engine.add(ProxyFailure("proxy socks5h://u:***@first:1080 failed"), [connected()])
    h.start(proxy=FIRST)
    await h.clock.wait_for_sleepers(1)
    s = await h.sessions.get("s1")
    assert s is not None and s.proxy == SECOND
    assert (s.status, s.disconnect_kind) == (SessionState.RECONNECTING, DisconnectKind.PROXY_ERROR)
    first = await proxies.by_url(FIRST)
    assert first is not None and first.status is ProxyStatus.BAD
    await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))
    assert [o.proxy for o in h.engine.options] == [FIRST, SECOND]
    assert len(outbox.of("session.proxy_changed")) == 1


async def test_with_no_proxy_available_the_disconnect_says_so_and_the_same_proxy_is_retried(
    h: Harness,
) -> None:
    async def none_left(session_id: str, proxy: str | None, reason: str) -> str | None:
        return None

    h.deps.proxy_failover = none_left
    h.engine.add(ProxyFailure("socks connect failed"), [connected()])
    h.start(proxy=FIRST)
    await h.clock.wait_for_sleepers(1)
    s = await h.sessions.get("s1")
    assert s is not None
    assert (s.status, s.disconnect_kind) == (SessionState.RECONNECTING, DisconnectKind.PROXY_ERROR)
    assert s.disconnect_reason is not None
    assert s.disconnect_reason.startswith("no_proxy_available")
    assert s.disconnect_reason.endswith("socks connect failed")
    disconnects = await h.audit.recent("s1", event="disconnect")
    assert disconnects[0].data["reason"].startswith("no_proxy_available")
    assert disconnects[0].data["noProxyAvailable"] is True
    await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))
    assert [o.proxy for o in h.engine.options] == [FIRST, FIRST]


async def test_a_failover_that_raises_is_logged_and_the_session_reconnects(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(session_id: str, proxy: str | None, reason: str) -> str | None:
        raise RuntimeError("pool unavailable")

    h.deps.proxy_failover = broken
    h.engine.add(ProxyFailure("socks connect failed"), [connected()])
    with caplog.at_level(logging.ERROR, logger="wagate.worker.runner"):
        h.start(proxy=FIRST)
        await h.clock.wait_for_sleepers(1)
    failed = [r for r in caplog.records if "proxy failover failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    s = await h.sessions.get("s1")
    assert s is not None and s.status is SessionState.RECONNECTING
    assert s.disconnect_reason == "socks connect failed"
    await h.clock.advance(h.clock.sleeps[-1])
    await eventually(lambda: any(c.kind is ChangeKind.CONNECTED for c in h.changes))
    assert [o.proxy for o in h.engine.options] == [FIRST, FIRST]


async def _never_checked(url: str) -> str | None:
    raise AssertionError("the runner's failover checks no proxy")
