"""The runtime against the sandbox network: QR rotation and each fault, end to end in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from wagate.domain.session import ChangeKind, DisconnectKind, Session, SessionChange, SessionState
from wagate.roles.serve import Gateway
from wagate.settings import Settings, load_settings
from wagate.testing import until

PHONE = "6281234567890"


@pytest.fixture
def fast(tmp_path: Path, database_url: str) -> Settings:
    # QRs last long enough for a loaded machine to scan the one it read
    return load_settings(
        engine="sandbox",
        data_dir=tmp_path / "data",
        database_url=database_url,
        api_key="k",
        sandbox_qr_first_ms=20_000,
        sandbox_qr_next_ms=20_000,
        backoff_base_ms=10,
        backoff_max_ms=40,
        backoff_jitter_ms=5,
    )


@pytest.fixture
async def gw(fast: Settings) -> AsyncIterator[Gateway]:
    async with Gateway(fast) as gateway:
        yield gateway


async def _wait(
    gw: Gateway, sid: str, ok: Callable[[Session], bool], limit_s: float = 10
) -> Session:
    found: list[Session] = []

    async def check() -> bool:
        s = await gw.sessions.get(sid)
        if s is not None and ok(s):
            found.append(s)
            return True
        return False

    try:
        await until(check, limit_s)
    except TimeoutError:
        raise AssertionError(await gw.sessions.get(sid)) from None
    return found[-1]


async def _linked(gw: Gateway, sid: str = "s1") -> Session:
    await gw.services.sessions.provision(sid)
    s = await _wait(gw, sid, lambda s: s.qr is not None)
    assert gw.sandbox_network is not None
    await gw.sandbox_network.scan(s.qr or "", PHONE, "Shop")
    return await _wait(gw, sid, lambda s: s.status is SessionState.CONNECTED)


async def test_six_distinct_qrs_then_qr_timeout(fast: Settings) -> None:
    qrs: list[SessionChange] = []
    rows: list[Session] = []

    async def on_change(change: SessionChange) -> None:
        if change.kind is ChangeKind.QR:
            qrs.append(change)
            row = await gw.sessions.get(change.session_id)
            assert row is not None
            rows.append(row)

    quick = {"sandbox_qr_first_ms": 150, "sandbox_qr_next_ms": 60}
    async with Gateway(fast.model_copy(update=quick), listeners=[on_change]) as gw:
        await _six_qrs_then_timeout(gw, qrs, rows)


async def _six_qrs_then_timeout(gw: Gateway, qrs: list[SessionChange], rows: list[Session]) -> None:
    await gw.services.sessions.provision("s1")
    s = await _wait(gw, "s1", lambda s: s.status is SessionState.STOPPED)
    codes = [c.data["qr"] for c in qrs]
    assert len(codes) == 6 and len(set(codes)) == 6
    assert all(code.startswith("2@") and code.count(",") == 3 for code in codes)
    for change, row in zip(qrs, rows, strict=True):  # the qr* columns follow each code
        assert row.qr == change.data["qr"] and row.status is SessionState.QR
        assert row.qr_generated_at is not None and row.qr_expires_at is not None
        assert row.qr_expires_at > row.qr_generated_at
    first_ttl = rows[0].qr_expires_at - rows[0].qr_generated_at  # type: ignore[operator]
    later_ttl = rows[1].qr_expires_at - rows[1].qr_generated_at  # type: ignore[operator]
    assert first_ttl.total_seconds() == pytest.approx(0.15)
    assert later_ttl.total_seconds() == pytest.approx(0.06)
    assert (s.disconnect_kind, s.qr, s.qr_expires_at) == (DisconnectKind.QR_TIMEOUT, None, None)
    audit = await gw.audit.recent("s1", event="qr_generated")
    assert len(audit) == 6


async def test_scan_links_and_writes_credentials(gw: Gateway, fast: Settings) -> None:
    s = await _linked(gw)
    assert (s.phone_number, s.wa_name, s.is_ready, s.is_connected) == (PHONE, "Shop", True, True)
    assert s.jid is not None and s.jid.startswith(PHONE) and s.lid is not None
    assert s.qr is None and s.last_connected_at is not None
    assert (fast.auth_root / "s1" / "creds.json").is_file()


async def test_drop_reconnects_without_a_new_qr(gw: Gateway) -> None:
    await _linked(gw)
    assert gw.sandbox_network is not None
    await gw.sandbox_network.fault("drop", session="s1")
    await _wait(gw, "s1", lambda s: s.disconnect_kind is DisconnectKind.CONNECTION_LOST)
    s = await _wait(gw, "s1", lambda s: s.status is SessionState.CONNECTED)
    assert s.phone_number == PHONE
    assert len(await gw.audit.recent("s1", event="qr_generated")) == 1
    assert len(await gw.audit.recent("s1", event="reconnect")) >= 1


async def test_proxy_error_reconnects(gw: Gateway) -> None:
    await _linked(gw)
    assert gw.sandbox_network is not None
    await gw.sandbox_network.fault("proxy_error", session="s1")
    await _wait(gw, "s1", lambda s: s.disconnect_kind is DisconnectKind.PROXY_ERROR)
    await _wait(gw, "s1", lambda s: s.status is SessionState.CONNECTED)


async def test_logout_deletes_auth_and_asks_for_a_new_qr(gw: Gateway, fast: Settings) -> None:
    await _linked(gw)
    assert gw.sandbox_network is not None
    await gw.sandbox_network.fault("logout", session="s1")
    s = await _wait(gw, "s1", lambda s: s.status is SessionState.LOGGED_OUT)
    assert s.disconnect_kind is DisconnectKind.LOGGED_OUT
    folder = fast.auth_root / "s1"
    assert not folder.exists() or not any(folder.iterdir())
    await gw.services.sessions.restart("s1")
    s = await _wait(gw, "s1", lambda s: s.qr is not None)
    assert s.status is SessionState.QR


@pytest.mark.parametrize(
    ("fault", "kind"), [("ban", DisconnectKind.BANNED), ("replaced", DisconnectKind.REPLACED)]
)
async def test_ban_and_replaced_end_failed(gw: Gateway, fault: str, kind: DisconnectKind) -> None:
    await _linked(gw)
    assert gw.sandbox_network is not None
    await gw.sandbox_network.fault(fault, session="s1")
    s = await _wait(gw, "s1", lambda s: s.status is SessionState.FAILED)
    assert s.disconnect_kind is kind and s.disconnect_reason
    await asyncio.sleep(0.1)  # a failed session must stay down, not retry
    assert not gw.worker.is_running("s1")
    assert (await gw.sessions.get("s1")).status is SessionState.FAILED  # type: ignore[union-attr]


async def test_restart_of_the_gateway_resumes_linked_sessions(fast: Settings) -> None:
    async with Gateway(fast) as gw:
        await _linked(gw)
    async with Gateway(fast) as gw:
        s = await _wait(gw, "s1", lambda s: s.status is SessionState.CONNECTED)
        assert s.phone_number == PHONE
        assert len(await gw.audit.recent("s1", event="qr_generated")) == 1


async def test_credentials_in_the_database_outlive_the_auth_folder(fast: Settings) -> None:
    in_db = fast.model_copy(update={"auth_store": "database"})
    async with Gateway(in_db) as gw:
        await _linked(gw)
        assert await gw.worker.auth("s1").exists()
    assert not (fast.auth_root / "s1").exists(), "nothing of the session on this disk"
    async with Gateway(in_db) as gw:  # as another worker would: no folder, same database
        s = await _wait(gw, "s1", lambda s: s.status is SessionState.CONNECTED)
        assert s.phone_number == PHONE
        assert len(await gw.audit.recent("s1", event="qr_generated")) == 1
        await gw.services.sessions.delete("s1")
        assert not await gw.worker.auth("s1").exists()


async def test_pairing_code_links_by_phone_number(gw: Gateway) -> None:
    await gw.services.sessions.provision("p1", phone="+" + PHONE, pair=True)
    s = await _wait(gw, "p1", lambda s: s.pair_code is not None)
    assert s.pair_code is not None and len(s.pair_code.replace("-", "")) == 8
    assert gw.sandbox_network is not None
    await gw.sandbox_network.pair(s.pair_code)
    s = await _wait(gw, "p1", lambda s: s.status is SessionState.CONNECTED)
    assert s.phone_number == PHONE and s.pair_code is None


async def test_deleting_a_stopped_linked_session_unlinks_the_device(gw: Gateway) -> None:
    await _linked(gw)
    await gw.services.sessions.stop("s1")
    assert gw.sandbox_network is not None

    async def devices() -> int:
        accounts = await gw.sandbox_network.accounts()  # type: ignore[union-attr]
        return sum(len(a.devices) for a in accounts if a.phone == PHONE)

    assert await devices() == 1
    assert (await gw.services.sessions.delete("s1")).unlinked
    assert await devices() == 0  # no linked device left behind on the phone
