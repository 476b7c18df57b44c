"""The neonize engine's own promises, on neonize's real Python over a fake FFI (see tests/contract).

Each test here also fails if the fake saw a call the real Go side would
have died of (a concurrent map write, a ``Stop`` under a goroutine that will
still read its map entry, a ``GetMe`` on a client that does not exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.contract import neonize_go as go
from tests.contract.neonize_driver import NeonizeDriver, lid_of, settle
from tests.contract.neonize_fake import FakeGo, patch_ffi
from wagate.clock import ManualClock
from wagate.domain.message import MediaRef, MessageKind, Outgoing
from wagate.domain.session import DisconnectKind
from wagate.engine.base import (
    Connected,
    Disconnected,
    LinkOptions,
    MessageEvent,
    PairCode,
    QRCode,
)
from wagate.engine.neonize import NeonizeConfig, NeonizeLink
from wagate.engine.neonize import _loader as nz
from wagate.engine.neonize.client import ClientSlot
from wagate.errors import InvalidInput, ProxyFailure, TransientError
from wagate.settings import load_settings
from wagate.testing import Events

PHONE, PEER = "15550001111", "15550002222"
PEER_JID = f"{PEER}@s.whatsapp.net"
FAST = NeonizeConfig(
    reconnect_grace_s=0,
    connect_backoff_base_s=0.01,
    connect_backoff_max_s=0.05,
    start_window_s=0.5,
    stop_timeout_s=1.0,
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    made = FakeGo()
    patch_ffi(made, monkeypatch.setattr)
    yield made
    made.close()


@pytest.fixture
def make_world(fake: FakeGo, tmp_path: Path) -> Any:
    made: list[NeonizeDriver] = []

    def make(config: NeonizeConfig = FAST) -> NeonizeDriver:
        made.append(NeonizeDriver(fake, tmp_path, config))
        return made[-1]

    yield make
    assert fake.violations == [], "calls Go would have crashed on"


@pytest.fixture
async def world(make_world: Any, fake: FakeGo) -> AsyncIterator[NeonizeDriver]:
    driver: NeonizeDriver = make_world()
    yield driver
    await settle(fake, driver.engine)
    await driver.aclose()


async def link_up(world: NeonizeDriver, link: NeonizeLink) -> Events:
    events = Events(link)
    qr = await events.expect(QRCode)
    await world.scan(qr.code, PHONE, push_name="Alice")
    await events.first(Connected)
    return events


def called(fake: FakeGo, *names: str) -> list[str]:
    return [name for name, _ in fake.calls if name in names]


# --- sending ------------------------------------------------------------------------------


async def test_text_goes_out_as_a_plain_conversation_with_no_lookups(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    text = "call @15550009999 about 120363000000000001@g.us"
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await link_up(world, link)
        await link.send(Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text=text))
    message = fake.sent[-1].message
    assert message.conversation == text and not message.HasField("extendedTextMessage")
    assert called(fake, "GetGroupInfo", "IsOnWhatsApp") == []


@pytest.mark.parametrize(
    ("error", "raised"),
    [("server returned error 406", InvalidInput), ("websocket not connected", TransientError)],
)
async def test_send_failures_are_translated_once(
    world: NeonizeDriver, fake: FakeGo, error: str, raised: type[Exception]
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await link_up(world, link)
        fake.send_error = error
        with pytest.raises(raised, match=error):
            await link.send(Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text="x"))


async def test_calls_before_login_are_refused_without_reaching_go(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await Events(link).expect(QRCode)
        with pytest.raises(TransientError):
            await link.send(Outgoing(to=PEER_JID, kind=MessageKind.TEXT, text="early"))
        with pytest.raises(TransientError):
            await link.groups()
        assert await link.is_connected() is False  # safe in any state: it asks Go
    assert called(fake, "SendMessage", "GetJoinedGroups", "GetMe") == []


async def test_verbs_reach_go_with_neonizes_own_values(world: NeonizeDriver, fake: FakeGo) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await link_up(world, link)
        await link.set_presence(True)
        await link.set_presence(False)
        group = await world.create_group("Team", PEER, [PHONE])
        info = await link.group_info(group)
        with pytest.raises(InvalidInput):
            await anext(link.download(MediaRef(kind=MessageKind.IMAGE, handle={"x": 1})))
    assert [p for _, p in fake.presence] == [b"available", b"unavailable"]
    assert (info.jid, info.name, info.owner, info.participants) == (group, "Team", PEER_JID, 2)


# --- linking ------------------------------------------------------------------------------


async def test_the_pairing_code_is_asked_for_once_after_the_first_qr(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    options = LinkOptions(pair_phone="+1 555 000-1111")
    async with world.engine.link(world.auth("s1"), options) as link:
        events = Events(link)
        await events.expect(QRCode)
        code = await events.expect(PairCode)
        for _ in range(2):
            fake.client("s1").post("qr")
            await events.expect(QRCode)
    assert code.code == "1111-PAIR"
    assert fake.pair_requests == [PHONE]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("timeout", DisconnectKind.QR_TIMEOUT),
        ("err-client-outdated", DisconnectKind.CLIENT_OUTDATED),
        ("error", DisconnectKind.CONNECTION_LOST),
    ],
)
async def test_the_login_status_aioze_drops_is_recovered(
    world: NeonizeDriver, fake: FakeGo, status: str, kind: DisconnectKind
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = Events(link)
        await events.expect(QRCode)
        fake.client("s1").post("status", status)
        ended = await events.expect(Disconnected)
    assert ended.kind is kind
    if kind is DisconnectKind.CLIENT_OUTDATED:
        assert "upgrade wagate" in ended.reason and "neonize" in ended.reason


async def test_connected_comes_from_the_device_event_never_from_get_me(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = Events(link)
        qr = await events.expect(QRCode)
        await world.scan(qr.code, PHONE, push_name="Alice")
        connected = await events.first(Connected)
    assert connected == Connected(
        jid=f"{PHONE}:7@s.whatsapp.net",
        phone=PHONE,
        push_name="Alice",
        device_name="wagate",
        lid=f"{lid_of(PHONE)}@lid",
    )
    assert called(fake, "GetMe", "GetLIDFromPN", "GetPNFromLID", "GetContact") == []


# --- session events -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "event", "kind", "detail_code"),
    [
        (8, go.temporary_ban("SENT_TOO_MANY_SAME_MESSAGE", 7200), DisconnectKind.BANNED,
         "sent_too_many_same_message"),
        (9, go.connect_failure("SERVICE_UNAVAILABLE"), DisconnectKind.CONNECTION_LOST, None),
        (9, go.connect_failure("MAIN_DEVICE_GONE"), DisconnectKind.LOGGED_OUT, None),
        (9, go.connect_failure("CLIENT_OUTDATED"), DisconnectKind.CLIENT_OUTDATED, None),
        (10, nz.nproto.ClientOutdated(), DisconnectKind.CLIENT_OUTDATED, None),
        (6, go.logged_out("LOGGED_OUT"), DisconnectKind.LOGGED_OUT, None),
        (7, nz.nproto.StreamReplaced(), DisconnectKind.REPLACED, None),
    ],
)  # fmt: skip
async def test_session_events_end_the_link_with_their_kind(
    world: NeonizeDriver,
    fake: FakeGo,
    code: int,
    event: Any,
    kind: DisconnectKind,
    detail_code: str | None,
) -> None:
    auth = world.auth("s1")
    async with world.engine.link(auth, LinkOptions()) as link:
        events = await link_up(world, link)
        fake.emit(fake.client("s1"), code, event)
        ended = await events.expect(Disconnected)
    assert ended.kind is kind and ended.detail.get("code") == detail_code
    if code == 8:
        expires = datetime.fromisoformat(ended.detail["expires_at"])
        assert abs(expires - (datetime.now(UTC) + timedelta(hours=2))) < timedelta(minutes=1)
    if code == 6:
        assert (await auth.load("neonize")) == {}, "whatsmeow deleted the device; so do we"


async def test_keepalive_timeouts_count_only_when_they_repeat(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = await link_up(world, link)
        client = fake.client("s1")
        fake.emit(client, 4, go.keepalive_timeout(1, datetime.now(UTC)))
        await world.phone_send(PEER, PHONE, text="still here")
        assert isinstance(await events.next(), MessageEvent)
        fake.emit(client, 4, go.keepalive_timeout(2, datetime.now(UTC)))
        ended = await events.expect(Disconnected)
    assert ended.kind is DisconnectKind.CONNECTION_LOST and "keep-alive" in ended.reason


async def test_whatsmeow_reconnecting_within_the_grace_keeps_the_link(
    make_world: Any, fake: FakeGo
) -> None:
    world: NeonizeDriver = make_world(NeonizeConfig(reconnect_grace_s=0.3, stop_timeout_s=1))
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = await link_up(world, link)
        client = fake.client("s1")
        fake.emit(client, 12, go.disconnected())
        fake.emit(client, 3, go.connected())  # whatsmeow's own reconnect
        await asyncio.sleep(0.4)
        await world.phone_send(PEER, PHONE, text="after the blip")
        assert isinstance(await events.next(), MessageEvent)
        fake.emit(client, 12, go.disconnected())
        ended = await events.expect(Disconnected, within_s=2)
    assert ended.kind is DisconnectKind.CONNECTION_LOST
    await settle(fake, world.engine)
    await world.aclose()


async def test_the_pipeline_ending_while_logged_in_restarts_the_client(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = await link_up(world, link)
        fake.client("s1").post("end", "proto: required field not set")
        ended = await events.expect(Disconnected)
    assert ended.kind is DisconnectKind.CONNECTION_LOST and "pipeline" in ended.reason
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        again = await Events(link).first(Connected)
    assert again.phone == PHONE
    assert [uuid for name, uuid in fake.calls if name == "Neonize"] == ["s1", "s1"]


# --- configuration and time ----------------------------------------------------------------


def test_the_config_is_read_from_the_engines_settings_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAGATE_NEONIZE_STOP_TIMEOUT_MS", "2500")
    monkeypatch.setenv("WAGATE_NEONIZE_CONNECT_BACKOFF_MAX_MS", "60000")
    monkeypatch.setenv("WAGATE_NEONIZE_DEVICE_NAME", "desk")
    settings = load_settings()
    config = NeonizeConfig.from_settings(settings.neonize, 7)
    assert (config.stop_timeout_s, config.connect_backoff_max_s) == (2.5, 60.0)
    assert (config.device_name, config.max_sessions) == ("desk", 7)


async def test_failed_dials_are_spaced_by_the_shared_backoff_on_the_engines_clock(
    fake: FakeGo, tmp_path: Path
) -> None:
    clock = ManualClock()
    config = NeonizeConfig(
        reconnect_grace_s=0, connect_backoff_base_s=2, connect_backoff_max_s=5, start_window_s=1
    )
    world = NeonizeDriver(fake, tmp_path, config, clock=clock)
    fake.dial_error = "failed to dial whatsapp web websocket: connection refused"

    async def attempt() -> None:
        with pytest.raises(TransientError):
            async with world.engine.link(world.auth("s1"), LinkOptions()):
                pass

    await attempt()  # the first dial waits for nothing
    for spacing in (2.0, 4.0, 5.0):  # doubling up to the bound, no jitter
        waiting = asyncio.ensure_future(attempt())
        await clock.wait_for_sleepers(1)
        assert clock.sleeps[-1] == spacing and called(fake, "Neonize") == ["Neonize"] * (
            1 + [2.0, 4.0, 5.0].index(spacing)
        )
        await clock.advance(spacing)
        await asyncio.wait_for(waiting, 5)
    assert len(called(fake, "Neonize")) == 4
    await settle(fake, world.engine)
    await world.aclose()
    assert fake.violations == []


# --- starting and stopping ------------------------------------------------------------------


async def test_a_dial_that_fails_at_once_raises_a_transient_error(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    fake.dial_error = "failed to dial whatsapp web websocket: lookup web.whatsapp.com: no such host"
    with pytest.raises(TransientError, match="no such host") as caught:
        async with world.engine.link(world.auth("s1"), LinkOptions()):
            pass
    assert not isinstance(caught.value, ProxyFailure)
    assert called(fake, "Stop") == ["Stop"], "the ended client's map entries are removed"


@pytest.mark.parametrize(
    ("proxy", "go_sees", "error"),
    [
        ("socks5h://u:p%40ss@127.0.0.1:1080", "socks5://u:p%40ss@127.0.0.1:1080",
         "socks connect tcp 127.0.0.1:1080->web.whatsapp.com:443: connection refused"),
        ("http://127.0.0.1:3128", "http://127.0.0.1:3128",
         "proxyconnect tcp: dial tcp 127.0.0.1:3128: connect: connection refused"),
        ("https://127.0.0.1:3128", "https://127.0.0.1:3128", "Proxy Authentication Required"),
    ],
)  # fmt: skip
async def test_proxies_reach_go_in_its_terms_and_their_failures_are_proxy_errors(
    world: NeonizeDriver, fake: FakeGo, proxy: str, go_sees: str, error: str
) -> None:
    fake.dial_error = f"failed to dial whatsapp web websocket: {error}"
    with pytest.raises(ProxyFailure) as caught:
        async with world.engine.link(world.auth("s1"), LinkOptions(proxy=proxy)):
            pass
    assert fake.client("s1").proxy == go_sees
    assert "p%40ss" not in caught.value.message


async def test_an_unusable_proxy_scheme_is_refused_before_go(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    with pytest.raises(ProxyFailure, match="http, https and socks5"):
        async with world.engine.link(world.auth("s1"), LinkOptions(proxy="socks4://1.2.3.4:1")):
            pass
    assert fake.calls == []


async def test_closing_while_qr_codes_show_only_disconnects_and_sets_the_client_aside(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await Events(link).expect(QRCode)
    assert called(fake, "Stop") == [] and called(fake, "Disconnect") == ["Disconnect"]
    session = world.engine.sessions["s1"]
    assert [slot.uuid for slot in session.abandoned] == ["s1"]
    assert world.engine.health()["clientsSetAside"] == 1
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        qr = await Events(link).expect(QRCode)
    assert fake.find_qr(qr.code).uuid == "s1~1", "a new client, never the stuck one again"
    # The set-aside goroutine shows life after all (a late dial): now it is stopped.
    fake.devices[fake.client("s1").db] = {"phone": PHONE, "push_name": "", "lid": "1"}
    fake.client("s1").post("late_pipeline")
    async with asyncio.timeout(3):
        while [slot.uuid for slot in session.abandoned] != ["s1~1"]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert ("Stop", "s1") in fake.calls


async def test_a_stop_stuck_in_go_is_bounded_and_reported(make_world: Any, fake: FakeGo) -> None:
    world: NeonizeDriver = make_world(NeonizeConfig(reconnect_grace_s=0, stop_timeout_s=0.2))
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await link_up(world, link)
        fake.stop_delay_s = 1.0
        started = asyncio.get_running_loop().time()
    closed_in = asyncio.get_running_loop().time() - started
    health = world.engine.health()
    assert closed_in < 0.8
    assert health["stuckStops"] == 1 and health["needsRestart"] is True
    assert health["stuckSessions"] == ["s1"]
    fake.stop_delay_s = 0
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await Events(link).first(Connected)
    assert [uuid for name, uuid in fake.calls if name == "Neonize"] == ["s1", "s1~1"]
    await asyncio.sleep(1.0)  # the stuck stop returns in the fake's own time
    await settle(fake, world.engine)
    await world.aclose()


async def test_twenty_sessions_reach_their_qr_and_calls_still_flow(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async def open_one(index: int) -> QRCode:
        async with world.engine.link(world.auth(f"s{index}"), LinkOptions()) as link:
            qr = await Events(link).expect(QRCode, within_s=10)
            assert await link.is_connected() is False
            await asyncio.to_thread(lambda: None)  # the loop's executor is not starved
            return qr

    qrs = await asyncio.wait_for(asyncio.gather(*(open_one(i) for i in range(20))), 20)
    assert len({qr.code for qr in qrs}) == 20
    assert world.engine.health()["executorThreads"] >= 20


async def test_the_engine_points_neonizes_loop_global_at_the_running_loop(
    world: NeonizeDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = asyncio.new_event_loop()
    monkeypatch.setattr(nz.aioze_events, "event_global_loop", stale)
    try:
        async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
            await Events(link).expect(QRCode)
        assert nz.aioze_events.event_global_loop is asyncio.get_running_loop()
    finally:
        stale.close()


async def test_a_postgres_store_keys_by_session_and_loads_the_linked_device(
    make_world: Any, fake: FakeGo, caplog: pytest.LogCaptureFixture
) -> None:
    url = "postgresql://wa:s3cret@db.internal/whatsmeow"
    world: NeonizeDriver = make_world(NeonizeConfig(database_url=url, reconnect_grace_s=0))
    caplog.set_level(logging.DEBUG)
    auth = world.auth("s1")
    async with world.engine.link(auth, LinkOptions()) as link:
        await link_up(world, link)
    first = fake.client("s1")
    assert (first.db, first.new_device, first.jid) == (url, True, "")
    assert (await auth.load("neonize")) == {
        "jid": f"{PHONE}:7@s.whatsapp.net",
        "lid": f"{lid_of(PHONE)}@lid",
    }
    async with world.engine.link(auth, LinkOptions()) as link:
        await Events(link).first(Connected)
    second = fake.client("s1")
    assert (second.new_device, second.jid) == (False, f"{PHONE}@s.whatsapp.net")
    assert "s3cret" not in caplog.text and url not in caplog.text
    await settle(fake, world.engine)
    await world.aclose()


async def test_the_engine_reports_a_process_past_its_descriptor_bound(
    make_world: Any, fake: FakeGo, caplog: pytest.LogCaptureFixture
) -> None:
    world: NeonizeDriver = make_world(NeonizeConfig(max_open_files=3, reconnect_grace_s=0))
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await Events(link).expect(QRCode)
    health = world.engine.health()
    assert health["overOpenFilesBound"] is True and health["needsRestart"] is True
    assert health["openFiles"] > health["maxOpenFiles"] == 3
    assert "restart this worker" in caplog.text
    await settle(fake, world.engine)
    await world.aclose()


# --- the FFI boundary's own guards ----------------------------------------------------------


async def test_the_ffi_refuses_calls_that_need_a_logged_in_client(
    world: NeonizeDriver, fake: FakeGo
) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await Events(link).expect(QRCode)
        slot = current_slot(world, "s1")
        for name in ("GetMe", "GetLIDFromPN", "SendMessage", "Upload"):
            with pytest.raises(TransientError, match="not connected"):
                await slot.calls.call(name, slot.uuid.encode())
    assert called(fake, "GetMe", "GetLIDFromPN", "SendMessage", "Upload") == []


async def test_a_disconnect_waits_its_turn_at_the_gate(world: NeonizeDriver, fake: FakeGo) -> None:
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await Events(link).expect(QRCode)
        slot = current_slot(world, "s1")
        gate = world.engine.runtime.gate
        hold = await gate.exclusive()  # as a start or a stop would
        disconnect = asyncio.ensure_future(slot.calls.Disconnect(slot.uuid.encode()))
        await until(lambda: gate.waiting == 1)
        assert called(fake, "Disconnect") == []
        hold.release()
        await asyncio.wait_for(disconnect, 3)
        assert called(fake, "Disconnect") == ["Disconnect"]


def current_slot(world: NeonizeDriver, session: str) -> ClientSlot:
    slot = world.engine.sessions[session].current
    assert slot is not None
    return slot


async def until(condition: Callable[[], bool], within_s: float = 3.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - the state lives in the engine and the fake
            await asyncio.sleep(0.005)


# --- Go's own reads of its maps ----------------------------------------------------------


async def test_the_end_of_a_qr_loop_waits_for_the_gate_before_go_reads_its_maps(
    make_world: Any, fake: FakeGo
) -> None:
    world: NeonizeDriver = make_world(NeonizeConfig(reconnect_grace_s=0, start_window_s=5))
    async with world.engine.link(world.auth("s1"), LinkOptions()) as first:
        events = Events(first)
        await events.expect(QRCode)
        fake.open_delay_s = 0.5  # the next start writes Go's maps for half a second
        second = asyncio.ensure_future(opened_with_qr(world, "s2"))
        assert await asyncio.to_thread(fake.opening.wait, 5)
        fake.client("s1").post("status", "timeout")  # s1's QR loop ends during s2's writes
        ended = await events.expect(Disconnected)
        await asyncio.wait_for(second, 5)
    assert ended.kind is DisconnectKind.QR_TIMEOUT
    assert ("CallbackFunction", "s1") in fake.calls
    assert world.engine.runtime.stats.go_reads >= 1
    await settle(fake, world.engine)
    await world.aclose()


async def opened_with_qr(world: NeonizeDriver, session: str) -> None:
    async with world.engine.link(world.auth(session), LinkOptions()) as link:
        await Events(link).expect(QRCode)


async def test_a_postgres_store_holds_the_start_alone_for_its_longer_window(
    make_world: Any, fake: FakeGo
) -> None:
    url = "postgresql://wa@db.internal/whatsmeow"
    config = NeonizeConfig(
        database_url=url, reconnect_grace_s=0, start_window_s=0.1, db_start_window_s=5
    )
    world: NeonizeDriver = make_world(config)
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await link_up(world, link)
        fake.open_delay_s = 0.6  # a slow database: s2's start writes the maps this long
        second = asyncio.ensure_future(opened_with_qr(world, "s2"))
        assert await asyncio.to_thread(fake.opening.wait, 5)
        await link.set_presence(True)  # must wait until s2's writes are done
        await asyncio.wait_for(second, 5)
    assert [p for _, p in fake.presence] == [b"available"]
    await settle(fake, world.engine)
    await world.aclose()


# --- dials that never get anywhere -------------------------------------------------------


@pytest.mark.parametrize(
    ("proxy", "kind"),
    [("socks5h://u:p@127.0.0.1:1080", DisconnectKind.PROXY_ERROR),
     (None, DisconnectKind.CONNECTION_LOST)],
)  # fmt: skip
async def test_a_dial_with_no_sign_of_life_ends_the_link_at_the_deadline(
    make_world: Any, fake: FakeGo, proxy: str | None, kind: DisconnectKind
) -> None:
    world: NeonizeDriver = make_world(
        NeonizeConfig(reconnect_grace_s=0, start_window_s=0.1, dial_deadline_s=0.4)
    )
    fake.stall_dials = True
    async with world.engine.link(world.auth("s1"), LinkOptions(proxy=proxy)) as link:
        ended = await Events(link).expect(Disconnected)
    assert ended.kind is kind and "0.4s" in ended.reason and ":p@" not in ended.reason
    assert world.engine.health()["clientsSetAside"] == 1
    assert called(fake, "Stop") == [], "a client still dialing is never stopped"
    await settle(fake, world.engine)
    await world.aclose()


async def test_closing_a_link_whose_start_still_waits_at_the_gate_never_reaches_go(
    make_world: Any, fake: FakeGo
) -> None:
    world: NeonizeDriver = make_world(NeonizeConfig(reconnect_grace_s=0, start_window_s=0.1))
    hold = await world.engine.runtime.gate.exclusive()
    async with world.engine.link(world.auth("s1"), LinkOptions()):
        pass  # opened after the start window, its start still queued behind the hold
    hold.release()
    session = world.engine.sessions["s1"]
    assert session.abandoned == [] and session.running() == 0
    assert called(fake, "Neonize", "Disconnect", "Stop") == []
    await world.aclose()


# --- clients set aside ------------------------------------------------------------------


async def test_clients_set_aside_past_their_bound_ask_for_a_restart(
    make_world: Any, fake: FakeGo
) -> None:
    world: NeonizeDriver = make_world(NeonizeConfig(reconnect_grace_s=0, max_set_aside=1))
    health = []
    for session in ("s1", "s2"):
        await opened_with_qr(world, session)  # closing while QRs show sets the client aside
        health.append(world.engine.health())
    assert [(h["clientsSetAside"], h["needsRestart"]) for h in health] == [(1, False), (2, True)]
    assert health[-1]["maxClientsSetAside"] == 1
    await settle(fake, world.engine)
    await world.aclose()


LATE = NeonizeConfig(
    reconnect_grace_s=0, start_window_s=0.1, dial_deadline_s=0.3, connect_backoff_base_s=0.01
)


@contextlib.asynccontextmanager
async def live_beside_a_late_client(world: NeonizeDriver, fake: FakeGo) -> AsyncIterator[Events]:
    """s1 linked on client s1~1, while client s1 (set aside mid-dial) may still log in."""
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        await link_up(world, link)
    fake.stall_dials = True  # the next dial hangs: the link ends and its client is set aside
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        assert (await Events(link).expect(Disconnected)).kind is DisconnectKind.CONNECTION_LOST
    fake.stall_dials = False
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = Events(link)
        await events.first(Connected)
        yield events


def late_client_stopped(world: NeonizeDriver) -> bool:
    return world.engine.health()["clientsSetAside"] == 0


async def test_a_stream_replaced_while_our_own_set_aside_client_dials_reconnects(
    make_world: Any, fake: FakeGo
) -> None:
    world: NeonizeDriver = make_world(LATE)
    async with live_beside_a_late_client(world, fake) as events:
        fake.emit(fake.client("s1~1"), 7, nz.nproto.StreamReplaced())  # its dial got through
        ended = await events.expect(Disconnected)
    assert ended.kind is DisconnectKind.CONNECTION_LOST and "own earlier client" in ended.reason
    fake.client("s1").post("dialed")
    await until(lambda: late_client_stopped(world))  # it showed life: now it is stopped
    # That client excused one "replaced"; a later takeover is a real one.
    async with world.engine.link(world.auth("s1"), LinkOptions()) as link:
        events = Events(link)
        await events.first(Connected)
        fake.emit(fake.client("s1~1"), 7, nz.nproto.StreamReplaced())
        again = await events.expect(Disconnected)
    assert again.kind is DisconnectKind.REPLACED
    await settle(fake, world.engine)
    await world.aclose()


async def test_a_stream_replaced_after_our_own_set_aside_client_logged_in_reconnects(
    make_world: Any, fake: FakeGo
) -> None:
    world: NeonizeDriver = make_world(LATE)
    async with live_beside_a_late_client(world, fake) as events:
        fake.client("s1").post("dialed")  # the late client logs in, shows life, is stopped
        await until(lambda: late_client_stopped(world))
        fake.emit(fake.client("s1~1"), 7, nz.nproto.StreamReplaced())
        ended = await events.expect(Disconnected)
    assert ended.kind is DisconnectKind.CONNECTION_LOST
    assert world.engine.health()["clientsSetAside"] == 0
    await settle(fake, world.engine)
    await world.aclose()
