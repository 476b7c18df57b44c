"""Seed 004's proxy pool over real repos: loading, choosing, health checks, failover, stickiness."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

import pytest
import sqlalchemy as sa

from wagate.backoff import Backoff
from wagate.clock import ManualClock
from wagate.control.proxy_pool import ProxyPool
from wagate.control.runtime import SessionRuntime
from wagate.control.sessions import SessionService
from wagate.domain.proxy import Proxy, ProxyStatus, redact
from wagate.domain.session import ChangeKind, SessionChange, SessionState
from wagate.errors import Conflict, InvalidInput, NotFound
from wagate.settings import ProxyPoolSettings
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.proxies import ProxyRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.storage.tables import audit_log
from wagate.testing import RecordingOutbox

PASSWORD = "hunter2-secret"
A = f"socks5h://wa:{PASSWORD}@10.0.0.1:1080"
B = f"socks5h://wa:{PASSWORD}@10.0.0.2:1080"
C = f"socks5h://wa:{PASSWORD}@10.0.0.3:1080"
D = f"socks5h://wa:{PASSWORD}@10.0.0.4:1080"
PHONE = "6281234567890"
MAX = 2
CHECK_EVERY = timedelta(seconds=60)
RECHECK = Backoff(30.0, 600.0)  # no jitter: the recheck delays are exact


@dataclass
class FakeCheck:
    """A proxy check that answers what the test says (None: healthy), and remembers who asked."""

    errors: dict[str, str | None] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def __call__(self, url: str) -> str | None:
        self.asked.append(url)
        return self.errors.get(url)


@dataclass
class Bench:
    pool: ProxyPool
    proxies: ProxyRepo
    sessions: SessionRepo
    audit: AuditRepo
    outbox: RecordingOutbox
    check: FakeCheck
    clock: ManualClock
    db: Database

    async def session(
        self,
        sid: str,
        proxy: str | None,
        *,
        phone: str | None = None,
        state: SessionState | None = None,
    ) -> None:
        await self.sessions.create(sid, engine="sandbox", proxy=proxy, phone=phone)
        if state is not None:
            await self.sessions.update(sid, status=state.value)

    async def proxy(self, url: str) -> Proxy:
        found = await self.proxies.by_url(url)
        assert found is not None
        return found

    async def audit_rows(self) -> list[dict[str, object]]:
        async with self.db.begin() as conn:
            rows = (await conn.execute(sa.select(audit_log))).mappings().all()
        return [dict(r) for r in rows]


@pytest.fixture
def bench(db: Database, clock: ManualClock) -> Bench:
    outbox = RecordingOutbox(db, clock)
    proxies = ProxyRepo(db, clock)
    sessions = SessionRepo(db, clock, outbox=outbox)
    audit = AuditRepo(db, clock)
    check = FakeCheck()
    settings = ProxyPoolSettings(max_per_proxy=MAX, check_every=CHECK_EVERY, recheck=RECHECK)
    pool = ProxyPool(
        proxies,
        sessions,
        audit,
        outbox,
        clock,
        check=check,
        settings=settings,
        rng=random.Random(1),
    )
    return Bench(pool, proxies, sessions, audit, outbox, check, clock, db)


# --- the pool -------------------------------------------------------------------------


async def test_load_adds_the_environment_urls_as_unchecked_env_proxies(bench: Bench) -> None:
    await bench.pool.load([A, B])
    found = await bench.pool.list()
    assert [(p.url, p.source, p.status) for p in found] == [
        (A, "env", ProxyStatus.UNCHECKED),
        (B, "env", ProxyStatus.UNCHECKED),
    ]


async def test_loading_again_keeps_a_known_proxy_and_its_bad_status(bench: Bench) -> None:
    await bench.pool.load([A])
    bench.check.errors[A] = "refused"
    await bench.pool.check_due()
    await bench.pool.load([A])  # a restart: the same PROXY_URL_1
    found = await bench.pool.list()
    assert len(found) == 1
    assert (found[0].status, found[0].failures, found[0].last_error) == (
        ProxyStatus.BAD,
        1,
        "refused",
    )


async def test_add_refuses_an_http_url_naming_the_url_field(bench: Bench) -> None:
    with pytest.raises(InvalidInput) as info:
        await bench.pool.add("http://10.0.0.1:8080")
    assert info.value.field == "url"
    assert await bench.pool.list() == []


async def test_add_warns_of_a_socks5_url_without_its_password(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wagate.control.proxy_pool"):
        await bench.pool.add(f"socks5h://wa:{PASSWORD}@10.0.0.9:1080")
        assert caplog.records == []
        added = await bench.pool.add(f"socks5://wa:{PASSWORD}@10.0.0.8:1080")
    assert added.status is ProxyStatus.UNCHECKED
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "socks5://wa:***@10.0.0.8:1080" in warnings[0].getMessage()
    assert PASSWORD not in caplog.text


async def test_get_and_remove_of_an_unknown_proxy_are_not_found(bench: Bench) -> None:
    with pytest.raises(NotFound):
        await bench.pool.get(42)
    with pytest.raises(NotFound):
        await bench.pool.remove(42)
    with pytest.raises(NotFound):
        await bench.pool.check_now(42)


# --- choosing (Flow 1) ----------------------------------------------------------------


async def test_an_empty_pool_chooses_no_proxy(bench: Bench) -> None:
    assert await bench.pool.choose(PHONE, None) is None


async def test_a_given_proxy_is_added_to_the_pool_and_chosen(bench: Bench) -> None:
    await bench.pool.load([A])
    given = f"  socks5h://u:{PASSWORD}@10.1.1.1:1080 "
    chosen = await bench.pool.choose(PHONE, given)
    assert chosen == given.strip()
    added = await bench.proxy(given.strip())
    assert (added.source, added.status) == ("provision", ProxyStatus.UNCHECKED)


async def test_the_least_loaded_proxy_with_room_is_chosen(bench: Bench) -> None:
    await bench.pool.load([A, B, C])
    await bench.session("a1", A)
    await bench.session("a2", A)  # full
    await bench.session("b1", B)
    assert await bench.pool.choose(None, None) == C
    await bench.session("c1", C)
    await bench.session("c2", C)
    assert await bench.pool.choose(None, None) == B


async def test_the_sticky_proxy_is_kept_while_usable_with_room(bench: Bench) -> None:
    await bench.pool.load([A, B])
    await bench.session("b1", B)
    await bench.proxies.stick(PHONE, B, "old")
    assert await bench.pool.choose(PHONE, None) == B  # though A carries fewer sessions
    assert await bench.pool.choose("6289999999999", None) == A  # another phone: least loaded


async def test_a_bad_sticky_proxy_gives_way_to_another(bench: Bench) -> None:
    await bench.pool.load([A, B])
    await bench.proxies.stick(PHONE, B, "old")
    bench.check.errors[B] = "refused"
    await bench.pool.check_due()
    assert (await bench.proxy(B)).status is ProxyStatus.BAD
    assert await bench.pool.choose(PHONE, None) == A


async def test_a_full_sticky_proxy_gives_way_to_another(bench: Bench) -> None:
    await bench.pool.load([A, B])
    await bench.proxies.stick(PHONE, B, "old")
    await bench.session("b1", B)
    await bench.session("b2", B)
    assert await bench.pool.choose(PHONE, None) == A


async def test_a_sticky_proxy_removed_from_the_pool_gives_way_to_another(bench: Bench) -> None:
    await bench.pool.load([A, B])
    await bench.proxies.stick(PHONE, B, "old")
    await bench.pool.remove((await bench.proxy(B)).id)
    assert await bench.pool.choose(PHONE, None) == A


async def test_with_every_proxy_full_or_bad_choosing_is_a_conflict(bench: Bench) -> None:
    await bench.pool.load([A, B])
    await bench.session("a1", A)
    await bench.session("a2", A)
    bench.check.errors[B] = "refused"
    await bench.pool.check_due()
    with pytest.raises(Conflict) as info:
        await bench.pool.choose(PHONE, None)
    assert info.value.code == "no_proxy_available"


async def test_two_provisions_at_once_never_take_the_last_place_twice(bench: Bench) -> None:
    """The place is counted from ``sessions.proxy``: the pool is held from the choice until the
    row is written (``ProxyPool.placing``), so a second provision cannot choose in between."""
    await bench.pool.load([A])
    await bench.session("a1", A)  # one place left (MAX 2)
    chose: list[str] = []

    class Racing(SessionRepo):
        async def create(self, session_id: str, **kw: object) -> object:  # type: ignore[override]
            chose.append(session_id)
            for _ in range(50):  # every other task runs as far as it can meanwhile
                await asyncio.sleep(0)
            return await super().create(session_id, **kw)  # type: ignore[arg-type]

    service = SessionService(
        Racing(bench.db, bench.clock),
        cast(SessionRuntime, object()),  # create() starts nothing
        bench.audit,
        bench.clock,
        engine="sandbox",
        worker_id=None,
        connect_wait_s=0,
        proxy_pool=bench.pool,
    )
    results = await asyncio.gather(
        service.create("n1"), service.create("n2"), return_exceptions=True
    )
    outcomes = [getattr(r, "code", None) or getattr(r, "id", None) for r in results]
    assert (await bench.proxy(A)).load == MAX, outcomes
    assert sorted(map(str, outcomes)) in (
        ["n1", "no_proxy_available"],
        ["n2", "no_proxy_available"],
    ), outcomes
    assert len(chose) == 1  # the second never reached the row


# --- health checks --------------------------------------------------------------------


async def test_a_healthy_check_makes_a_proxy_active_until_its_next_check(bench: Bench) -> None:
    await bench.pool.load([A])
    now = bench.clock.now()
    assert await bench.pool.check_due() == 1
    p = await bench.proxy(A)
    assert (p.status, p.failures, p.last_error) == (ProxyStatus.ACTIVE, 0, None)
    assert p.last_checked_at == now and p.last_ok_at == now
    assert p.next_check_at == now + CHECK_EVERY


async def test_a_failing_check_makes_it_bad_with_backing_off_rechecks(bench: Bench) -> None:
    await bench.pool.load([A])
    bench.check.errors[A] = "cannot reach the proxy: refused"
    start = bench.clock.now()
    await bench.pool.check_due()
    p = await bench.proxy(A)
    assert (p.status, p.failures, p.last_error) == (
        ProxyStatus.BAD,
        1,
        "cannot reach the proxy: refused",
    )
    assert p.last_ok_at is None
    assert p.next_check_at == start + timedelta(seconds=RECHECK.core(0))
    await bench.clock.advance(RECHECK.core(0))
    assert await bench.pool.check_due() == 1
    p = await bench.proxy(A)
    assert (p.status, p.failures) == (ProxyStatus.BAD, 2)
    assert p.next_check_at == bench.clock.now() + timedelta(seconds=RECHECK.core(1))


async def test_a_bad_proxy_that_answers_again_is_active_with_no_failures(bench: Bench) -> None:
    await bench.pool.load([A])
    bench.check.errors[A] = "refused"
    await bench.pool.check_due()
    await bench.clock.advance(RECHECK.core(0))
    bench.check.errors.clear()
    await bench.pool.check_due()
    p = await bench.proxy(A)
    assert (p.status, p.failures, p.last_error) == (ProxyStatus.ACTIVE, 0, None)
    assert p.last_ok_at == bench.clock.now()
    assert p.next_check_at == bench.clock.now() + CHECK_EVERY


async def test_a_check_that_raises_makes_the_proxy_bad(bench: Bench) -> None:
    await bench.pool.load([A])

    async def broken(url: str) -> str | None:
        raise RuntimeError("boom")

    bench.pool._check = broken
    await bench.pool.check_due()
    p = await bench.proxy(A)
    assert (p.status, p.last_error) == (ProxyStatus.BAD, "RuntimeError: boom")


async def test_only_the_proxies_due_are_checked(bench: Bench) -> None:
    await bench.pool.load([A, B])
    bench.check.errors[B] = "refused"
    assert await bench.pool.check_due() == 2  # never checked: both at once
    bench.check.asked.clear()
    assert await bench.pool.check_due() == 0  # nothing due yet
    await bench.clock.advance(RECHECK.core(0))  # B's recheck (30 s), not A's (60 s)
    assert await bench.pool.check_due() == 1
    assert bench.check.asked == [B]
    await bench.clock.advance(CHECK_EVERY.total_seconds() - RECHECK.core(0))
    assert await bench.pool.check_due() == 1
    assert bench.check.asked == [B, A]


async def test_check_now_checks_a_proxy_that_is_not_due(bench: Bench) -> None:
    await bench.pool.load([A])
    await bench.pool.check_due()
    bench.check.errors[A] = "refused"
    checked = await bench.pool.check_now((await bench.proxy(A)).id)
    assert (checked.status, checked.last_error) == (ProxyStatus.BAD, "refused")


async def test_a_proxy_removed_while_its_check_runs_is_not_found(bench: Bench) -> None:
    """DELETE /api/v1/proxies/{id} while a check of it is in flight (a check may take up to
    PROXY_CHECK_TIMEOUT_MS): the check's outcome has no row to land in."""
    await bench.pool.load([A])
    proxy_id = (await bench.proxy(A)).id

    async def removed_meanwhile(url: str) -> str | None:
        await bench.pool.remove(proxy_id)
        return None

    bench.pool._check = removed_meanwhile
    with pytest.raises(NotFound):
        await bench.pool.check_now(proxy_id)


