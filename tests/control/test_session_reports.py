"""Workers' reports: the record is the truth; a report drives a stale row, never a fresher one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from wagate.clock import ManualClock
from wagate.control.session_reports import SessionReports
from wagate.domain.session import (
    ChangeKind,
    DisconnectKind,
    Session,
    SessionChange,
    SessionState,
)
from wagate.errors import InvalidInput, NotConfigured, NotFound, Unauthorized
from wagate.storage.db import Database
from wagate.storage.repos.audit import AuditRepo
from wagate.storage.repos.sessions import SessionRepo
from wagate.testing import RecordingOutbox
from wagate.webhooks.events import session_events
from wagate.webhooks.seed004_signing import EventVerifier, event_headers

PHONE = "6281234567890"


@dataclass
class Pings:
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, session_id: str, at_ms: int) -> None:
        self.calls.append((session_id, at_ms))


@dataclass
class Rig:
    clock: ManualClock
    sessions: SessionRepo
    audit: AuditRepo
    outbox: RecordingOutbox
    pings: Pings
    reports: SessionReports

    async def row(self, session_id: str = "s1") -> Session:
        return await self.sessions.require(session_id)

    async def later(self, seconds: float = 10) -> datetime:
        """Advance the clock; the new now."""
        await self.clock.advance(seconds)
        return self.clock.now()


@pytest.fixture
async def rig(db: Database, clock: ManualClock) -> AsyncIterator[Rig]:
    outbox = RecordingOutbox(db, clock)
    sessions = SessionRepo(db, clock, outbox=outbox, announce=session_events)
    audit = AuditRepo(db, clock)
    pings = Pings()
    verifier = EventVerifier("secret", tolerance_s=300, clock=clock)
    reports = SessionReports(
        sessions, audit, clock, pings, verifier=verifier, worker_token="worker-token"
    )
    await sessions.create("s1", engine="sandbox")
    yield Rig(clock, sessions, audit, outbox, pings, reports)


def _change(
    state: SessionState, kind: ChangeKind, at: datetime, data: dict[str, object] | None = None
) -> SessionChange:
    return SessionChange("s1", state, kind, at, data or {})


# --- the rule --------------------------------------------------------------------------


async def test_a_report_newer_than_the_row_drives_it_with_the_runners_events(rig: Rig) -> None:
    at = await rig.later()
    assert await rig.reports.qr_code("s1", "2@first", at)
    row = await rig.row()
    assert (row.status, row.qr, row.qr_generated_at) == (SessionState.QR, "2@first", at)
    assert row.qr_expires_at == at + timedelta(minutes=5)
    assert row.updated_at == at
    assert [e["qr"] for e in rig.outbox.of("session.qr")] == ["2@first"]


async def test_a_report_older_than_the_row_changes_nothing(rig: Rig) -> None:
    reported_at = await rig.later()
    await rig.later()
    # meanwhile the record moved on (an operator stopped it, a runner wrote)
    stopped = {"kind": None, "reason": "stopped by operator"}
    stop = _change(SessionState.STOPPED, ChangeKind.STATE, rig.clock.now(), stopped)
    await rig.sessions.record_disconnected(stop, None, "stopped by operator")
    before, events = await rig.row(), len(rig.outbox.events)
    assert not await rig.reports.connected("s1", PHONE, reported_at)
    assert await rig.row() == before
    assert len(rig.outbox.events) == events


async def test_our_workers_report_finds_the_row_saying_it_and_changes_nothing(rig: Rig) -> None:
    # a worker of ours records first, then reports the same change
    at = await rig.later()
    change = _change(SessionState.QR, ChangeKind.QR, at, {"qr": "2@q", "expires_at": None})
    await rig.sessions.record_qr(change, "2@q", at, at + timedelta(seconds=60))
    before, events = await rig.row(), len(rig.outbox.events)
    await rig.later()
    assert not await rig.reports.qr_code("s1", "2@q", rig.clock.now())
    assert await rig.row() == before
    assert len(rig.outbox.events) == events


async def test_a_new_qr_is_applied_though_the_state_is_already_qr(rig: Rig) -> None:
    assert await rig.reports.qr_code("s1", "2@first", await rig.later())
    assert await rig.reports.qr_code("s1", "2@second", await rig.later())
    assert (await rig.row()).qr == "2@second"
    assert [e["qr"] for e in rig.outbox.of("session.qr")] == ["2@first", "2@second"]


async def test_reports_made_in_the_same_second_apply_in_order(rig: Rig) -> None:
    # seed 004's events carry whole seconds: a QR and its scan can share one
    at = await rig.later()
    assert await rig.reports.qr_code("s1", "2@q", at)
    assert await rig.reports.connected("s1", PHONE, at)
    assert (await rig.row()).status is SessionState.CONNECTED


async def test_a_report_from_the_future_counts_as_now(rig: Rig) -> None:
    now = await rig.later()
    assert await rig.reports.qr_code("s1", "2@q", now + timedelta(hours=1))
    assert (await rig.row()).updated_at == now
    # the row is not pinned: the next report, a second later, still applies
    assert await rig.reports.connected("s1", PHONE, await rig.later(1))


async def test_an_unknown_session_is_not_found(rig: Rig) -> None:
    at = await rig.later()
    with pytest.raises(NotFound):
        await rig.reports.qr_code("nope", "2@q", at)
    with pytest.raises(NotFound):
        await rig.reports.ping("nope", at)
    with pytest.raises(NotFound):
        await rig.reports.auth_failure("nope", "logged out", at)
    assert await rig.audit.recent("nope") == []


# --- each event ------------------------------------------------------------------------


async def test_connected_records_the_phone_and_clears_the_qr(rig: Rig) -> None:
    await rig.reports.qr_code("s1", "2@q", await rig.later())
    at = await rig.later()
    assert await rig.reports.connected("s1", "+62 812-3456-7890", at)
    row = await rig.row()
    assert (row.status, row.phone_number, row.jid) == (
        SessionState.CONNECTED,
        PHONE,
        f"{PHONE}@s.whatsapp.net",
    )
    assert (row.qr, row.is_connected, row.last_connected_at) == (None, True, at)
    status = rig.outbox.of("session.status")[-1]
    assert (status["state"], status["phone"]) == ("connected", PHONE)


async def test_a_malformed_phone_is_invalid_naming_the_field(rig: Rig) -> None:
    with pytest.raises(InvalidInput) as caught:
        await rig.reports.connected("s1", "not a phone", await rig.later())
    assert caught.value.field == "data.phoneNumber"


@pytest.mark.parametrize(
    ("code", "state", "kind"),
    [
        ("connection_lost", SessionState.RECONNECTING, DisconnectKind.CONNECTION_LOST),
        ("banned", SessionState.FAILED, DisconnectKind.BANNED),
        ("qr_timeout", SessionState.STOPPED, DisconnectKind.QR_TIMEOUT),
        (401, SessionState.LOGGED_OUT, DisconnectKind.LOGGED_OUT),
        (440, SessionState.FAILED, DisconnectKind.REPLACED),
        (515, SessionState.RECONNECTING, DisconnectKind.CONNECTION_LOST),
        ("who-knows", SessionState.RECONNECTING, DisconnectKind.CONNECTION_LOST),
        (None, SessionState.STOPPED, None),
    ],
)
async def test_disconnected_rests_where_its_code_says(
    rig: Rig, code: int | str | None, state: SessionState, kind: DisconnectKind | None
) -> None:
    await rig.reports.connected("s1", PHONE, await rig.later())
    assert await rig.reports.disconnected("s1", "went away", code, await rig.later())
    row = await rig.row()
    assert (row.status, row.disconnect_kind, row.disconnect_reason) == (state, kind, "went away")
    status = rig.outbox.of("session.status")[-1]
    assert (status["state"], status["disconnectKind"]) == (state.value, kind and kind.value)


async def test_a_repeated_disconnect_changes_nothing(rig: Rig) -> None:
    await rig.reports.connected("s1", PHONE, await rig.later())
    assert await rig.reports.disconnected("s1", "lost", "connection_lost", await rig.later())
    assert not await rig.reports.disconnected("s1", "lost", "connection_lost", await rig.later())


async def test_proxy_error_reconnects_and_is_audited(rig: Rig) -> None:
    await rig.reports.connected("s1", PHONE, await rig.later())
    assert await rig.reports.proxy_error("s1", "socks5 refused", await rig.later())
    row = await rig.row()
    assert (row.status, row.disconnect_kind) == (
        SessionState.RECONNECTING,
        DisconnectKind.PROXY_ERROR,
    )
    [entry] = await rig.audit.recent("s1")
    assert (entry.event, entry.data["code"], entry.data["msg"]) == (
        "error",
        "PROXY_ERROR",
        "socks5 refused",
    )


async def test_auth_failure_is_audited_even_when_the_row_is_fresher(rig: Rig) -> None:
    old = await rig.later()
    await rig.later()
    await rig.sessions.update("s1", proxy=None)  # any write after the report
    assert not await rig.reports.auth_failure("s1", "logged out on the phone", old)
    assert (await rig.row()).status is SessionState.CREATED
    [entry] = await rig.audit.recent("s1")
    assert entry.data["code"] == "AUTH_FAILURE"


async def test_auth_failure_logs_the_session_out(rig: Rig) -> None:
    await rig.reports.connected("s1", PHONE, await rig.later())
    assert await rig.reports.auth_failure("s1", "logged out", await rig.later())
    row = await rig.row()
    assert (row.status, row.disconnect_kind) == (SessionState.LOGGED_OUT, DisconnectKind.LOGGED_OUT)


# --- PING ------------------------------------------------------------------------------


async def test_a_ping_sets_last_ping_only_and_tells_on_ping(rig: Rig) -> None:
    before = await rig.row()
    at = await rig.later(15)
    await rig.reports.ping("s1", at)
    row = await rig.row()
    assert row.last_ping_at == at
    assert row.updated_at == before.updated_at  # liveness is not a change of the record
    assert rig.pings.calls == [("s1", round(at.timestamp() * 1000))]
    assert rig.outbox.events == []


async def test_last_ping_only_moves_forward_and_never_past_now(rig: Rig) -> None:
    first = await rig.later(15)
    await rig.reports.ping("s1", first)
    await rig.reports.ping("s1", first - timedelta(seconds=5))  # late, out of order
    assert (await rig.row()).last_ping_at == first
    now = await rig.later(15)
    await rig.reports.ping("s1", now + timedelta(days=1))
    assert (await rig.row()).last_ping_at == now


# --- seed 002's status words -----------------------------------------------------------


async def test_seed_002_status_drives_a_stale_row(rig: Rig) -> None:
    assert await rig.reports.status("s1", "connecting", None, await rig.later())
    assert (await rig.row()).status is SessionState.CONNECTING
    assert await rig.reports.status("s1", "qr_required", None, await rig.later())
    assert (await rig.row()).status is SessionState.QR
    assert await rig.reports.status("s1", "connected", "+6281234567890", await rig.later())
    row = await rig.row()
    assert (row.status, row.phone_number) == (SessionState.CONNECTED, PHONE)
    assert await rig.reports.status("s1", "disconnected", None, await rig.later())
    row = await rig.row()
    assert (row.status, row.disconnect_kind) == (SessionState.STOPPED, None)


async def test_seed_002_status_compares_in_seed_002_words(rig: Rig) -> None:
    # reconnecting is what seed 002 calls "connecting": nothing to change
    lost = _change(SessionState.RECONNECTING, ChangeKind.DISCONNECTED, rig.clock.now())
    await rig.sessions.record_disconnected(lost, DisconnectKind.CONNECTION_LOST, "lost")
    assert not await rig.reports.status("s1", "connecting", None, await rig.later())
    assert (await rig.row()).status is SessionState.RECONNECTING
    # created is "disconnected" already
    await rig.sessions.create("s2", engine="sandbox")
    assert not await rig.reports.status("s2", "disconnected", None, await rig.later())


async def test_seed_002_unknown_status_is_invalid_naming_status(rig: Rig) -> None:
    with pytest.raises(InvalidInput) as caught:
        await rig.reports.status("s1", "online", None, await rig.later())
    assert caught.value.field == "status"
    with pytest.raises(InvalidInput) as caught:
        await rig.reports.status("s1", "connected", "12", await rig.later())
    assert caught.value.field == "phoneNumber"


# --- who may report --------------------------------------------------------------------


async def test_the_worker_token_is_checked(rig: Rig) -> None:
    rig.reports.check_worker_token("worker-token")
    for wrong in (None, "", "worker-token2", "WORKER-TOKEN"):
        with pytest.raises(Unauthorized):
            rig.reports.check_worker_token(wrong)


async def test_unset_credentials_turn_the_reports_off_naming_the_variable(rig: Rig) -> None:
    off = SessionReports(rig.sessions, rig.audit, rig.clock)
    with pytest.raises(NotConfigured, match="WORKER_AUTH_TOKEN"):
        off.check_worker_token("worker-token")
    with pytest.raises(NotConfigured, match="WEBHOOK_SECRET"):
        async with off.signed_event({}, b"{}"):
            pass


async def test_an_event_that_failed_inside_may_come_again(rig: Rig) -> None:
    body = b'{"type":"PING"}'
    headers = event_headers("secret", int(rig.clock.now().timestamp()), body, "PING")
    with pytest.raises(NotFound):
        async with rig.reports.signed_event(headers, body):
            raise NotFound("the database said no")
    async with rig.reports.signed_event(headers, body) as at:
        assert at == rig.clock.now()
    with pytest.raises(Unauthorized, match="replayed"):
        async with rig.reports.signed_event(headers, body):
            pass