# --- failover (Flow 4) ----------------------------------------------------------------


async def test_failover_moves_the_session_to_the_least_loaded_other_proxy(bench: Bench) -> None:
    await bench.pool.load([A, B, C, D])
    await bench.session("s1", A, phone=PHONE)
    await bench.session("b1", B)
    await bench.session("d1", D)
    await bench.session("d2", D)  # full
    moved = await bench.pool.failover("s1", A, "proxy 10.0.0.1 failed: refused")
    assert moved == C
    s = await bench.sessions.get("s1")
    assert s is not None and s.proxy == C
    assert await bench.proxies.sticky(PHONE) == C
    a = await bench.proxy(A)
    assert (a.status, a.failures, a.last_error) == (
        ProxyStatus.BAD,
        1,
        "proxy 10.0.0.1 failed: refused",
    )
    assert a.next_check_at == bench.clock.now() + timedelta(seconds=RECHECK.core(0))
    assert (await bench.proxy(C)).load == 1 and (await bench.proxy(A)).load == 0


async def test_failover_is_audited_and_announced_with_redacted_urls(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    await bench.pool.load([A, B])
    await bench.session("s1", A, phone=PHONE)
    with caplog.at_level(logging.DEBUG, logger="wagate"):
        await bench.pool.failover("s1", A, "refused")
    assert "socks5h://wa:***@10.0.0.2:1080" in caplog.text
    assert PASSWORD not in caplog.text
    expected = {"from": redact(A), "to": redact(B), "reason": "refused"}
    assert expected["from"] == "socks5h://wa:***@10.0.0.1:1080"
    entries = await bench.audit.recent("s1", event="proxy_changed")
    assert [e.data for e in entries] == [expected]
    assert bench.outbox.of("session.proxy_changed") == [expected]
    assert bench.outbox.events[-1].session_id == "s1"
    assert PASSWORD not in json.dumps([r["data"] for r in await bench.audit_rows()])
    assert PASSWORD not in json.dumps([e.payload for e in bench.outbox.events], default=str)


async def test_failover_never_moves_a_session_onto_a_full_or_bad_proxy(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    await bench.pool.load([A, B, C])
    await bench.session("s1", A, phone=PHONE)
    await bench.session("b1", B)
    await bench.session("b2", B)  # full
    bench.check.errors[C] = "refused"
    await bench.pool.check_due()  # C bad
    with caplog.at_level(logging.DEBUG, logger="wagate"):
        assert await bench.pool.failover("s1", A, "refused") is None
    assert "no proxy available" in caplog.text and PASSWORD not in caplog.text
    s = await bench.sessions.get("s1")
    assert s is not None and s.proxy == A
    assert await bench.proxies.sticky(PHONE) is None
    errors = await bench.audit.recent("s1", event="error")
    assert [e.data for e in errors] == [
        {"code": "NO_PROXY_AVAILABLE", "from": redact(A), "msg": "refused"}
    ]
    assert await bench.audit.recent("s1", event="proxy_changed") == []
    assert bench.outbox.of("session.proxy_changed") == []
    assert (await bench.proxy(A)).status is ProxyStatus.BAD
    assert PASSWORD not in json.dumps([r["data"] for r in await bench.audit_rows()])


# --- stickiness -----------------------------------------------------------------------


def _change(kind: ChangeKind, state: SessionState, **data: object) -> SessionChange:
    return SessionChange("s1", state, kind, ManualClock().now(), dict(data))


async def test_a_connected_session_sticks_its_phone_to_its_proxy(bench: Bench) -> None:
    await bench.pool.load([A, B])
    await bench.session("s1", B)
    await bench.pool.on_change(_change(ChangeKind.CONNECTED, SessionState.CONNECTED, phone=PHONE))
    assert await bench.proxies.sticky(PHONE) == B
    assert await bench.proxies.sticky_of(B) == [(PHONE, "s1")]
    assert await bench.pool.choose(PHONE, None) == B  # it comes back through the same IP


async def test_changes_other_than_connected_stick_nothing(bench: Bench) -> None:
    await bench.session("s1", B)
    await bench.pool.on_change(_change(ChangeKind.STATE, SessionState.CONNECTING, phone=PHONE))
    await bench.pool.on_change(
        _change(ChangeKind.DISCONNECTED, SessionState.RECONNECTING, phone=PHONE)
    )
    assert await bench.proxies.sticky(PHONE) is None


async def test_a_session_without_a_proxy_sticks_nothing(bench: Bench) -> None:
    await bench.session("s1", None)
    await bench.pool.on_change(_change(ChangeKind.CONNECTED, SessionState.CONNECTED, phone=PHONE))
    assert await bench.proxies.sticky(PHONE) is None


# --- removing, and the load -----------------------------------------------------------


async def test_a_proxy_in_use_is_removed_only_with_force(bench: Bench) -> None:
    await bench.pool.load([A])
    await bench.session("s1", A)
    proxy_id = (await bench.proxy(A)).id
    with pytest.raises(Conflict) as info:
        await bench.pool.remove(proxy_id)
    assert info.value.code == "proxy_in_use"
    assert PASSWORD not in info.value.message
    assert await bench.proxies.get(proxy_id) is not None
    await bench.pool.remove(proxy_id, force=True)
    with pytest.raises(NotFound):
        await bench.pool.get(proxy_id)
    s = await bench.sessions.get("s1")
    assert s is not None and s.proxy == A  # kept until its next failover


async def test_an_unused_proxy_is_removed_without_force(bench: Bench) -> None:
    await bench.pool.load([A])
    await bench.pool.remove((await bench.proxy(A)).id)
    assert await bench.pool.list() == []


async def test_the_load_counts_only_sessions_not_logged_out_or_failed(bench: Bench) -> None:
    await bench.pool.load([A, B])
    for state in SessionState:
        await bench.session(f"s-{state.value}", A, state=state)
    await bench.session("other", B)
    await bench.session("direct", None)
    freed = {SessionState.LOGGED_OUT, SessionState.FAILED}
    assert (await bench.proxy(A)).load == len(SessionState) - len(freed)
    assert [p.load for p in await bench.pool.list()] == [len(SessionState) - 2, 1]
    assert (await bench.pool.get((await bench.proxy(B)).id)).load == 1
